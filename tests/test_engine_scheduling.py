"""Fairness, caps, positions and ETAs of the scheduler, through the engine and on its own."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from bot.config import Settings
from bot.engine import Engine, EngineLimits, FairQueue, JobEvent, JobState
from bot.store import IN_FLIGHT_STATES, RUNNING_STATES, JobView, Store
from tests.fakes.common import FakeGateway
from tests.test_engine_fakes import FakeClock, FakeDelivery, FakeProvider, Outcome, request, until


class Harness:
    def __init__(self, settings: Settings, store: Store, files: FakeGateway,
                 http: httpx.AsyncClient) -> None:
        self.settings, self.store, self.files, self.http = settings, store, files, http
        self.clock = FakeClock()
        self.delivery = FakeDelivery()
        self.provider = FakeProvider(files)
        self.engines: list[Engine] = []

    def engine(self, limits: EngineLimits) -> Engine:
        engine = Engine(self.settings, self.store, delivery=self.delivery,
                        providers={"fake": self.provider}, http=self.http, limits=limits,
                        clock=self.clock.now, sleep=self.clock.sleep)
        self.engines.append(engine)
        return engine

    def started_order(self) -> list[str]:
        return [job_id for job_id, e in self.delivery.events if e.kind.value == "started"]


@pytest.fixture
async def h(data_dir: Path, store_url: str) -> AsyncIterator[Harness]:
    settings = Settings(seedance_data_dir=data_dir, seedance_user_daily_credits=100000,
                        seedance_guild_monthly_credits=1000000,
                        seedance_private_hosts="127.0.0.1")
    store = await Store.open(store_url)
    async with FakeGateway() as files, httpx.AsyncClient() as http:
        harness = Harness(settings, store, files, http)
        yield harness
        for engine in harness.engines:
            await engine.stop()
    await store.close()


async def add(engine: Engine, user: str, guild: str = "g1") -> str:
    job = await engine.enqueue(request(), guild_id=guild, channel_id="c", user_id=user)
    return job.id


async def settle(rounds: int = 20) -> None:
    """Let the engine run until it has nothing left to do right now (DB calls use a thread)."""
    for _ in range(rounds):
        await asyncio.sleep(0.002)


async def test_twenty_jobs_delay_another_users_single_job_by_one_slot(h: Harness) -> None:
    h.provider.poll_gate = asyncio.Event()  # A's first job holds the only slot for now
    engine = h.engine(EngineLimits(gateway_in_flight=1, user_queued=25))
    await engine.start()
    a_jobs = [await add(engine, "A") for _ in range(20)]
    b_job = await add(engine, "B")
    assert len(h.started_order()) == 1
    h.provider.poll_gate.set()
    await engine.wait(b_job)
    # Only A's first job (already in the slot when B arrived) starts before B's.
    assert h.started_order().index(b_job) == 1
    for job_id in a_jobs:
        assert (await engine.wait(job_id)).state is JobState.DELIVERED


async def test_round_robin_across_guilds_and_users(h: Harness) -> None:
    engine = h.engine(EngineLimits(gateway_in_flight=1, user_queued=10))
    jobs: dict[str, str] = {}
    for i in range(3):
        for who, guild in (("A", "g1"), ("B", "g1"), ("C", "g2")):
            jobs[await add(engine, who, guild)] = f"{guild}/{who}{i}"
    await engine.start()
    for job_id in jobs:
        await engine.wait(job_id)
    order = [jobs[j] for j in h.started_order()]
    guilds = [o.split("/")[0] for o in order]
    assert guilds[:4] == ["g1", "g2", "g1", "g2"]  # guilds alternate while both have work
    g1_users = [o.split("/")[1][0] for o in order if o.startswith("g1")]
    assert g1_users == ["A", "B", "A", "B", "A", "B"]  # users alternate inside a guild


async def test_caps_per_gateway_guild_and_user_hold(h: Harness) -> None:
    h.provider.script = lambda _r: Outcome(polls=10**6)
    h.clock.block_from = 0.5  # polls wait "forever": jobs stay running
    limits = EngineLimits(gateway_in_flight=3, guild_running=2, user_running=1, user_queued=5)
    engine = h.engine(limits)
    for user in ("u1", "u2", "u3"):
        for _ in range(2):
            await add(engine, user, "g1")
    for user in ("v1", "v2"):
        await add(engine, user, "g2")
    await engine.start()

    async def full() -> bool:
        """As many running as the caps allow for the work that is left."""
        left = await h.store.jobs([JobState.QUEUED, *RUNNING_STATES])
        per_guild = {
            g: min(limits.guild_running, len({j.user_id for j in left if j.guild_id == g}))
            for g in {j.guild_id for j in left}
        }
        possible = min(limits.gateway_in_flight, sum(per_guild.values()))
        return len(await h.store.jobs(RUNNING_STATES)) == possible

    await until(full)
    await settle()

    async def check() -> list[JobView]:
        running = await h.store.jobs(RUNNING_STATES)
        in_flight = [j for j in running if j.state in IN_FLIGHT_STATES]
        assert len(in_flight) <= limits.gateway_in_flight
        for guild in ("g1", "g2"):
            assert sum(j.guild_id == guild for j in running) <= limits.guild_running
        users = [(j.guild_id, j.user_id) for j in running]
        assert len(users) == len(set(users))
        return running

    running = await check()
    assert len(running) == 3  # the gateway cap is the binding one
    for _ in range(4):  # free slots one by one; the caps keep holding as the queue moves
        await engine.cancel(running[0].id, running[0].user_id)
        await until(full)
        await settle()
        running = await check()
        assert await full()


async def test_positions_and_etas_update_as_the_queue_moves(h: Harness) -> None:
    h.provider.script = lambda _r: Outcome(polls=10**6)
    h.provider.typical = 60.0
    h.clock.block_from = 0.5
    # Announce every change at once: the fake clock then never moves and ETAs are exact.
    engine = h.engine(EngineLimits(gateway_in_flight=1, announce_interval=0.0))
    await engine.start()
    first = await add(engine, "u1")
    await settle()
    second = await add(engine, "u2")
    third = await add(engine, "u3")
    await settle()

    entries = await engine.queue("g1")
    assert [(e.position, e.job.id) for e in entries] == [(0, first), (1, second), (2, third)]
    assert [e.eta for e in entries] == [pytest.approx(60), pytest.approx(120),
                                        pytest.approx(180)]
    third_events = h.delivery.of(third, "queued")
    assert [e.position for e in third_events] == [2]
    assert third_events[0].eta == pytest.approx(180)

    await engine.cancel(first, "u1")
    await settle()
    entries = await engine.queue("g1")
    assert [(e.position, e.job.id) for e in entries] == [(0, second), (1, third)]
    assert [e.position for e in h.delivery.of(third, "queued")] == [2, 1]
    assert h.delivery.of(third, "queued")[-1].eta == pytest.approx(120)
    assert await engine.queue("other-guild") == []


async def test_eta_uses_recent_real_durations(h: Harness) -> None:
    for seconds in (9.0, 10.0, 11.0):
        await h.store.record_duration("fake", "480p", 5, seconds, now=h.clock.now())
    h.provider.script = lambda _r: Outcome(polls=10**6)
    h.clock.block_from = 0.5
    engine = h.engine(EngineLimits(gateway_in_flight=1, announce_interval=0.0))
    await engine.start()
    ids = [await add(engine, f"u{i}") for i in range(3)]
    await settle()
    entries = {e.job.id: e for e in await engine.queue("g1")}
    assert [entries[i].eta for i in ids] == [pytest.approx(10), pytest.approx(20),
                                             pytest.approx(30)]


async def test_finished_jobs_record_their_duration(h: Harness) -> None:
    engine = h.engine(EngineLimits())
    await engine.start()
    await engine.wait(await add(engine, "u1"))
    durations = await h.store.recent_durations("fake", "480p", 5)
    assert len(durations) == 1 and durations[0] > 0


class GatedDelivery(FakeDelivery):
    """Holds "queued" events at gates, like a slow status edit in the middle of a pass."""

    def __init__(self) -> None:
        super().__init__()
        self.gates: list[asyncio.Event] = []  # each "queued" event waits on the next one
        self.held: list[str] = []  # job ids of "queued" events that reached a gate

    async def on_event(self, job: JobView, event: JobEvent) -> None:
        await super().on_event(job, event)
        if event.kind.value == "queued" and self.gates:
            gate = self.gates.pop(0)
            self.held.append(job.id)
            await gate.wait()


class ManualClock:
    """A clock that only moves when the test says; sleepers wake when their time has come."""

    def __init__(self) -> None:
        self.t = 1_750_000_000.0
        self.sleepers: list[tuple[float, asyncio.Future[None]]] = []

    def now(self) -> float:
        return self.t

    async def sleep(self, seconds: float) -> None:
        wake: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.sleepers.append((self.t + seconds, wake))
        await wake

    def advance(self, seconds: float) -> None:
        self.t += seconds
        for due, wake in list(self.sleepers):
            if due <= self.t:
                self.sleepers.remove((due, wake))
                wake.set_result(None)


async def test_a_burst_is_announced_in_one_pass_per_interval(h: Harness) -> None:
    """After one announcement, a burst of enqueues within `announce_interval` causes no pass
    of its own: one pass at the end of the interval tells every new job its place, once."""
    clock = ManualClock()
    engine = Engine(h.settings, h.store, delivery=h.delivery, providers={"fake": h.provider},
                    http=h.http, limits=EngineLimits(announce_interval=0.5),
                    clock=clock.now, sleep=clock.sleep)
    h.engines.append(engine)
    first = await add(engine, "u0")
    assert [e.position for e in h.delivery.of(first, "queued")] == [1]  # at once
    burst = await asyncio.gather(*(add(engine, f"u{i}") for i in range(1, 30)))
    await settle()
    assert all(h.delivery.of(job_id, "queued") == [] for job_id in burst)
    assert [due - clock.now() for due, _ in clock.sleepers] == [0.5]  # one pass, waiting

    clock.advance(0.5)
    await settle()
    arrival = [j.id for j in await h.store.jobs([JobState.QUEUED])]  # in seq order
    assert arrival[0] == first and sorted(arrival[1:]) == sorted(burst)
    for place, job_id in enumerate(arrival, 1):  # new users go in arrival order
        assert [e.position for e in h.delivery.of(job_id, "queued")] == [place]
    assert clock.sleepers == []  # caught up: the announcer has ended


async def test_a_job_that_left_the_queue_during_a_pass_is_not_announced(h: Harness) -> None:
    """A pass emits from a snapshot; a job cancelled after it must not get a late "queued"
    that would overwrite its "cancelled" status."""
    delivery = h.delivery = GatedDelivery()
    first_gate, second_gate = asyncio.Event(), asyncio.Event()
    delivery.gates = [first_gate, second_gate]
    engine = h.engine(EngineLimits())
    first = asyncio.create_task(add(engine, "a"))  # its pass stops at the first gate
    await until(lambda: _true(len(delivery.held) == 1))
    second = await add(engine, "b")  # the pass is busy: left to the announcer
    third = await add(engine, "c")
    first_gate.set()
    await first
    await until(lambda: _true(len(delivery.held) == 2))  # the announcer's pass, at b
    assert delivery.held[1] == second
    await engine.cancel(third, "c")  # after that pass read the queue, before it reached c
    second_gate.set()
    await settle()
    assert delivery.kinds(third) == ["cancelled"]
    assert [e.position for e in delivery.of(second, "queued")] == [2]


async def _true(value: bool) -> bool:
    return value


def _job(seq: int, user: str, guild: str = "g", **kw: Any) -> JobView:
    return JobView(id=f"j{seq}", guild_id=guild, channel_id="c", user_id=user, role_ids=(),
                   request=request(), provider=kw.pop("provider", "fake"), model=None,
                   state=kw.pop("state", JobState.QUEUED), seq=seq, **kw)


def test_fair_queue_skips_jobs_waiting_for_a_retry_time() -> None:
    fair = FairQueue()
    queued = [_job(1, "a", not_before=100.0), _job(2, "b")]
    picked = fair.pick(queued, [], EngineLimits(), now=50.0)
    assert [j.id for j in picked] == ["j2"]
    assert [j.id for j in fair.pick(queued, [], EngineLimits(), now=100.0)] == ["j1", "j2"]


def test_fair_queue_counts_running_jobs_against_caps() -> None:
    fair = FairQueue()
    running = [_job(0, "a", state=JobState.GENERATING)]
    queued = [_job(1, "a"), _job(2, "b")]
    picked = fair.pick(queued, running, EngineLimits(user_running=1), now=0.0)
    assert [j.id for j in picked] == ["j2"]


def test_fair_queue_order_predicts_pick_order() -> None:
    fair = FairQueue()
    queued = [_job(i, "a") for i in range(1, 6)] + [_job(6, "b"), _job(7, "c", guild="h")]
    predicted = [j.id for j in fair.order(queued)]
    limits = EngineLimits(gateway_in_flight=1, guild_running=1, user_running=1)
    actual: list[str] = []
    remaining = list(queued)
    while remaining:
        (job,) = fair.pick(remaining, [], limits, now=0.0)
        actual.append(job.id)
        remaining.remove(job)
    assert predicted == actual
    assert predicted[:4] == ["j1", "j7", "j6", "j2"]
