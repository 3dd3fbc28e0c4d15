"""Several processes on one queue (bot/engine/claims.py, bot/store/claims.py): each engine here
has its own Store (its own connections) on one database, as separate processes would, on
both backends. Caps and fair turns hold across them; a dead process's jobs are taken over
(at once when it is provably dead, after its lease otherwise); a callback or a cancel that
reaches the wrong process reaches the job where it runs."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from bot.config import Settings
from bot.engine import Engine, EngineLimits, FairQueue, JobState
from bot.models import TaskState, TaskStatus
from bot.store import IN_FLIGHT_STATES, Store
from bot.store.records import QueuedRow, RunningCounts, Served
from tests.fakes.common import FakeGateway
from tests.test_engine_fakes import FakeClock, FakeDelivery, FakeProvider, Outcome, request

#: Fast claims, so a lease running out takes a fraction of a second of real time.
FAST = dict(claim_interval=0.05, lease_ttl=5.0, retry_base=0.0)


class Cluster:
    """One database, one gateway; `boot` adds a process (an engine with its own store)."""

    def __init__(self, settings: Settings, target: str | Path, files: FakeGateway,
                 http: httpx.AsyncClient) -> None:
        self.settings, self.target, self.files, self.http = settings, target, files, http
        self.provider = FakeProvider(files, idempotent_submit=True)
        self.clock = FakeClock()
        self.engines: list[Engine] = []
        self.stores: list[Store] = []
        self.deliveries: list[FakeDelivery] = []

    async def boot(self, *, start: bool = True, **limits: Any) -> Engine:
        store = await Store.open(self.target)
        delivery = FakeDelivery()
        callbacks = limits.pop("callbacks", None)
        engine = Engine(self.settings, store, delivery=delivery,
                        providers={"fake": self.provider}, http=self.http,
                        limits=EngineLimits(**{**FAST, **limits}), clock=self.clock.now,
                        sleep=self.clock.sleep, callbacks=callbacks)
        self.stores.append(store)
        self.engines.append(engine)
        self.deliveries.append(delivery)
        if start:
            await engine.start()
        return engine

    def posts(self, job_id: str) -> int:
        return sum(d.post_count[job_id] for d in self.deliveries)

    @staticmethod
    def kill(engine: Engine) -> None:
        """What SIGKILL leaves: no stop, no release; its keeper no longer runs."""
        tasks = [*engine._runners.values(), engine._scheduler, engine._keeper_task]
        for task in tasks:
            if task is not None:
                task.cancel()


@pytest.fixture
async def cluster(data_dir: Path, store_url: str) -> AsyncIterator[Cluster]:
    settings = Settings(seedance_data_dir=data_dir, seedance_user_daily_credits=100000,
                        seedance_guild_monthly_credits=1000000,
                        seedance_private_hosts="127.0.0.1")
    async with FakeGateway() as files, httpx.AsyncClient() as http:
        c = Cluster(settings, store_url, files, http)
        yield c
        for engine in c.engines:
            await engine.stop()
        for store in c.stores:
            await store.close()


async def eventually(check: Any, timeout: float = 20.0) -> Any:  # noqa: ASYNC109
    """Real time: the keepers run on the real clock (leases are the database's)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        value = await check()
        if value:
            return value
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.02)


async def test_caps_hold_across_processes_and_every_job_is_posted_once(cluster: Cluster) -> None:
    cluster.provider.script = lambda _r: Outcome(polls=3)
    a = await cluster.boot(gateway_in_flight=2, guild_running=10, user_running=10)
    b = await cluster.boot(gateway_in_flight=2, guild_running=10, user_running=10)
    store = cluster.stores[0]
    ids = []
    for n in range(12):
        engine = (a, b)[n % 2]
        job = await engine.enqueue(request(f"job {n}"), guild_id="g", channel_id="c",
                                   user_id=f"u{n % 3}")
        ids.append(job.id)
    peak = 0

    async def all_done() -> bool:
        nonlocal peak
        peak = max(peak, len(await store.jobs(IN_FLIGHT_STATES)))
        jobs = [await store.get_job(i) for i in ids]
        return all(j is not None and j.state is JobState.DELIVERED for j in jobs)

    await eventually(all_done, timeout=60)
    assert peak <= 2
    assert all(cluster.posts(i) == 1 for i in ids)
    # Which process starts which job is a race (the one whose job ended refills the slot at
    # once); every job was started exactly once, by one of them.
    starts = [job for d in cluster.deliveries for job, e in d.events
              if e.kind.value == "started"]
    assert sorted(starts) == sorted(ids)
    for job_id in ids:
        assert [ln.kind for ln in await store.ledger(job_id)] == ["reserve", "commit"]
    assert await store.owners() == {}


