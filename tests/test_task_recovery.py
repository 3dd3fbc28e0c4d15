"""A create whose answer was lost, on a gateway that lists its tasks (Magnific): the real
engine and the real Magnific module against its fake (bot/engine/recovery.py).

The task is adopted from the list only when the list proves which one it is; otherwise the job
fails as before, credits returned, and nothing is ever sent twice.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import httpx
import pytest

from bot.config import Settings
from bot.engine import Engine, JobState, JobView
from bot.engine.recovery import LISTED_BEFORE, TaskRecovery
from bot.models import GenerationRequest
from bot.providers import magnific
from bot.providers.base import Provider
from bot.providers.magnific import LIST_PATH
from bot.store import Store
from bot.store.database import DatabaseUnavailable
from tests.chaos.faults_helpers import GATEWAYS, LATE, LIMITS, POLLS, READ_TIMEOUT, Rig, rig
from tests.fakes.common import sample_video
from tests.fakes.magnific import FakeMagnific
from tests.test_engine_fakes import FakeClock, FakeDelivery, until

pytestmark = pytest.mark.timeout(120)

MAGNIFIC = GATEWAYS["magnific"]
CREATE = MAGNIFIC.create


def lists(r: Rig) -> int:
    """Task-list reads the gateway saw."""
    return len([q for q in r.fake.received("GET", LIST_PATH) if q.path == LIST_PATH])


async def details(r: Rig, job_id: str) -> str:
    return " | ".join(t.detail for t in await r.store.transitions(job_id))


async def test_a_lost_create_answer_is_recovered_from_the_task_list(data_dir: Path) -> None:
    async with rig(MAGNIFIC, data_dir) as r:
        r.fake.answer_late(LATE, **CREATE)  # the task is made; its answer comes too late
        job = await r.run()
        assert job.state is JobState.DELIVERED, job.error_message
        assert len(MAGNIFIC.creates(r.fake)) == 1 and list(r.fake.tasks) == [job.task_id]
        assert lists(r) == 2  # once before the create, once to find it
        assert "recovered from magnific's task list" in await details(r, job.id)
        assert Path(job.result_path or "").read_bytes() == sample_video()
        assert await r.ledger(job.id) == ["reserve", "commit"]


async def test_the_task_list_is_read_once_before_every_create(data_dir: Path) -> None:
    async with rig(MAGNIFIC, data_dir) as r:
        first = await r.run()
        second = await r.enqueue()
        async with asyncio.timeout(60):
            second = await r.engine.wait(second.id)
        assert first.state is second.state is JobState.DELIVERED
        assert lists(r) == 2 and len(MAGNIFIC.creates(r.fake)) == 2


async def test_the_snapshot_goes_once_the_create_answered(data_dir: Path) -> None:
    """Kept while the create may be on its way (a restart then looks for the task in the
    list), not once its answer named the task: the snapshot is a page of the gateway's ids,
    the row's largest part, read back with every later move and lease renewal."""
    async with rig(MAGNIFIC, data_dir) as r:
        r.fake.polls_to_finish = 10**9  # the task stays in progress
        job = await r.enqueue()
        await r.engine.start()

        async def generating() -> bool:
            row = await r.store.get_job(job.id)
            return row is not None and row.state is JobState.GENERATING

        await until(generating, tries=60_000)  # ~a minute: a hang guard, not a timing
        row = await r.store.get_job(job.id)
        assert row is not None and row.task_id == next(iter(r.fake.tasks))
        assert LISTED_BEFORE not in row.result_meta


