"""The one place a job changes state: the row, the ledger and the news move together.

`JobMachine.move(job, to_state, outcome)` writes the change (only if the job is still in the
state it was read in), settles the credits as bot/engine/refunds.py says for that state and
outcome (in the same transaction), then announces it: wakes `Engine.wait`, marks the queue view
stale, wakes the scheduler when a slot or a queue place may have opened, lets the gateway drop
its copy of a finished task, and emits the `JobEvent`s to the delivery port. Nobody else calls
`store.transition` (only the scheduling pass writes starts, `Store.schedule`, announced by
`started`), so no change can forget one of these steps nor choose a refund by hand. Every
change is made as this process (`owner`): a job another process took over is not changed.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from bot.errors import GatewayError, RealFaceError, scrub
from bot.store import (
    TERMINAL_STATES,
    WAITING_STATES,
    CheckResult,
    JobState,
    JobView,
    NewJob,
    Store,
    Timing,
    UsageCheck,
)
from bot.store.ledger import LedgerKind
from bot.store.records import Admission, AdmissionRefused

from .events import Delivery, EventKind, JobEvent
from .queue import QueueView
from .refunds import Outcome, Settle, gateway_outcome, settlement
from .sets import set_charge

log = logging.getLogger(__name__)

Clock = Callable[[], float]

#: How the store writes a settlement (NOTHING writes none).
_LEDGER: dict[Settle, LedgerKind] = {Settle.COMMIT: "commit", Settle.RELEASE: "release"}


class JobMachine:
    """Writes and announces every change of every job (see the module docstring)."""

    def __init__(
        self,
        store: Store,
        *,
        clock: Clock,
        delivery: Delivery,
        queue: QueueView,
        wake: asyncio.Event,
        discard: Callable[[JobView], Awaitable[None]],
        owner: str,
        ttl: float,
        secrets: Sequence[str] = (),
    ) -> None:
        self.store = store
        self.owner = owner  # this process: it claims the jobs it moves into an active state
        self.ttl = ttl
        self._clock = clock
        self._delivery = delivery
        self._queue = queue
        self._wake = wake
        self._discard = discard
        self._secrets = tuple(secrets)
        self._changed: dict[str, asyncio.Event] = {}
        self._moving: Counter[str] = Counter()
        self._steps: dict[str, JobView | None] = {}

    def changed(self, job_id: str) -> asyncio.Event:
        """Set at the job's next change, once announced (for `Engine.wait`)."""
        return self._changed.setdefault(job_id, asyncio.Event())

    def begin_step(self, job_id: str) -> None:
        """A runner starts a step of the job: `end_step` gives the row its moves wrote."""
        self._steps[job_id] = None

    def end_step(self, job_id: str) -> JobView | None:
        """The job as the step's last successful move wrote it (None: no move, read it)."""
        return self._steps.pop(job_id, None)

    def announcing(self, job_id: str) -> bool:
        """Whether this process is between writing a change of the job and announcing it:
        the row already says more than the delivery port has been told."""
        return self._moving[job_id] > 0

    async def create(
        self, new: NewJob, checks: Sequence[UsageCheck], admission: Admission, *, now: float
    ) -> JobView | CheckResult | AdmissionRefused:
        """Write a new job and reserve its credits, or say which guard refused it (nothing
        written). A job awaiting approval is announced as such; a queued one learns its place
        before this returns (the queue view coalesces bursts)."""
        refused = await self.store.create_job(new, checks, now=now, admission=admission)
        if refused is not None:
            return refused
        self._queue.touched(new.id)
        self._woken(new.id)
        job = await self.store.get_job(new.id)
        assert job is not None, "a job vanished right after it was written"
        if new.state is JobState.AWAITING_APPROVAL:
            await self.emit(job, JobEvent(EventKind.AWAITING_APPROVAL))
        else:
            await self._queue.announce()
            self._wake.set()
        return job

    async def move(
        self,
        job: JobView,
        to_state: JobState,
        outcome: str,
        *,
        error: GatewayError | None = None,
        detail: str = "",
        events: Sequence[JobEvent] = (),
        timing: Timing | None = None,
        **fields: Any,
    ) -> JobView | None:
        """Move `job` from the state it was read in to `to_state`, settle, and announce.

        Returns the job as written, or None when it had moved on (someone else changed it
        first; nothing was written or announced). `error` is the gateway error behind a gateway
        outcome (its explicit `refunded` may decide the settlement); `events` go to the delivery
        port, in order, after the change is committed. A terminal state stamps `finished_at`.
        `timing` (how long the task took) is written with the change, or not at all.
        """
        settle = settlement(job.state, outcome, error)
        ledger = _LEDGER.get(settle)
        # A result set that came back short is charged per video that came (sets.py).
        charge = set_charge(job, fields.get("result_meta")) if settle is Settle.COMMIT else None
        now = self._clock()
        if to_state in TERMINAL_STATES:
            fields.setdefault("finished_at", now)
        self._moving[job.id] += 1
        try:
            return await self._move(job, to_state, now, detail, ledger, charge, events, fields,
                                    timing)
        finally:
            self._moving[job.id] -= 1
            if not self._moving[job.id]:
                del self._moving[job.id]
            self._woken(job.id)  # `wait` sees the change once it has been announced

    async def _move(self, job: JobView, to_state: JobState, now: float, detail: str,
                    ledger: LedgerKind | None, charge: int | None, events: Sequence[JobEvent],
                    fields: dict[str, Any], timing: Timing | None) -> JobView | None:
        moved = await self.store.transition(
            job.id, to_state, now=now, from_states=[job.state], detail=detail,
            ledger=ledger, charge=charge, owner=self.owner, ttl=self.ttl, timing=timing,
            **fields,
        )
        if moved is None:
            return None
        if job.id in self._steps:
            self._steps[job.id] = moved
        if job.state is JobState.QUEUED or to_state in TERMINAL_STATES:
            self._queue.forget(job.id)  # its place in the queue is no longer news
        self._queue.touched(job.id)
        if to_state in TERMINAL_STATES or to_state in WAITING_STATES:
            self._wake.set()  # a slot or a queue place may have opened
        on_disk = (JobState.READY, JobState.HELD)
        if (to_state in on_disk and job.state is JobState.DOWNLOADING) or (
            to_state in TERMINAL_STATES and job.state not in on_disk
        ):
            # The gateway's copy is no longer needed: ours is on disk, or the job ended (a
            # ready or held job's copy went when its files reached disk).
            await self._discard(moved)
        for event in events:
            await self.emit(moved, event)
        return moved

    async def started(self, jobs: Sequence[JobView]) -> None:
        """Announce the jobs a scheduling pass moved to SUBMITTING (`Store.schedule` wrote
        them; a start settles nothing, see refunds.py)."""
        for job in jobs:
            self._queue.forget(job.id)
            self._queue.touched(job.id)
        for job in jobs:
            await self.emit(job, JobEvent(EventKind.STARTED))
            self._woken(job.id)

    async def fail(
        self, job: JobView, outcome: str, kind: str, message: str, *,
        error: GatewayError | None = None,
    ) -> JobView | None:
        """End `job` as failed, saying why (scrubbed of secrets) to its owner."""
        message = scrub(message, self._secrets)
        return await self.move(
            job, JobState.FAILED, outcome, error=error, detail=f"{kind}: {message}",
            events=[JobEvent(EventKind.FAILED, reason=message)],
            error_kind=kind, error_message=message,
        )

    async def fail_gateway(self, job: JobView, how: str, err: GatewayError) -> JobView | None:
        """End `job` as failed by a gateway error met at step `how` (see refunds.py)."""
        reason = str(err)
        if isinstance(err, RealFaceError):
            reason += " (inputs that look like a real person are refused; this is final)"
        return await self.fail(job, gateway_outcome(how, err), err.kind, reason, error=err)

    async def emit(self, job: JobView, event: JobEvent) -> None:
        """Tell the delivery layer; its failures never stop a job."""
        try:
            await self._delivery.on_event(job, event)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("delivery.on_event failed for %s (%s)", job.id, event.kind)

    def _woken(self, job_id: str) -> None:
        """After a change to a job's row and its announcement: `wait` looks again."""
        event = self._changed.pop(job_id, None)
        if event is not None:
            event.set()


__all__ = ["JobMachine", "Outcome"]