async def test_a_dead_processs_jobs_are_taken_over_at_once_on_its_host(
    cluster: Cluster,
) -> None:
    cluster.provider.script = lambda _r: Outcome(polls=10**6)
    a = await cluster.boot()
    job = await a.enqueue(request(), guild_id="g", channel_id="c", user_id="u")
    store = cluster.stores[0]
    running = await eventually(lambda: _in_state(store, job.id, JobState.GENERATING))
    assert running.owner == a.process
    cluster.kill(a)  # its lease still runs for seconds; but its host says it is gone
    cluster.provider.script = lambda _r: Outcome(polls=1)
    for task in cluster.provider.tasks.values():
        task.outcome = Outcome(polls=1)
    b = await cluster.boot()
    done = await eventually(lambda: _in_state(store, job.id, JobState.DELIVERED), timeout=5)
    assert done.owner is None
    assert cluster.posts(job.id) == 1 and len(cluster.provider.submits) == 1
    assert any(t.detail for t in await store.transitions(job.id))
    assert b.process != a.process


@pytest.mark.parametrize("skew_days", [-500.0, 0.0, 365.0])
async def test_a_process_on_another_host_keeps_its_job_until_its_lease_runs_out(
    cluster: Cluster, skew_days: float,
) -> None:
    """Leases are measured by the database's clock: a process whose own clock is far behind
    or ahead neither steals a live lease nor waits forever for a dead one."""
    cluster.clock.t = time.time() + skew_days * 86400
    first = await cluster.boot(start=False)
    job = await first.enqueue(request(), guild_id="g", channel_id="c", user_id="u")
    store = cluster.stores[0]
    elsewhere = "another-host:4242:abcd1234"

    def take_all(waiting: list[QueuedRow], _c: RunningCounts, _s: Served) -> list[QueuedRow]:
        return waiting

    started = await store.schedule(take_all, owner=elsewhere, ttl=1.5, now=cluster.clock.now())
    assert [j.id for j in started.started] == [job.id]
    await cluster.boot()
    await asyncio.sleep(0.5)  # several keeper passes: the lease is still good
    held = await store.get_job(job.id)
    assert held is not None and held.owner == elsewhere and held.state is JobState.SUBMITTING
    done = await eventually(lambda: _in_state(store, job.id, JobState.DELIVERED), timeout=10)
    assert cluster.posts(done.id) == 1


async def test_a_callback_that_reaches_another_process_wakes_the_job_where_it_runs(
    cluster: Cluster,
) -> None:
    a, b, running = await _generating_with_callbacks(cluster, start_b=True)
    job, store = running, cluster.stores[0]
    owner, other = (a, b) if running.owner == a.process else (b, a)
    task = cluster.provider.tasks[running.task_id or ""]
    await other.on_callback(job.id, TaskState(task_id=task.task_id, status=TaskStatus.SUCCEEDED,
                                              result=cluster.provider.result_for(task)))
    done = await eventually(lambda: _in_state(store, job.id, JobState.DELIVERED), timeout=10)
    assert task.polls == 0 and cluster.posts(done.id) == 1
    assert cluster.deliveries[cluster.engines.index(owner)].post_count[job.id] == 1


async def test_a_callback_to_the_process_that_drives_the_job_needs_no_read_of_its_row(
    cluster: Cluster,
) -> None:
    """While its leases are fresh, the process's runner's view stands in for the row: one
    read per callback saved (bench/README.md, eleventh pass)."""
    a, _b, running = await _generating_with_callbacks(cluster)
    job, store = running, cluster.stores[0]
    assert running.owner == a.process
    task = cluster.provider.tasks[running.task_id or ""]
    reads: list[str] = []
    read = store.get_job

    async def counted(job_id: str) -> Any:
        reads.append(job_id)
        return await read(job_id)

    with pytest.MonkeyPatch.context() as patch:  # a's store counts its reads meanwhile
        patch.setattr(store, "get_job", counted)
        await a.on_callback(job.id, TaskState(task_id=task.task_id, status=TaskStatus.SUCCEEDED,
                                              result=cluster.provider.result_for(task)))
    assert reads == []
    done = await eventually(lambda: _in_state(store, job.id, JobState.DELIVERED), timeout=10)
    assert task.polls == 0 and cluster.posts(done.id) == 1


