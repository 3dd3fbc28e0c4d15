"""The engine end to end with a scripted provider, a real SQLite store and real downloads."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from bot.config import Settings
from bot.engine import (
    Engine,
    EngineLimits,
    JobState,
    NotAllowed,
    QueueFull,
)
from bot.errors import (
    AudioModerationError,
    ContentRejectedError,
    InsufficientBalanceError,
    RateLimitError,
    RealFaceError,
    TaskFailedError,
)
from bot.models import ProviderResult, TaskState, TaskStatus
from bot.providers.base import SubmitResult
from bot.store import JobView, Store
from bot.store.database import DatabaseUnavailable
from tests.fakes.common import FakeGateway
from tests.test_engine_fakes import (
    VIDEO_BYTES,
    FakeClock,
    FakeDelivery,
    FakeProvider,
    Outcome,
    job_dir,
    request,
    until,
    wait_for_state,
)


@dataclass
class Rig:
    settings: Settings
    store: Store
    files: FakeGateway
    provider: FakeProvider
    delivery: FakeDelivery
    clock: FakeClock
    http: httpx.AsyncClient
    engines: list[Engine] = field(default_factory=list)

    def engine(self, **kw: Any) -> Engine:
        kw.setdefault("limits", EngineLimits(retry_base=1.0))
        engine = Engine(
            self.settings, self.store, delivery=self.delivery,
            providers={"fake": self.provider}, http=self.http, clock=self.clock.now,
            sleep=self.clock.sleep, **kw,
        )
        self.engines.append(engine)
        return engine

    async def ledger_kinds(self, job_id: str) -> list[tuple[str, int]]:
        return [(line.kind, line.credits) for line in await self.store.ledger(job_id)]


@pytest.fixture
async def rig(data_dir: Path, store_url: str) -> AsyncIterator[Rig]:
    settings = Settings(seedance_data_dir=data_dir, seedance_user_daily_credits=1000,
                        seedance_guild_monthly_credits=100000, runware_api_key="sk-secret-123456",
                        seedance_private_hosts="127.0.0.1")
    store = await Store.open(store_url)
    async with FakeGateway() as files, httpx.AsyncClient() as http:
        r = Rig(settings, store, files, FakeProvider(files), FakeDelivery(), FakeClock(), http)
        yield r
        for engine in r.engines:
            await engine.stop()
    await store.close()


async def enqueue(engine: Engine, user: str = "u1", guild: str = "g1", **kw: Any) -> str:
    req_kw = {k: kw.pop(k) for k in list(kw) if k in ("prompt", "audio", "return_last_frame",
                                                        "duration", "resolution")}
    job = await engine.enqueue(request(**req_kw), guild_id=guild, channel_id="c1", user_id=user,
                               **kw)
    return job.id


async def test_happy_path_writes_each_state_and_delivers_once(rig: Rig) -> None:
    engine = rig.engine()
    # Enqueued before the start: with the scheduler running, a job may start before its
    # place is told (then it is never told a place, by design: bot/engine/queue.py).
    job_id = await enqueue(engine, return_last_frame=True)
    await engine.start()
    job = await engine.wait(job_id)

    assert job.state is JobState.DELIVERED
    assert job.delivery_ref == "msg-1" and rig.delivery.post_count[job_id] == 1
    steps = [t.to_state for t in await rig.store.transitions(job_id)]
    assert steps == ["queued", "submitting", "generating", "downloading", "ready", "delivered"]
    video = job_dir(rig.settings.data_dir, job_id) / "video.mp4"
    assert video.read_bytes() == VIDEO_BYTES
    assert job.last_frame_path and Path(job.last_frame_path).exists()
    assert rig.provider.submits[0][0] == job_id  # the job id is the idempotency key
    kinds = rig.delivery.kinds(job_id)
    assert kinds[0] == "queued" and "started" in kinds and kinds[-1] == "delivered"
    succeeded = rig.delivery.of(job_id, "succeeded")[0].result
    assert succeeded is not None
    assert succeeded.seed == 42 and succeeded.cost == 0.25 and succeeded.credits == 5
    assert await rig.ledger_kinds(job_id) == [("reserve", 5), ("commit", 5)]
    assert job.credits_charged == 5


async def test_a_job_runs_from_submit_to_delivery_on_the_rows_its_moves_wrote(
        rig: Rig, monkeypatch: pytest.MonkeyPatch) -> None:
    """Its runner reads the job's row at no step: the scheduling pass's claim hands it the
    row as written, and each move after that returns it (bot/engine/runner.py)."""
    read_by: list[str] = []
    real_get = rig.store.get_job

    async def get_job(job_id: str) -> JobView | None:
        task = asyncio.current_task()
        read_by.append(task.get_name() if task else "")
        return await real_get(job_id)

    monkeypatch.setattr(rig.store, "get_job", get_job)
    engine = rig.engine()
    job_id = await enqueue(engine)
    await engine.start()
    assert (await engine.wait(job_id)).state is JobState.DELIVERED
    assert f"job-{job_id}" not in read_by


async def test_last_frame_only_when_asked(rig: Rig) -> None:
    engine = rig.engine()
    await engine.start()
    job = await engine.wait(await enqueue(engine, return_last_frame=False))
    assert job.last_frame_path is None
    assert not list(job_dir(rig.settings.data_dir, job.id).glob("last_frame*"))


def sixty_second_tasks(rig: Rig) -> None:
    """Tasks that finish 60 s (of the engine's fake clock) after their create; typical 60 s."""
    rig.provider.typical = 60.0
    started: dict[str, float] = {}

    def script(_req: Any) -> Outcome:
        started["t"] = rig.clock.now()
        return Outcome(polls=10**6)

    rig.provider.script = script
    real_poll = rig.provider.poll

    async def poll(task_id: str) -> TaskState:
        if rig.clock.now() - started["t"] >= 60:
            rig.provider.tasks[task_id].outcome.polls = 0
        return await real_poll(task_id)

    rig.provider.poll = poll  # type: ignore[method-assign]


async def test_polling_a_60s_task_takes_at_most_four_polls(rig: Rig) -> None:
    # The task needs 60 s; each poll happens after the engine's (fake) sleep.
    sixty_second_tasks(rig)
    engine = rig.engine()
    await engine.start()
    job = await engine.wait(await enqueue(engine))
    assert job.state is JobState.DELIVERED
    assert rig.provider.polls_of(job.task_id or "") <= 4


async def test_progress_events_are_reported(rig: Rig) -> None:
    rig.provider.script = lambda _r: Outcome(polls=3, progress=40.0)
    engine = rig.engine()
    await engine.start()
    job = await engine.wait(await enqueue(engine))
    progress = rig.delivery.of(job.id, "progress")
    assert [e.percent for e in progress] == [40.0]  # repeated values are not re-announced


async def test_real_face_is_final_and_credits_return(rig: Rig) -> None:
    rig.provider.script = lambda _r: Outcome(
        error=RealFaceError("The input may contain a real person", provider="fake")
    )
    engine = rig.engine()
    await engine.start()
    job = await engine.wait(await enqueue(engine))
    assert job.state is JobState.FAILED and job.error_kind == "real_face"
    assert len(rig.provider.submits) == 1
    assert "real person" in (rig.delivery.of(job.id, "failed")[0].reason or "")
    assert await rig.ledger_kinds(job.id) == [("reserve", 5), ("release", 5)]


async def test_unrefunded_failure_is_charged(rig: Rig) -> None:
    rig.provider.script = lambda _r: Outcome(
        error=TaskFailedError("upstream timeout", provider="fake", refunded=False)
    )
    engine = rig.engine()
    await engine.start()
    job = await engine.wait(await enqueue(engine))
    assert job.state is JobState.FAILED
    assert await rig.ledger_kinds(job.id) == [("reserve", 5), ("commit", 5)]


async def test_failure_reason_is_scrubbed(rig: Rig) -> None:
    rig.provider.script = lambda _r: Outcome(
        error=ContentRejectedError("blocked; key sk-secret-123456 used", provider="fake")
    )
    engine = rig.engine()
    await engine.start()
    job = await engine.wait(await enqueue(engine))
    assert "sk-secret-123456" not in (job.error_message or "")
    assert "sk-secret-123456" not in (rig.delivery.of(job.id, "failed")[0].reason or "")
    assert "blocked" in (job.error_message or "")
    # A gateway's refusal reads as moderation the person can act on, not as a fault.
    assert job.error_kind == "moderation" and "safety check refused" in (job.error_message or "")


async def test_audio_moderation_retries_once_without_audio_at_no_extra_charge(rig: Rig) -> None:
    def script(req: Any) -> Outcome:
        if req.audio:
            return Outcome(error=AudioModerationError("OutputAudioSensitiveContentDetected"))
        return Outcome()

    rig.provider.script = script
    engine = rig.engine()
    await engine.start()
    job = await engine.wait(await enqueue(engine, audio=True))
    assert job.state is JobState.DELIVERED
    keys = [k for k, _r, _c in rig.provider.submits]
    audios = [r.audio for _k, r, _c in rig.provider.submits]
    assert audios == [True, False]
    assert keys[0] == job.id and keys[1] != job.id  # a new request needs a new key
    assert job.audio_retried and job.request.audio is False
    retrying = rig.delivery.of(job.id, "retrying")
    assert len(retrying) == 1 and "without audio" in (retrying[0].reason or "")
    assert await rig.ledger_kinds(job.id) == [("reserve", 5), ("commit", 5)]


async def test_audio_moderation_twice_fails(rig: Rig) -> None:
    rig.provider.script = lambda _r: Outcome(error=AudioModerationError("AudioSensitive"))
    engine = rig.engine()
    await engine.start()
    job = await engine.wait(await enqueue(engine, audio=True))
    assert job.state is JobState.FAILED and len(rig.provider.submits) == 2


async def test_audio_moderation_without_audio_is_not_retried(rig: Rig) -> None:
    rig.provider.script = lambda _r: Outcome(error=AudioModerationError("AudioSensitive"))
    engine = rig.engine()
    await engine.start()
    job = await engine.wait(await enqueue(engine, audio=False))
    assert job.state is JobState.FAILED and len(rig.provider.submits) == 1


async def test_transient_submit_errors_retry_keeping_the_place(rig: Rig) -> None:
    rig.provider.submit_errors = [
        RateLimitError("slow down", provider="fake", status=429, retry_after=7.0)
    ]
    engine = rig.engine(limits=EngineLimits(retry_base=1.0, gateway_in_flight=1))
    first = await enqueue(engine, user="u1")
    second = await enqueue(engine, user="u2")
    seq_before = (await rig.store.get_job(first)).seq  # type: ignore[union-attr]
    await engine.start()
    done = await engine.wait(first)
    await engine.wait(second)
    assert done.state is JobState.DELIVERED and done.seq == seq_before
    assert done.attempts == 2
    steps = [t.to_state for t in await rig.store.transitions(first)]
    assert steps[:4] == ["queued", "submitting", "queued", "submitting"]
    assert 7.0 in rig.clock.sleeps or any(s >= 7.0 for s in rig.clock.sleeps)
    assert "slow down" in (rig.delivery.of(first, "retrying")[0].reason or "")


async def test_transient_submit_errors_are_bounded(rig: Rig) -> None:
    rig.provider.submit_errors = [
        RateLimitError("busy", provider="fake", status=429) for _ in range(10)
    ]
    engine = rig.engine(limits=EngineLimits(retry_base=1.0, submit_retries=2))
    await engine.start()
    job = await engine.wait(await enqueue(engine))
    assert job.state is JobState.FAILED and len(rig.provider.submits) == 3
    assert await rig.ledger_kinds(job.id) == [("reserve", 5), ("release", 5)]


async def test_ambiguous_create_error_is_not_resent_by_a_non_idempotent_provider(
    rig: Rig,
) -> None:
    from bot.errors import GatewayUnavailableError

    rig.provider.submit_errors = [GatewayUnavailableError("bad gateway", status=502)]
    engine = rig.engine()
    await engine.start()
    job = await engine.wait(await enqueue(engine))
    assert job.state is JobState.FAILED and len(rig.provider.submits) == 1


async def test_balance_error_fails_at_once(rig: Rig) -> None:
    rig.provider.submit_errors = [InsufficientBalanceError("no money", status=402)]
    engine = rig.engine()
    await engine.start()
    job = await engine.wait(await enqueue(engine))
    assert job.state is JobState.FAILED and job.error_kind == "balance"


async def test_transient_poll_errors_are_retried(rig: Rig) -> None:
    rig.provider.poll_errors = [RateLimitError("busy", status=429) for _ in range(3)]
    engine = rig.engine()
    await engine.start()
    job = await engine.wait(await enqueue(engine))
    assert job.state is JobState.DELIVERED


async def test_expired_result_url_is_refreshed_by_polling_again(rig: Rig) -> None:
    rig.provider.script = lambda _r: Outcome(ttl=-1.0)  # the first URL is dead on arrival
    real_result = rig.provider.result_for

    def result_for(task: Any) -> ProviderResult:
        if task.polls > 1:
            task.outcome.ttl = 3600.0
        return real_result(task)

    rig.provider.result_for = result_for  # type: ignore[method-assign]
    engine = rig.engine()
    await engine.start()
    job = await engine.wait(await enqueue(engine))
    assert job.state is JobState.DELIVERED
    assert rig.provider.polls_of(job.task_id or "") == 2


async def test_expired_twice_fails_and_is_charged(rig: Rig) -> None:
    rig.provider.script = lambda _r: Outcome(ttl=-1.0)
    engine = rig.engine()
    await engine.start()
    job = await engine.wait(await enqueue(engine))
    assert job.state is JobState.FAILED and job.error_kind == "expired"
    assert "expired" in (job.error_message or "")
    assert await rig.ledger_kinds(job.id) == [("reserve", 5), ("commit", 5)]


async def test_download_size_cap(rig: Rig, data_dir: Path) -> None:
    rig.settings = Settings(seedance_data_dir=data_dir, seedance_max_download_bytes=1024,
                            seedance_private_hosts="127.0.0.1")
    engine = rig.engine(limits=EngineLimits(retry_base=1.0, download_attempts=2))
    await engine.start()
    job = await engine.wait(await enqueue(engine))
    assert job.state is JobState.FAILED and job.error_kind == "download"
    assert not (job_dir(data_dir, job.id) / "video.mp4").exists()


async def test_delivery_failures_are_retried_and_the_job_stays_ready(rig: Rig) -> None:
    rig.delivery.fail_times = 2
    rig.delivery.fail_events = True  # a broken status message must not stop the job either
    engine = rig.engine()
    await engine.start()
    job = await engine.wait(await enqueue(engine))
    assert job.state is JobState.DELIVERED
    assert rig.delivery.deliver_calls[job.id] == 3 and rig.delivery.post_count[job.id] == 1
    steps = [t.to_state for t in await rig.store.transitions(job.id)]
    assert steps[-2:] == ["ready", "delivered"]


async def test_delivery_that_never_works_fails_honestly(rig: Rig) -> None:
    rig.delivery.fail_times = 100
    engine = rig.engine(limits=EngineLimits(retry_base=1.0, delivery_attempts=3))
    await engine.start()
    job = await engine.wait(await enqueue(engine))
    assert job.state is JobState.FAILED and job.error_kind == "delivery"
    assert (job_dir(rig.settings.data_dir, job.id) / "video.mp4").exists()
    assert await rig.ledger_kinds(job.id) == [("reserve", 5), ("commit", 5)]


async def test_a_running_create_answer_does_not_pull_the_polls_earlier(rig: Rig) -> None:
    # Some gateways answer the create with the task's state (Magnific: CREATED); that is not a
    # poll, so the schedule (45, 55, 70 s for a typical 60 s) must not move.
    sixty_second_tasks(rig)
    real_submit = rig.provider.submit

    async def submit(request: Any, **kw: Any) -> SubmitResult:
        result = await real_submit(request, **kw)
        running = TaskState(task_id=result.task_id, status=TaskStatus.RUNNING, progress=0.0)
        return SubmitResult(result.task_id, state=running)

    rig.provider.submit = submit  # type: ignore[method-assign]
    engine = rig.engine()
    await engine.start()
    job = await engine.wait(await enqueue(engine))
    assert job.state is JobState.DELIVERED
    assert rig.provider.polls_of(job.task_id or "") == 3


async def test_a_callback_before_the_create_answer_is_kept(rig: Rig) -> None:
    class Urls:
        def url_for(self, provider: str, job_id: str) -> str:
            return f"http://127.0.0.1:1/hooks/{provider}/{job_id}"

    rig.provider.webhooks = True
    rig.provider.script = lambda _r: Outcome(polls=10**6)
    rig.provider.created_gate = asyncio.Event()  # the task exists; its create answer is late
    rig.clock.block_from = 100.0
    engine = rig.engine(callbacks=Urls())
    await engine.start()
    job_id = await enqueue(engine)
    await rig.provider.submit_entered.wait()
    for _ in range(1000):  # the fake creates the task right after entering submit
        if rig.provider.tasks:
            break
        await asyncio.sleep(0)
    (task,) = rig.provider.tasks.values()
    assert (await rig.store.get_job(job_id)).state is JobState.SUBMITTING  # type: ignore[union-attr]
    await engine.on_callback(job_id, TaskState(task_id=task.task_id,
                                               status=TaskStatus.SUCCEEDED,
                                               result=rig.provider.result_for(task)))
    rig.provider.created_gate.set()
    done = await engine.wait(job_id)
    assert done.state is JobState.DELIVERED and task.polls == 0


async def test_callbacks_replace_most_polls(rig: Rig) -> None:
    class Urls:
        def url_for(self, provider: str, job_id: str) -> str:
            return f"http://127.0.0.1:1/hooks/{provider}/{job_id}"

    rig.provider.webhooks = True
    rig.provider.script = lambda _r: Outcome(polls=10**6)
    # Polling is a slow fallback: its first wait is stretched well past the typical 60 s.
    rig.clock.block_from = 100.0
    engine = rig.engine(callbacks=Urls())
    await engine.start()
    job_id = await enqueue(engine)
    job = await wait_for_state(rig.store, job_id, "generating")
    assert rig.provider.submits[0][2] == f"http://127.0.0.1:1/hooks/fake/{job_id}"
    # The runner now waits for its first poll: far off, since the gateway will call back.
    for _ in range(20000):
        if any(s >= 4 * 45.0 for s in rig.clock.sleeps):
            break
        await asyncio.sleep(0.001)
    else:
        raise AssertionError(f"the first poll was never put off: {rig.clock.sleeps}")
    task = rig.provider.tasks[job.task_id or ""]
    state = TaskState(task_id=task.task_id, status=TaskStatus.SUCCEEDED,
                      result=rig.provider.result_for(task))
    await engine.on_callback(job_id, state)
    await engine.on_callback(job_id, state)  # gateways redeliver
    done = await engine.wait(job_id)
    assert done.state is JobState.DELIVERED and rig.delivery.post_count[job_id] == 1
    assert task.polls == 0


async def test_cancel_queued_returns_credits(rig: Rig) -> None:
    engine = rig.engine()  # not started: the job stays queued
    job_id = await enqueue(engine)
    text = await engine.cancel(job_id, "u1")
    assert "5 credits returned" in text
    job = await engine.wait(job_id)
    assert job.state is JobState.CANCELLED
    assert await rig.ledger_kinds(job_id) == [("reserve", 5), ("release", 5)]
    assert "cancelled" in rig.delivery.kinds(job_id)


async def test_only_the_owner_or_a_moderator_cancels(rig: Rig) -> None:
    engine = rig.engine()
    job_id = await enqueue(engine)
    with pytest.raises(NotAllowed):
        await engine.cancel(job_id, "someone-else")
    assert "returned" in await engine.cancel(job_id, "mod", moderator=True)


@pytest.mark.parametrize("can_cancel", [True, False])
async def test_cancel_running_says_what_is_billed(rig: Rig, can_cancel: bool) -> None:
    rig.provider.can_cancel = can_cancel
    rig.provider.script = lambda _r: Outcome(polls=10**6)
    engine = rig.engine()
    await engine.start()
    job_id = await enqueue(engine)
    await wait_for_state(rig.store, job_id, "generating")
    text = await engine.cancel(job_id, "u1")
    job = await engine.wait(job_id)
    assert job.state is JobState.CANCELLED
    if can_cancel:
        assert "returned" in text
        assert await rig.ledger_kinds(job_id) == [("reserve", 5), ("release", 5)]
    else:
        assert "still billed" in text and "5 credits were spent" in text
        assert await rig.ledger_kinds(job_id) == [("reserve", 5), ("commit", 5)]
    assert rig.delivery.post_count[job_id] == 0


async def test_cancel_while_submitting_waits_for_the_task_id(rig: Rig) -> None:
    import asyncio

    gate = asyncio.Event()
    rig.provider.submit_gate = gate
    rig.provider.script = lambda _r: Outcome(polls=10**6)
    engine = rig.engine()
    await engine.start()
    job_id = await enqueue(engine)
    await rig.provider.submit_entered.wait()
    cancelling = asyncio.ensure_future(engine.cancel(job_id, "u1"))
    await asyncio.sleep(0)
    gate.set()
    text = await cancelling
    assert "returned" in text
    job = await engine.wait(job_id)
    assert job.state is JobState.CANCELLED and rig.provider.tasks[job.task_id or ""].cancelled


async def test_approval_flow_and_rejection(rig: Rig) -> None:
    engine = rig.engine()
    await engine.start()
    approved = await enqueue(engine, needs_approval=True)
    rejected = await enqueue(engine, needs_approval=True)
    assert (await rig.store.get_job(approved)).state is JobState.AWAITING_APPROVAL  # type: ignore[union-attr]
    assert rig.provider.submits == []
    await engine.approve(approved, "mod")
    await engine.reject(rejected, "mod", "not on topic")
    assert (await engine.wait(approved)).state is JobState.DELIVERED
    job = await engine.wait(rejected)
    assert job.state is JobState.REJECTED and job.error_message == "not on topic"
    assert await rig.ledger_kinds(rejected) == [("reserve", 5), ("release", 5)]
    audit = await rig.store.transitions(approved)
    assert audit[1].detail == "approved by mod"
    assert job.moderator_id == "mod" and (await engine.job(approved)).moderator_id == "mod"  # type: ignore[union-attr]


async def test_a_runner_stopped_by_a_database_outage_is_resumed_at_the_next_pass(
    rig: Rig,
) -> None:
    """The runner ends (the job stays this process's, claimed for an hour) and the keeper's
    next pass resumes it: not the next lease renewal, twenty minutes away."""
    engine = rig.engine(limits=EngineLimits(retry_base=1.0, lease_ttl=3600.0,
                                            claim_interval=0.05))
    rig.provider.poll_errors = [DatabaseUnavailable("PostgreSQL at db:5432 is unreachable")]
    await engine.start()
    job_id = await enqueue(engine)
    async with asyncio.timeout(30):  # a hang guard: without the resume it waits 20 minutes
        job = await engine.wait(job_id)
    assert job.state is JobState.DELIVERED and rig.delivery.post_count[job_id] == 1
    assert not rig.provider.poll_errors  # the outage was met
    assert await rig.ledger_kinds(job_id) == [("reserve", 5), ("commit", 5)]


async def test_held_result_waits_for_a_moderator(rig: Rig) -> None:
    engine = rig.engine()
    await engine.start()
    job_id = await enqueue(engine, hold_result=True)
    await wait_for_state(rig.store, job_id, "held")

    async def told_held() -> bool:  # the row says it first, the announcement follows
        return "held" in rig.delivery.kinds(job_id)

    await until(told_held)
    assert rig.delivery.post_count[job_id] == 0
    assert await rig.ledger_kinds(job_id) == [("reserve", 5)]  # charged only once let out
    await engine.approve(job_id, "mod")
    job = await engine.wait(job_id)
    assert job.state is JobState.DELIVERED and rig.delivery.post_count[job_id] == 1
    assert await rig.ledger_kinds(job_id) == [("reserve", 5), ("commit", 5)]


async def test_rejected_result_returns_credits_and_deletes_the_video(rig: Rig) -> None:
    engine = rig.engine()
    await engine.start()
    job_id = await enqueue(engine, hold_result=True)
    held = await wait_for_state(rig.store, job_id, "held")
    assert held.result_path and Path(held.result_path).exists()
    job = await engine.reject(job_id, "mod", "off topic")
    assert job.state is JobState.REJECTED and job.moderator_id == "mod"
    assert await rig.ledger_kinds(job_id) == [("reserve", 5), ("release", 5)]
    assert not Path(held.result_path).exists() and job.result_path is None
    assert rig.delivery.post_count[job_id] == 0
    assert [e.reason for e in rig.delivery.of(job_id, "rejected")] == ["off topic"]


async def test_per_user_queued_cap(rig: Rig) -> None:
    engine = rig.engine(limits=EngineLimits(user_queued=2))
    await enqueue(engine)
    await enqueue(engine)
    with pytest.raises(QueueFull):
        await enqueue(engine)
    await enqueue(engine, user="u2")  # others are not affected


async def test_retention_removes_old_files_only(rig: Rig) -> None:
    engine = rig.engine()
    await engine.start()
    old = await engine.wait(await enqueue(engine))
    rig.clock.t += 8 * 86400
    new = await engine.wait(await enqueue(engine))
    removed = await engine.cleanup()
    assert removed == 1
    assert not job_dir(rig.settings.data_dir, old.id).exists()
    assert (job_dir(rig.settings.data_dir, new.id) / "video.mp4").exists()
    assert (await rig.store.get_job(old.id)).result_path is None  # type: ignore[union-attr]


async def test_unknown_provider_is_invalid_input(rig: Rig) -> None:
    from bot.errors import InvalidInput

    engine = rig.engine()
    with pytest.raises(InvalidInput, match="provider"):
        await engine.enqueue(request(provider="nope"), guild_id="g", channel_id="c",
                             user_id="u")


async def test_a_callback_with_part_of_a_set_makes_the_engine_look_at_the_whole(
    rig: Rig,
) -> None:
    """Each result of a set may call back to a different process: one that saw only part of
    it says "succeeded" with fewer videos than asked. The engine then polls the gateway, which
    has them all, instead of taking the part for the whole."""

    class Urls:
        def url_for(self, provider: str, job_id: str) -> str:
            return f"http://127.0.0.1:1/hooks/{provider}/{job_id}"

    rig.provider.webhooks = True
    rig.provider.script = lambda _r: Outcome(polls=0)  # the first poll finds all three
    rig.clock.block_from = 100.0  # polling on its own schedule would wait forever
    engine = rig.engine(callbacks=Urls())
    await engine.start()
    job = await engine.enqueue(request(results=3), guild_id="g", channel_id="c", user_id="u")
    running = await wait_for_state(rig.store, job.id, "generating")
    task = rig.provider.tasks[running.task_id or ""]
    whole = rig.provider.result_for(task)
    part = whole.model_copy(update={"video_urls": whole.video_urls[:1]})
    await engine.on_callback(job.id, TaskState(task_id=task.task_id,
                                               status=TaskStatus.SUCCEEDED, result=part))
    done = await engine.wait(job.id)
    assert done.state is JobState.DELIVERED and task.polls == 1
    assert len(done.result_meta["video_urls"]) == 3
