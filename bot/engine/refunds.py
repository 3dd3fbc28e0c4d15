"""Who pays: the one table that settles a job's credits when it moves.

Credits are reserved when the job is written (`Store.create_job`) and settled at most once:
`commit` charges them, `release` gives them back. Which of the two (or nothing yet) follows from
two facts only, looked up here and nowhere else: the state the job was in and what happened
(its outcome). `JobMachine.move` (bot/engine/machine.py) applies the answer in the same
transaction as the state change.

Gateway errors are outcomes named `<how>:<kind>`, the kind being `GatewayError.kind`
(bot/errors.py) and `how` where in the job's life it arose:

- `create` (SUBMITTING): the create call failed, so no task was made, or it provably did not
  start: released;
- `task` (GENERATING): the gateway says the task failed: released (gateways do not bill failed
  renders), unless its answer says otherwise;
- `poll` (GENERATING): we lost sight of the task, not the task itself; it may run on and be
  billed, so committed, unless the gateway says it does not know the task (`not_found`);
- `fetch` (DOWNLOADING): the video was made, and billed, but could not be fetched: committed.

A commit of a job whose result set came back short (fewer videos than `request.results`)
charges only the share of the videos that came and releases the rest in the same settlement
(bot/engine/sets.py `set_charge`, applied by `JobMachine.move`).

An error's own `refunded` (True/False) is the gateway's explicit word about billing and wins
over the table for `create`, `task` and `poll`; `fetch` errors come from our download of a
finished video, never from the gateway's accounts, so the table stands. A kind without a row is
a `LookupError` (tests/test_engine_refunds.py fails first): a new error type is never refunded
or charged by the accident of a default.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from types import MappingProxyType

from bot.errors import GatewayError
from bot.store import JobState


class Settle(StrEnum):
    COMMIT = "commit"  # charge the reservation
    RELEASE = "release"  # give it back
    NOTHING = "nothing"  # nothing to settle: the job goes on, or it was settled before


class Outcome(StrEnum):
    """What happened to a job, other than a gateway error (see `gateway_outcome`)."""

    STARTED = "started"  # the scheduler gave it a slot
    RETRY = "retry"  # the create was refused for now (429, 503): back in the queue
    FAILOVER = "failover"  # no task was made: back in the queue for another gateway (fleet.py)
    CREATED = "created"  # the gateway named the task
    RETRY_WITHOUT_AUDIO = "retry_without_audio"  # the sound was flagged: once more, silent
    RESULT_READY = "result_ready"  # the gateway says the video is done
    RESULT_UNCONFIRMED = "result_unconfirmed"  # a "done" the gateway does not confirm
    ON_DISK = "on_disk"  # the video is downloaded and proven: what was paid for
    HELD_FOR_REVIEW = "held_for_review"  # on disk, waiting for a moderator
    APPROVED = "approved"  # a moderator let the prompt or the held result through
    DELIVERED = "delivered"  # posted
    FILES_ELSEWHERE = "files_elsewhere"  # ready, but its files are on another host: fetch again
    CANCELLED = "cancelled"  # cancelled before the gateway had a task
    CANCELLED_STOPPED = "cancelled_stopped"  # cancelled, and the gateway stopped the task
    CANCELLED_BILLED = "cancelled_billed"  # cancelled, but the gateway could not stop it
    REJECTED = "rejected"  # a moderator refused the prompt or the held result
    UNCERTAIN_SUBMIT = "uncertain_submit"  # a restart caught a create of a non-idempotent gateway
    INVALID_INPUT = "invalid_input"  # the provider refused the request before sending it
    NO_VIDEO = "no_video"  # the gateway reported success but named no video
    FLAGGED = "flagged"  # the gateway's safety check flagged it and nobody may review it
    BAD_RESULT = "bad_result"  # the result breaks the address rules or is not a real video
    UNDOWNLOADABLE = "undownloadable"  # the result could not be downloaded (network, size, disk)
    DELIVERY_FAILED = "delivery_failed"  # made and charged, but could not be posted
    INTERNAL = "internal"  # a bug stopped the job


#: Where gateway errors arise: the `how` of a gateway outcome and the state it arises in.
GATEWAY_STEPS: Mapping[str, JobState] = MappingProxyType({
    "create": JobState.SUBMITTING,
    "task": JobState.GENERATING,
    "poll": JobState.GENERATING,
    "fetch": JobState.DOWNLOADING,
})
#: Steps at which an error's explicit `refunded` is the gateway's own word (see the docstring).
_GATEWAYS_WORD = frozenset({"create", "task", "poll"})


def gateway_outcome(how: str, error: GatewayError) -> str:
    """The outcome a gateway error stands for at step `how` (create, task, poll, fetch)."""
    if how not in GATEWAY_STEPS:
        raise ValueError(f"unknown gateway step {how!r}")
    return f"{how}:{error.kind}"


_S = JobState
C, R, N = Settle.COMMIT, Settle.RELEASE, Settle.NOTHING

#: (state the job was in, outcome) → settlement. Every move of every job is looked up here.
TABLE: Mapping[tuple[JobState, str], Settle] = MappingProxyType({
    # ---- on its way: nothing is settled while the job goes on
    (_S.QUEUED, Outcome.STARTED): N,
    (_S.SUBMITTING, Outcome.RETRY): N,
    (_S.SUBMITTING, Outcome.FAILOVER): N,  # reserved once, whichever gateway makes it
    (_S.SUBMITTING, Outcome.CREATED): N,
    (_S.GENERATING, Outcome.RETRY_WITHOUT_AUDIO): N,  # the same reservation covers the retry
    (_S.GENERATING, Outcome.RESULT_READY): N,
    (_S.DOWNLOADING, Outcome.RESULT_UNCONFIRMED): N,
    (_S.DOWNLOADING, Outcome.ON_DISK): C,  # charged once the video is ours
    (_S.DOWNLOADING, Outcome.HELD_FOR_REVIEW): N,  # charged when a moderator lets it out
    (_S.AWAITING_APPROVAL, Outcome.APPROVED): N,
    (_S.HELD, Outcome.APPROVED): C,
    (_S.READY, Outcome.DELIVERED): N,  # charged when the files reached disk
    (_S.READY, Outcome.FILES_ELSEWHERE): N,  # charged already (a second commit is ignored)
    # ---- people stop it
    (_S.AWAITING_APPROVAL, Outcome.CANCELLED): R,
    (_S.QUEUED, Outcome.CANCELLED): R,
    # a create the runner no longer drives (cancelled after a restart): the reason says the
    # gateway may still bill it if the request had reached it
    (_S.SUBMITTING, Outcome.CANCELLED): R,
    (_S.GENERATING, Outcome.CANCELLED_STOPPED): R,
    (_S.GENERATING, Outcome.CANCELLED_BILLED): C,
    (_S.AWAITING_APPROVAL, Outcome.REJECTED): R,
    (_S.HELD, Outcome.REJECTED): R,  # the server, not the requester, absorbs a rejected render
    # ---- the bot's side fails
    (_S.SUBMITTING, Outcome.UNCERTAIN_SUBMIT): R,
    (_S.SUBMITTING, Outcome.INVALID_INPUT): R,
    (_S.GENERATING, Outcome.NO_VIDEO): C,
    (_S.DOWNLOADING, Outcome.BAD_RESULT): R,
    (_S.DOWNLOADING, Outcome.FLAGGED): R,  # a result we refused to show (sets.py)
    (_S.DOWNLOADING, Outcome.UNDOWNLOADABLE): C,
    (_S.READY, Outcome.DELIVERY_FAILED): N,  # charged already; the file is kept
    (_S.AWAITING_APPROVAL, Outcome.INTERNAL): R,  # before spending
    (_S.QUEUED, Outcome.INTERNAL): R,
    (_S.SUBMITTING, Outcome.INTERNAL): R,
    (_S.GENERATING, Outcome.INTERNAL): R,
    (_S.HELD, Outcome.INTERNAL): R,  # a held render is charged only once let out
    (_S.DOWNLOADING, Outcome.INTERNAL): C,  # after spending
    (_S.READY, Outcome.INTERNAL): N,  # charged already
    # ---- SUBMITTING: the create failed (a retryable one is requeued first, see runner.py)
    (_S.SUBMITTING, "create:gateway"): R,
    (_S.SUBMITTING, "create:invalid_request"): R,
    (_S.SUBMITTING, "create:auth"): R,
    (_S.SUBMITTING, "create:balance"): R,
    (_S.SUBMITTING, "create:rate_limited"): R,
    (_S.SUBMITTING, "create:unavailable"): R,
    (_S.SUBMITTING, "create:not_found"): R,
    (_S.SUBMITTING, "create:moderation"): R,
    (_S.SUBMITTING, "create:audio_moderation"): R,
    (_S.SUBMITTING, "create:real_face"): R,
    (_S.SUBMITTING, "create:task_failed"): R,
    (_S.SUBMITTING, "create:expired"): R,
    # ---- GENERATING: the gateway reports the task failed
    (_S.GENERATING, "task:gateway"): R,
    (_S.GENERATING, "task:invalid_request"): R,
    (_S.GENERATING, "task:auth"): R,
    (_S.GENERATING, "task:balance"): R,
    (_S.GENERATING, "task:rate_limited"): R,
    (_S.GENERATING, "task:unavailable"): R,
    (_S.GENERATING, "task:not_found"): R,
    (_S.GENERATING, "task:moderation"): R,
    (_S.GENERATING, "task:audio_moderation"): R,  # after the retry without audio
    (_S.GENERATING, "task:real_face"): R,
    (_S.GENERATING, "task:task_failed"): R,
    (_S.GENERATING, "task:expired"): R,
    # ---- GENERATING: polls kept failing; the task may finish and be billed there
    (_S.GENERATING, "poll:gateway"): C,
    (_S.GENERATING, "poll:invalid_request"): C,
    (_S.GENERATING, "poll:auth"): C,
    (_S.GENERATING, "poll:balance"): C,
    (_S.GENERATING, "poll:rate_limited"): C,
    (_S.GENERATING, "poll:unavailable"): C,
    (_S.GENERATING, "poll:not_found"): R,  # the gateway does not know the task: nothing to bill
    (_S.GENERATING, "poll:moderation"): C,
    (_S.GENERATING, "poll:audio_moderation"): C,
    (_S.GENERATING, "poll:real_face"): C,
    (_S.GENERATING, "poll:task_failed"): C,
    (_S.GENERATING, "poll:expired"): C,
    # ---- DOWNLOADING: made and billed, but the result could not be fetched
    (_S.DOWNLOADING, "fetch:gateway"): C,
    (_S.DOWNLOADING, "fetch:invalid_request"): C,
    (_S.DOWNLOADING, "fetch:auth"): C,
    (_S.DOWNLOADING, "fetch:balance"): C,
    (_S.DOWNLOADING, "fetch:rate_limited"): C,
    (_S.DOWNLOADING, "fetch:unavailable"): C,
    (_S.DOWNLOADING, "fetch:not_found"): C,
    (_S.DOWNLOADING, "fetch:moderation"): C,
    (_S.DOWNLOADING, "fetch:audio_moderation"): C,
    (_S.DOWNLOADING, "fetch:real_face"): C,
    (_S.DOWNLOADING, "fetch:task_failed"): C,
    (_S.DOWNLOADING, "fetch:expired"): C,  # the link expired twice (it is refreshed once)
})


def settlement(state: JobState, outcome: str, error: GatewayError | None = None) -> Settle:
    """What to do with the reservation of a job in `state` that meets `outcome`.

    Raises `LookupError` when the table has no row: a new outcome must be given one.
    """
    try:
        settle = TABLE[(state, outcome)]
    except KeyError:
        raise LookupError(f"no settlement for a {state.value} job meeting {outcome!r}; "
                          "add a row to bot/engine/refunds.py") from None
    if error is not None and error.refunded is not None:
        how = outcome.partition(":")[0]
        if how in _GATEWAYS_WORD:
            return R if error.refunded else C
    return settle


__all__ = ["GATEWAY_STEPS", "TABLE", "Outcome", "Settle", "gateway_outcome", "settlement"]