async def test_a_process_whose_leases_may_have_lapsed_asks_the_row_and_hands_the_news_on(
    cluster: Cluster,
) -> None:
    """A process frozen past half a lease may have lost its jobs to another: a callback it
    gets for a job its runner still holds goes by the row, to the process that took it."""
    a, b, running = await _generating_with_callbacks(cluster)
    job, store = running, cluster.stores[0]
    assert running.owner == a.process and a._keeper.holds(job.id)
    # a stalls (its leases unrenewed for longer than they last); b takes the job over, as
    # its keeper would, while a's runner, frozen with a, still holds its old view.
    a._keeper._renewed -= 2 * FAST["lease_ttl"]
    assert not a._keeper.holds(job.id)
    taken = await cluster.stores[1].claim(job.id, b.process, FAST["lease_ttl"],
                                          replacing=a.process)
    assert taken is not None
    await b.start()
    b._runner.spawn(job.id, resumed=True)
    task = cluster.provider.tasks[running.task_id or ""]
    await a.on_callback(job.id, TaskState(task_id=task.task_id, status=TaskStatus.SUCCEEDED,
                                          result=cluster.provider.result_for(task)))
    done = await eventually(lambda: _in_state(store, job.id, JobState.DELIVERED), timeout=10)
    assert cluster.posts(done.id) == 1
    assert cluster.deliveries[1].post_count[job.id] == 1
    assert not a._keeper.holds(job.id)  # a renewed since, but its runner ran through the gap


async def test_holding_ends_with_a_late_renewal_and_comes_back_for_runners_after_it(
    cluster: Cluster,
) -> None:
    from bot.engine.claims import Keeper, process_id

    await cluster.boot(start=False)  # opens the store (and migrates it)
    running = {"before"}

    async def cancel(_job_id: str, _by: str) -> None:
        return None

    keeper = Keeper(cluster.stores[0], owner=process_id(), ttl=10.0, interval=3600.0,
                    resume=lambda _job_id: None, running=lambda: running,
                    stranded=lambda: 0, deliver=lambda _job_id, _state: None, cancel=cancel,
                    wake=asyncio.Event())
    assert not keeper.holds("before")  # not started: holds nothing
    await keeper.start()
    try:
        assert not keeper.holds("before")  # it ran before the first renewal
        running.add("during")
        assert keeper.holds("during")
        keeper._renewed -= 6.0  # more than half a lease since the last renewal
        assert not keeper.holds("during")
        await keeper.pass_once()
        assert not keeper.holds("during")  # renewed, but it ran through the gap
        running.clear()
        running.add("after")
        await keeper.pass_once()
        assert keeper.holds("after")
    finally:
        await keeper.stop(release=False)
    assert not keeper.holds("after")  # a stopped keeper holds nothing


class _Urls:
    def url_for(self, provider: str, job_id: str) -> str:
        return f"http://127.0.0.1:1/hooks/{provider}/{job_id}"


async def _generating_with_callbacks(cluster: Cluster, *, start_b: bool = False) -> Any:
    """Processes a and b taking callbacks, and a job a started, generating: (a, b, its row).
    Its task runs for ever unless a callback ends it (polling waits on a stopped clock)."""
    cluster.provider.webhooks = True
    cluster.provider.script = lambda _r: Outcome(polls=10**6)
    cluster.clock.block_from = 100.0
    a = await cluster.boot(callbacks=_Urls())
    b = await cluster.boot(callbacks=_Urls(), start=start_b)
    job = await a.enqueue(request(), guild_id="g", channel_id="c", user_id="u")
    running = await eventually(lambda: _in_state(cluster.stores[0], job.id, JobState.GENERATING))
    return a, b, running


async def test_a_failure_reported_to_another_process_keeps_its_kind(cluster: Cluster) -> None:
    from bot.errors import ContentRejectedError

    _a, b, running = await _generating_with_callbacks(cluster)
    job, store = running, cluster.stores[0]
    error = ContentRejectedError("the prompt was refused", provider="fake", code="sensitive")
    await b.on_callback(job.id, TaskState(task_id=running.task_id or "",
                                          status=TaskStatus.FAILED, error=error))
    failed = await eventually(lambda: _in_state(store, job.id, JobState.FAILED), timeout=10)
    assert failed.error_kind == error.kind and "refused" in (failed.error_message or "")


async def test_a_cancel_through_another_process_stops_the_task_where_it_runs(
    cluster: Cluster,
) -> None:
    cluster.provider.script = lambda _r: Outcome(polls=10**6)
    a = await cluster.boot()
    b = await cluster.boot(start=False)  # a shard that runs no jobs of its own right now
    job = await b.enqueue(request(), guild_id="g", channel_id="c", user_id="u")
    store = cluster.stores[0]
    running = await eventually(lambda: _in_state(store, job.id, JobState.GENERATING))
    assert running.owner == a.process
    said = await b.cancel(job.id, "u")
    assert said.startswith("Cancelled"), said
    final = await store.get_job(job.id)
    assert final is not None and final.state is JobState.CANCELLED
    assert cluster.provider.tasks[running.task_id or ""].cancelled
    assert [ln.kind for ln in await store.ledger(job.id)] == ["reserve", "release"]


