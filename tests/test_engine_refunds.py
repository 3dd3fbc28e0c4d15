"""Who pays: the refund table row by row, its completeness, and the engine obeying it.

`DECISIONS` is written out here independently of bot/engine/refunds.py: it is what the engine
decided at each call site before the table existed (`ledger="commit"/"release"` by hand, and
`GatewayError.refunded` defaulting to True). The table must match it row for row, and every
gateway row is then driven through a real engine (fake gateway, real store) to its ledger.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from bot.config import Settings
from bot.engine import Engine, EngineLimits, JobState
from bot.engine.refunds import GATEWAY_STEPS, TABLE, Outcome, Settle, gateway_outcome, settlement
from bot.errors import GatewayError, TaskNotFoundError
from bot.store import Store
from tests.fakes.common import FakeGateway
from tests.test_engine_fakes import FakeClock, FakeDelivery, FakeProvider, request, wait_for_state
from tests.test_engine_fakes import Outcome as Ends

S, C, R, N = JobState, Settle.COMMIT, Settle.RELEASE, Settle.NOTHING
KINDS = ("gateway", "invalid_request", "auth", "balance", "rate_limited", "unavailable",
         "not_found", "moderation", "audio_moderation", "real_face", "task_failed", "expired")

DECISIONS: dict[tuple[JobState, str], Settle] = {
    # no ledger argument at these transitions
    (S.QUEUED, "started"): N, (S.SUBMITTING, "retry"): N, (S.SUBMITTING, "created"): N,
    (S.GENERATING, "retry_without_audio"): N, (S.GENERATING, "result_ready"): N,
    (S.DOWNLOADING, "result_unconfirmed"): N, (S.DOWNLOADING, "held_for_review"): N,
    (S.AWAITING_APPROVAL, "approved"): N, (S.READY, "delivered"): N,
    # a create that provably made no task, moved to another gateway: reserved once
    (S.SUBMITTING, "failover"): N,
    # _download → READY: ledger="commit"; approve(HELD): ledger="commit"
    (S.DOWNLOADING, "on_disk"): C, (S.HELD, "approved"): C,
    # cancel(): release before a task exists; _cancel_at_gateway: stopped → release, else commit
    (S.AWAITING_APPROVAL, "cancelled"): R, (S.QUEUED, "cancelled"): R,
    (S.SUBMITTING, "cancelled"): R,
    (S.GENERATING, "cancelled_stopped"): R, (S.GENERATING, "cancelled_billed"): C,
    # reject(): release, prompt or result
    (S.AWAITING_APPROVAL, "rejected"): R, (S.HELD, "rejected"): R,
    # _submit: uncertain after a restart, invalid input → release
    (S.SUBMITTING, "uncertain_submit"): R, (S.SUBMITTING, "invalid_input"): R,
    # _succeeded without a video → commit; _download: refused → release, undownloadable → commit
    (S.GENERATING, "no_video"): C, (S.DOWNLOADING, "bad_result"): R,
    (S.DOWNLOADING, "undownloadable"): C,
    # a flagged result with no moderator to review it is refused, not shown: released
    (S.DOWNLOADING, "flagged"): R,
    # _deliver exhausted: no ledger argument (committed when the files reached disk)
    (S.READY, "delivery_failed"): N,
    # _deliver: files on another host go back to DOWNLOADING; charged already
    (S.READY, "files_elsewhere"): N,
    # _run: ledger="commit" if the state was DOWNLOADING or READY, else "release" (READY was
    # committed already: the second settlement was a no-op, so nothing)
    (S.AWAITING_APPROVAL, "internal"): R, (S.QUEUED, "internal"): R,
    (S.SUBMITTING, "internal"): R, (S.GENERATING, "internal"): R, (S.HELD, "internal"): R,
    (S.DOWNLOADING, "internal"): C, (S.READY, "internal"): N,
    # _fail_gateway after a create: refunded defaulted to True → release
    **{(S.SUBMITTING, f"create:{k}"): R for k in KINDS},
    # _fail_gateway after the task failed: refunded defaulted to True → release
    **{(S.GENERATING, f"task:{k}"): R for k in KINDS},
    # polls exhausted: release only for TaskNotFoundError, else commit
    **{(S.GENERATING, f"poll:{k}"): R if k == "not_found" else C for k in KINDS},
    # downloads exhausted ("download") or a link expired twice ("expired"): commit
    **{(S.DOWNLOADING, f"fetch:{k}"): C for k in KINDS},
}


@pytest.mark.parametrize(("state", "outcome"), sorted(DECISIONS, key=str), ids=str)
def test_each_row_keeps_the_decision_made_before_the_table(state: JobState, outcome: str) -> None:
    assert settlement(state, outcome) is DECISIONS[(state, outcome)]


def test_the_table_has_no_row_this_file_does_not_check() -> None:
    assert set(TABLE) == set(DECISIONS)
    assert {o.value for o in Outcome} == {o for _s, o in TABLE if ":" not in o}


def test_a_missing_row_is_an_error_not_a_default() -> None:
    with pytest.raises(LookupError, match=r"refunds\.py"):
        settlement(JobState.QUEUED, "delivered")


# ---- every kind of gateway error has a row wherever gateway errors arise ---------------------
def kinds_below(root: type) -> Iterator[str]:
    """The `kind` of `root` and of every subclass, however deep."""
    yield root.kind  # type: ignore[attr-defined]
    for sub in root.__subclasses__():
        yield from kinds_below(sub)


def missing_rows(root: type) -> list[tuple[JobState, str]]:
    return [(state, f"{how}:{kind}") for kind in sorted(set(kinds_below(root)))
            for how, state in GATEWAY_STEPS.items() if (state, f"{how}:{kind}") not in TABLE]


def test_every_gateway_error_kind_has_a_row_in_every_state_it_can_arise() -> None:
    import bot.providers.anyfast
    import bot.providers.hiapi
    import bot.providers.local
    import bot.providers.magnific
    import bot.providers.runware  # noqa: F401  (any GatewayError subclass they define counts)

    assert missing_rows(GatewayError) == []
    assert set(kinds_below(GatewayError)) == set(KINDS)


def test_the_completeness_check_notices_a_new_kind() -> None:
    class Root:
        kind = "gateway"

    class Middle(Root):
        kind = "moderation"

    class Novel(Middle):
        kind = "novel"

    assert Novel.kind in kinds_below(Root)
    assert missing_rows(Root) == [(GATEWAY_STEPS[how], f"{how}:novel") for how in GATEWAY_STEPS]


# ---- the gateway's explicit word ---------------------------------------------------------------
def test_an_explicit_refunded_is_the_gateways_word_except_for_our_downloads() -> None:
    billed = GatewayError("x", refunded=False)
    free = GatewayError("x", refunded=True)
    silent = GatewayError("x")
    assert silent.refunded is None
    assert settlement(S.SUBMITTING, gateway_outcome("create", billed)) is R  # the table's
    assert settlement(S.SUBMITTING, gateway_outcome("create", billed), billed) is C
    assert settlement(S.GENERATING, gateway_outcome("task", billed), billed) is C
    assert settlement(S.GENERATING, gateway_outcome("poll", free), free) is R
    assert settlement(S.GENERATING, gateway_outcome("poll", silent), silent) is C
    assert settlement(S.DOWNLOADING, gateway_outcome("fetch", free), free) is C


# ---- through the engine: every gateway row ends in its ledger -----------------------------------
def error_classes() -> dict[str, type[GatewayError]]:
    found: dict[str, type[GatewayError]] = {}
    stack: list[type[GatewayError]] = [GatewayError]
    while stack:
        cls = stack.pop()
        found.setdefault(cls.kind, cls)
        stack.extend(cls.__subclasses__())
    return found


class Rig:
    def __init__(self, settings: Settings, store: Store, files: FakeGateway,
                 http: httpx.AsyncClient) -> None:
        self.settings, self.store, self.http = settings, store, http
        self.clock = FakeClock()
        self.provider = FakeProvider(files)
        self.delivery = FakeDelivery()
        self.engines: list[Engine] = []

    def engine(self, **kw: Any) -> Engine:
        kw.setdefault("limits", EngineLimits(retry_base=1.0, submit_retries=0, poll_errors=0,
                                             download_attempts=1))
        engine = Engine(self.settings, self.store, delivery=self.delivery,
                        providers={"fake": self.provider}, http=self.http, clock=self.clock.now,
                        sleep=self.clock.sleep, **kw)
        self.engines.append(engine)
        return engine

    async def run(self, engine: Engine, **req: Any) -> tuple[str, list[str], str | None]:
        await engine.start()
        job = await engine.enqueue(request(audio=False, **req), guild_id="g", channel_id="c",
                                   user_id="u")
        done = await engine.wait(job.id)
        kinds = [line.kind for line in await self.store.ledger(job.id)]
        return done.state.value, kinds, done.error_kind


@pytest.fixture
async def rig(data_dir: Path, store_url: str) -> AsyncIterator[Rig]:
    settings = Settings(seedance_data_dir=data_dir, seedance_user_daily_credits=10**6,
                        seedance_guild_monthly_credits=10**6, seedance_private_hosts="127.0.0.1")
    store = await Store.open(store_url)
    async with FakeGateway() as files, httpx.AsyncClient() as http:
        r = Rig(settings, store, files, http)
        yield r
        for engine in r.engines:
            await engine.stop()
    await store.close()


def ledger_of(settle: Settle) -> list[str]:
    return ["reserve", settle.value]


@pytest.mark.parametrize("kind", KINDS)
async def test_a_failed_create_settles_by_its_row(rig: Rig, kind: str) -> None:
    rig.provider.submit_errors = [error_classes()[kind]("refused", provider="fake", status=400)]
    state, kinds, error_kind = await rig.run(rig.engine())
    assert (state, error_kind) == ("failed", kind)
    assert kinds == ledger_of(TABLE[(S.SUBMITTING, f"create:{kind}")])


@pytest.mark.parametrize("kind", KINDS)
async def test_a_failed_task_settles_by_its_row(rig: Rig, kind: str) -> None:
    rig.provider.script = lambda _r: Ends(error=error_classes()[kind]("no", provider="fake"))
    state, kinds, error_kind = await rig.run(rig.engine())
    assert (state, error_kind) == ("failed", kind)
    assert kinds == ledger_of(TABLE[(S.GENERATING, f"task:{kind}")])


@pytest.mark.parametrize("kind", KINDS)
async def test_a_task_lost_sight_of_settles_by_its_row(rig: Rig, kind: str) -> None:
    rig.provider.poll_errors = [error_classes()[kind]("poll failed", provider="fake")]
    state, kinds, error_kind = await rig.run(rig.engine())
    assert (state, error_kind) == ("failed", kind)
    assert kinds == ledger_of(TABLE[(S.GENERATING, f"poll:{kind}")])


@pytest.mark.parametrize("kind", KINDS)
async def test_a_result_that_cannot_be_fetched_settles_by_its_row(rig: Rig, kind: str) -> None:
    async def downloader(*_a: Any, **_kw: Any) -> int:
        raise error_classes()[kind]("cannot fetch", provider="fake")

    state, kinds, error_kind = await rig.run(rig.engine(downloader=downloader))
    assert (state, error_kind) == ("failed", "expired" if kind == "expired" else "download")
    assert kinds == ledger_of(TABLE[(S.DOWNLOADING, f"fetch:{kind}")])


# ---- through the engine: the rows no other test drives ------------------------------------------
async def test_an_internal_error_while_generating_returns_the_credits(rig: Rig) -> None:
    async def poll(_task_id: str) -> Any:
        raise RuntimeError("a bug")

    rig.provider.poll = poll  # type: ignore[method-assign]
    assert await rig.run(rig.engine()) == ("failed", ledger_of(R), "internal")


async def test_an_internal_error_while_downloading_is_charged(rig: Rig) -> None:
    async def downloader(*_a: Any, **_kw: Any) -> int:
        raise RuntimeError("a bug")

    assert await rig.run(rig.engine(downloader=downloader)) == (
        "failed", ledger_of(C), "internal")


async def test_success_without_a_video_is_charged(rig: Rig) -> None:
    from bot.models import TaskState, TaskStatus

    async def poll(task_id: str) -> TaskState:
        return TaskState(task_id=task_id, status=TaskStatus.SUCCEEDED, result=None)

    rig.provider.poll = poll  # type: ignore[method-assign]
    assert await rig.run(rig.engine()) == ("failed", ledger_of(C), "task_failed")


async def test_a_request_the_provider_refuses_before_sending_returns_the_credits(
    rig: Rig,
) -> None:
    from bot.errors import InvalidInput, Problem

    async def submit(*_a: Any, **_kw: Any) -> Any:
        raise InvalidInput([Problem("duration", "too long for this model")])

    rig.provider.submit = submit  # type: ignore[method-assign]
    assert await rig.run(rig.engine()) == ("failed", ledger_of(R), "invalid_input")


async def test_a_task_the_gateway_forgot_after_a_lost_poll_is_released(rig: Rig) -> None:
    rig.provider.poll_errors = [TaskNotFoundError("gone", provider="fake", status=404)]
    assert await rig.run(rig.engine()) == ("failed", ledger_of(R), "not_found")


async def test_cancelling_a_create_no_runner_drives_returns_the_credits(rig: Rig) -> None:
    """A restart left the job in SUBMITTING, and nothing drives it yet (engine not started)."""
    engine = rig.engine()
    job = await engine.enqueue(request(), guild_id="g", channel_id="c", user_id="u")
    starter = rig.engine()
    rig.provider.submit_gate = asyncio.Event()  # the create never answers
    await starter.start()
    await wait_for_state(rig.store, job.id, "submitting")
    await starter.stop()  # the row stays in SUBMITTING, as after a crash
    text = await engine.cancel(job.id, "u")
    assert "may still bill it" in text
    assert [line.kind for line in await rig.store.ledger(job.id)] == ledger_of(R)