def count_snapshot_writes(store: Store, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The sizes of the snapshot writes the store makes (around its real method)."""
    sizes: list[int] = []
    real = store.update_result_meta

    async def counted(metas: Any, *, now: float) -> None:
        sizes.append(len(metas))
        await real(metas, now=now)

    monkeypatch.setattr(store, "update_result_meta", counted)
    return sizes


def spy_snapshot_at_create(r: Rig, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The jobs whose row held a snapshot when their create was sent."""
    seen: list[str] = []
    real = r.provider.submit

    async def submit(request: GenerationRequest, **kwargs: Any) -> Any:
        row = await r.store.get_job(kwargs["idempotency_key"])
        if row is not None and isinstance(row.result_meta.get(LISTED_BEFORE), list):
            seen.append(row.id)
        return await real(request, **kwargs)

    monkeypatch.setattr(r.provider, "submit", submit)
    return seen


async def test_creates_started_together_share_one_list(
        data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A list still being read is read before every create waiting for it is sent: a burst
    of creates costs one list, and each row keeps it as its snapshot."""
    limits = replace(LIMITS, user_running=3, guild_running=3)
    async with rig(MAGNIFIC, data_dir, limits=limits) as r:
        # The first list answers a little late (within the read timeout): the others ask
        # while it is being read.
        r.fake.answer_late(READ_TIMEOUT / 2, method="GET", path_prefix=LIST_PATH)
        jobs = [await r.enqueue(prompt=f"a lighthouse, take {n}") for n in range(3)]
        writes = count_snapshot_writes(r.store, monkeypatch)
        snapshot_at_create = spy_snapshot_at_create(r, monkeypatch)
        await r.engine.start()
        async with asyncio.timeout(60):
            done = [await r.engine.wait(j.id) for j in jobs]
        assert all(j.state is JobState.DELIVERED for j in done)
        # Three creates, one list before them (a list of its own each would be three).
        assert lists(r) == 1 and len(MAGNIFIC.creates(r.fake)) == 3
        # ... and their three snapshots in one write, in each row before its create went.
        assert writes == [3] and sorted(snapshot_at_create) == sorted(j.id for j in jobs)
        # A create asking after that list was read gets a list of its own.
        later = await r.enqueue(prompt="a lighthouse at dawn")
        async with asyncio.timeout(60):
            assert (await r.engine.wait(later.id)).state is JobState.DELIVERED
        assert lists(r) == 2


async def test_a_failed_snapshot_write_fails_each_create_waiting_for_it(
        data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The snapshots written together fail together, each as its own write would have (no
    create is sent without its snapshot), and the next ones are written again."""
    async with rig(MAGNIFIC, data_dir) as r:
        jobs = [await r.enqueue(prompt=f"a lighthouse, take {n}") for n in range(3)]
        recovery = TaskRecovery(r.store, time.time)
        writes = count_snapshot_writes(r.store, monkeypatch)
        counted = r.store.update_result_meta
        away = DatabaseUnavailable("PostgreSQL at postgresql://db is unreachable")

        async def away_once(metas: Any, *, now: float) -> None:
            monkeypatch.setattr(r.store, "update_result_meta", counted)
            raise away

        monkeypatch.setattr(r.store, "update_result_meta", away_once)
        failed = await asyncio.gather(*(recovery.snapshot(j, r.provider) for j in jobs),
                                      return_exceptions=True)
        assert failed == [away, away, away] and writes == []
        unwritten = [await r.store.get_job(j.id) for j in jobs]
        assert all(row and LISTED_BEFORE not in row.result_meta for row in unwritten)
        written = await asyncio.gather(*(recovery.snapshot(j, r.provider) for j in jobs))
        assert writes == [3] and all(isinstance(j.result_meta[LISTED_BEFORE], list)
                                     for j in written)
        rows = [await r.store.get_job(j.id) for j in jobs]
        assert [row.result_meta if row else None for row in rows] == \
            [j.result_meta for j in written]


async def test_a_stopped_snapshot_write_leaves_no_create_waiting(
        data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The write stopped (the process shuts down): every create waiting for it, and any that
    asked meanwhile, stop too instead of waiting for ever; none is sent."""
    async with rig(MAGNIFIC, data_dir) as r:
        jobs = [await r.enqueue(prompt=f"a lighthouse, take {n}") for n in range(4)]
        recovery = TaskRecovery(r.store, time.time)
        writing = asyncio.Event()

        async def never_done(metas: Any, *, now: float) -> None:
            writing.set()
            await asyncio.Event().wait()

        monkeypatch.setattr(r.store, "update_result_meta", never_done)
        first = [asyncio.ensure_future(recovery.snapshot(j, r.provider)) for j in jobs[:3]]
        await writing.wait()
        late = asyncio.ensure_future(recovery.snapshot(jobs[3], r.provider))

        async def late_waits() -> bool:  # listed, it waits for the next write
            return bool(recovery._snapshots._queue)

        await until(late_waits)
        writer = recovery._snapshots._task
        assert writer is not None
        writer.cancel()
        async with asyncio.timeout(10):  # a hang guard, not a timing assertion
            ended = await asyncio.gather(*first, late, return_exceptions=True)
        assert all(isinstance(e, asyncio.CancelledError) for e in ended)
        assert not MAGNIFIC.creates(r.fake)


async def test_a_second_new_task_in_the_list_means_no_adoption(data_dir: Path) -> None:
    async with rig(MAGNIFIC, data_dir) as r:
        r.fake.foreign_on_create = 1  # someone else's task appears beside ours
        r.fake.answer_late(LATE, **CREATE)
        job = await r.run()
        assert job.state is JobState.FAILED and "no answer" in (job.error_message or "")
        assert job.task_id is None and len(r.fake.tasks) == 2
        assert len(MAGNIFIC.creates(r.fake)) == 1  # never sent again
        assert await r.ledger(job.id) == ["reserve", "release"]


async def test_a_create_that_made_no_task_adopts_none(data_dir: Path) -> None:
    async with rig(MAGNIFIC, data_dir) as r:
        r.fake.fail_next(200, None, delay=LATE, **CREATE)  # no task made, no answer either
        job = await r.run()
        assert job.state is JobState.FAILED and job.task_id is None
        assert r.fake.tasks == {} and lists(r) == 2
        assert await r.ledger(job.id) == ["reserve", "release"]


async def test_a_task_another_job_has_or_may_have_made_is_never_adopted(data_dir: Path) -> None:
    """Two creates at once, the first answer lost without a task: the other job's task is new
    in the list, but it is that job's (or that job's create is still on its way)."""
    async with rig(MAGNIFIC, data_dir) as r:
        r.fake.fail_next(200, None, delay=LATE, **CREATE)
        a, b = await r.enqueue(), await r.enqueue()
        await r.engine.start()
        async with asyncio.timeout(60):
            jobs = [await r.engine.wait(a.id), await r.engine.wait(b.id)]
        states = sorted(j.state.value for j in jobs)
        assert states == ["delivered", "failed"]
        delivered = next(j for j in jobs if j.state is JobState.DELIVERED)
        failed = next(j for j in jobs if j.state is JobState.FAILED)
        assert list(r.fake.tasks) == [delivered.task_id] and failed.task_id is None
        assert r.delivery.post_count[delivered.id] == 1 and failed.id not in r.delivery.post_count


@dataclass
class Patient:
    """Magnific's fake and module with a client that waits for slow answers (so the engine is
    stopped while its create is provably still waiting), and engines over one store."""

    fake: FakeMagnific
    settings: Settings
    store: Store
    provider: Provider
    http: httpx.AsyncClient
    clock: FakeClock

    def engine(self) -> Engine:
        return Engine(self.settings, self.store, delivery=FakeDelivery(),
                      providers={"magnific": self.provider}, http=self.http, limits=LIMITS,
                      clock=self.clock.now, sleep=self.clock.sleep, poll_policy=POLLS)

    async def enqueue(self) -> JobView:
        request = GenerationRequest(prompt="a lighthouse in a storm", resolution="480p",
                                    duration=5, ratio="16:9", audio=False, provider="magnific")
        return await self.engine().enqueue(request, guild_id="g1", channel_id="c1",
                                           user_id="u1")


@asynccontextmanager
async def patient(data_dir: Path) -> AsyncIterator[Patient]:
    async with FakeMagnific() as fake, httpx.AsyncClient(timeout=60.0) as http:
        settings = MAGNIFIC.settings(fake, data_dir)
        store = await Store.open(settings.database_path)
        provider = magnific.build(settings, client=http)
        try:
            yield Patient(fake, settings, store, provider, http, FakeClock(start=time.time()))
        finally:
            await store.close()


async def stop_while(engine: Engine, condition: Callable[[], bool]) -> None:
    """Start `engine`, wait for `condition` (a fact at the fake), then stop it."""
    await engine.start()
    for _ in range(3000):  # a hang guard, not a timing assertion
        if condition():
            break
        await asyncio.sleep(0.01)
    await engine.stop()
    assert condition()


async def finish(p: Patient, job_id: str) -> JobView:
    engine = p.engine()  # after a restart, or in another process
    await engine.start()
    try:
        async with asyncio.timeout(60):
            return await engine.wait(job_id)
    finally:
        await engine.stop()


async def test_a_restart_while_the_answer_was_on_its_way_adopts_the_task(data_dir: Path) -> None:
    async with patient(data_dir) as p:
        p.fake.answer_late(2.0, **CREATE)  # made at once, answered after the restart
        job = await p.enqueue()
        await stop_while(p.engine(), lambda: bool(p.fake.tasks))
        stored = await p.store.get_job(job.id)
        assert stored is not None and stored.state is JobState.SUBMITTING
        assert LISTED_BEFORE in stored.result_meta
        done = await finish(p, job.id)
        assert done.state is JobState.DELIVERED, done.error_message
        assert len(MAGNIFIC.creates(p.fake)) == 1 and list(p.fake.tasks) == [done.task_id]
        assert [ln.kind for ln in await p.store.ledger(job.id)] == ["reserve", "commit"]


async def test_a_restart_before_the_snapshot_sends_the_create_once(data_dir: Path) -> None:
    """No snapshot in the row means the create was never sent: it is sent now, not failed."""
    async with patient(data_dir) as p:
        p.fake.fail_next(200, None, delay=2.0, method="GET", path_prefix=LIST_PATH)
        job = await p.enqueue()
        await stop_while(p.engine(), lambda: bool(p.fake.received("GET", LIST_PATH)))
        stored = await p.store.get_job(job.id)
        assert stored is not None and stored.state is JobState.SUBMITTING
        assert LISTED_BEFORE not in stored.result_meta and p.fake.tasks == {}
        done = await finish(p, job.id)
        assert done.state is JobState.DELIVERED, done.error_message
        assert len(MAGNIFIC.creates(p.fake)) == 1 and len(p.fake.tasks) == 1


async def test_the_list_answer_is_read_leniently(data_dir: Path) -> None:
    async with rig(MAGNIFIC, data_dir) as r:
        provider = r.provider
        assert isinstance(provider, magnific.MagnificProvider)
        r.fake.fail_next(200, {"data": [
            {"task_id": "t-1", "status": "COMPLETED", "generated": ["https://x/v.mp4"]},
            {"status": "CREATED"},  # no id: skipped
            "junk",  # not an object: skipped
            {"task_id": "t-2", "status": "IN_PROGRESS", "generated": []},
        ]}, method="GET", path_prefix=LIST_PATH)
        listed = await provider.list_tasks()
        assert [(t.task_id, t.status.value) for t in listed] == [("t-1", "succeeded"),
                                                                 ("t-2", "running")]
        r.fake.fail_next(200, {"data": [
            {"task_id": "t-1", "status": "COMPLETED"}, {"status": "CREATED"}, "junk",
            {"task_id": "t-3"},  # no status: not a task to adopt, still an id the list shows
        ]}, method="GET", path_prefix=LIST_PATH)
        assert await provider.list_task_ids() == ["t-1", "t-3"]
        r.fake.fail_next(200, {"data": "nope"}, method="GET", path_prefix=LIST_PATH)
        from bot.errors import GatewayUnavailableError

        with pytest.raises(GatewayUnavailableError, match="task list"):
            await provider.list_tasks()