async def test_a_clean_stop_hands_the_jobs_over_at_once(cluster: Cluster) -> None:
    cluster.provider.script = lambda _r: Outcome(polls=10**6)
    a = await cluster.boot()
    job = await a.enqueue(request(), guild_id="g", channel_id="c", user_id="u")
    store = cluster.stores[0]
    await eventually(lambda: _in_state(store, job.id, JobState.GENERATING))
    await a.stop()
    released = await store.get_job(job.id)
    assert released is not None and released.lease_until is None
    for task in cluster.provider.tasks.values():
        task.outcome = Outcome(polls=1)
    await cluster.boot()
    await eventually(lambda: _in_state(store, job.id, JobState.DELIVERED), timeout=5)
    assert len(cluster.provider.submits) == 1


async def test_the_fair_turns_outlive_the_process_that_took_them(cluster: Cluster) -> None:
    """Member a was served before member b; after a restart a's next job still goes before
    b's, though b's arrived first: the turns are in the database, not in a process."""
    first = await cluster.boot(start=False)
    store = cluster.stores[0]
    limits = EngineLimits(gateway_in_flight=1, guild_running=1, user_running=1)

    async def add(user: str) -> str:
        made = await first.enqueue(request(user), guild_id="g", channel_id="c", user_id=user)
        return made.id

    async def one_pass(fair: FairQueue) -> list[str]:
        def choose(waiting: list[QueuedRow], counts: RunningCounts,
                   served: Served) -> list[QueuedRow]:
            fair.adopt(served)
            return fair.pick_counted(waiting, counts, limits, now=cluster.clock.now())

        done = await store.schedule(choose, owner="p:1:x", ttl=30, now=cluster.clock.now())
        for job in done.started:  # finish it, freeing the slot
            await store.transition(job.id, JobState.CANCELLED, now=cluster.clock.now())
        return [j.id for j in done.started]

    a1, b1 = await add("a"), await add("b")
    assert await one_pass(FairQueue()) == [a1]
    assert await one_pass(FairQueue()) == [b1]
    b2, a2 = await add("b"), await add("a")
    # A new process (a fresh FairQueue): a was served longest ago, so a2 goes first.
    assert await one_pass(FairQueue()) == [a2]
    assert await one_pass(FairQueue()) == [b2]


async def _in_state(store: Store, job_id: str, state: JobState) -> Any:
    job = await store.get_job(job_id)
    return job if job is not None and job.state is state else None


async def test_a_burst_is_shared_among_processes(cluster: Cluster) -> None:
    """A pass starts at most `claim_batch` jobs, then the process passes again, taking turns on
    the queue's lock: the first process to look does not take the whole burst."""
    cluster.provider.script = lambda _r: Outcome(polls=2)
    limits = dict(gateway_in_flight=100, guild_running=100, user_running=100, user_queued=100,
                  claim_batch=4)
    a = await cluster.boot(start=False, **limits)
    b = await cluster.boot(start=False, **limits)
    ids = [(await a.enqueue(request(f"job {n}"), guild_id="g", channel_id="c",
                            user_id=f"u{n % 8}")).id for n in range(40)]
    await asyncio.gather(a.start(), b.start())
    store = cluster.stores[0]

    async def all_done() -> bool:
        jobs = [await store.get_job(i) for i in ids]
        return all(j is not None and j.state is JobState.DELIVERED for j in jobs)

    await eventually(all_done, timeout=60)
    started = [sum(1 for _j, e in d.events if e.kind.value == "started")
               for d in cluster.deliveries]
    assert sum(started) == 40 and min(started) >= 4, started
    assert all(cluster.posts(i) == 1 for i in ids)


async def test_a_long_queue_is_taken_a_share_per_pass(cluster: Cluster) -> None:
    """A pass reads every waiting job, so with a long queue it starts a share of it
    (1/claim_share, when more than claim_batch): draining stays ~linear in the queue, and
    the other processes still get their turns."""
    cluster.provider.script = lambda _r: Outcome(polls=50)
    limits = dict(gateway_in_flight=500, guild_running=500, user_running=500,
                  user_queued=500, claim_batch=4, claim_share=8)
    engine = await cluster.boot(start=False, **limits)
    for n in range(80):
        await engine.enqueue(request(f"job {n}"), guild_id="g", channel_id="c",
                             user_id=f"u{n % 8}")
    store = cluster.stores[0]

    async def started() -> int:
        return 80 - len(await store.jobs([JobState.QUEUED]))

    passes = []
    for _ in range(3):
        before = await started()
        await engine._dispatch.run_once()
        passes.append(await started() - before)
    assert passes == [10, 8, 7]  # 80 // 8, 70 // 8, 62 // 8
    while await started() < 80:
        before = await started()
        await engine._dispatch.run_once()
        waiting = 80 - before
        assert await started() - before == min(waiting, max(4, waiting // 8))
