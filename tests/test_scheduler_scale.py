"""The heap-based FairQueue and ETA simulation against the straightforward code they replaced.

`ReferenceFairQueue` is the old implementation, kept verbatim as the definition of fairness:
on random queues (several guilds, users and gateways, caps, retry times, running jobs, and a
history of earlier picks) both must start the same jobs and predict the same order.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from itertools import pairwise
from typing import Any

import pytest

from bot.engine import EngineLimits, FairQueue, JobState
from bot.engine.scheduler import estimate_finish
from bot.store import IN_FLIGHT_STATES, RUNNING_STATES, JobView
from tests.test_engine_fakes import request

REQUEST = request()


class ReferenceFairQueue:
    """The original algorithm: `_next` scans every eligible job, n times per ordering."""

    def __init__(self) -> None:
        self._tick = 0
        self._guild_served: dict[str, int] = {}
        self._user_served: dict[tuple[str, str], int] = {}

    def _next(
        self,
        jobs: Sequence[JobView],
        guild_served: dict[str, int],
        user_served: dict[tuple[str, str], int],
    ) -> JobView:
        first_seq: dict[str, int] = {}
        for job in jobs:
            first_seq.setdefault(job.guild_id, job.seq)
        guild = min(first_seq, key=lambda g: (guild_served.get(g, -1), first_seq[g]))
        in_guild = [j for j in jobs if j.guild_id == guild]
        user_seq: dict[str, int] = {}
        for job in in_guild:
            user_seq.setdefault(job.user_id, job.seq)
        user = min(
            user_seq, key=lambda u: (user_served.get((guild, u), -1), user_seq[u])
        )
        return next(j for j in in_guild if j.user_id == user)

    def pick(
        self, queued: Sequence[JobView], running: Iterable[JobView], limits: EngineLimits,
        now: float,
    ) -> list[JobView]:
        running = list(running)
        gateway = Counter(j.provider for j in running if j.state in IN_FLIGHT_STATES)
        guild = Counter(j.guild_id for j in running)
        user = Counter((j.guild_id, j.user_id) for j in running)
        chosen: list[JobView] = []
        pending = sorted((j for j in queued if j.not_before <= now), key=lambda j: j.seq)
        while True:
            eligible = [
                j for j in pending
                if gateway[j.provider] < limits.gateway_in_flight
                and guild[j.guild_id] < limits.guild_running
                and user[(j.guild_id, j.user_id)] < limits.user_running
            ]
            if not eligible:
                return chosen
            job = self._next(eligible, self._guild_served, self._user_served)
            self._tick += 1
            self._guild_served[job.guild_id] = self._tick
            self._user_served[(job.guild_id, job.user_id)] = self._tick
            gateway[job.provider] += 1
            guild[job.guild_id] += 1
            user[(job.guild_id, job.user_id)] += 1
            chosen.append(job)
            pending.remove(job)

    def order(self, queued: Sequence[JobView]) -> list[JobView]:
        guild_served = dict(self._guild_served)
        user_served = dict(self._user_served)
        tick = self._tick
        pending = sorted(queued, key=lambda j: j.seq)
        ordered: list[JobView] = []
        while pending:
            job = self._next(pending, guild_served, user_served)
            tick += 1
            guild_served[job.guild_id] = tick
            user_served[(job.guild_id, job.user_id)] = tick
            ordered.append(job)
            pending.remove(job)
        return ordered


def reference_estimate_finish(
    ordered: Sequence[JobView], running: Sequence[JobView], limits: EngineLimits,
    expected: Callable[[JobView], float], now: float,
) -> dict[str, float]:
    """The original simulation: every slot as a list entry, the earliest found by scanning."""
    finish: dict[str, float] = {}
    gateway: dict[str, list[float]] = {}
    guild: dict[str, list[float]] = {}
    user: dict[tuple[str, str], list[float]] = {}

    def slots(table: dict[Any, list[float]], key: object, cap: int) -> list[float]:
        if key not in table:
            table[key] = [0.0] * max(1, cap)
        result: list[float] = table[key]
        return result

    def occupy(free: list[float], until: float) -> None:
        free.remove(min(free))
        free.append(until)

    for job in running:
        started = job.started_at if job.started_at is not None else now
        done = max(0.0, started + expected(job) - now)
        finish[job.id] = done
        for table, key, cap in (
            (gateway, job.provider, limits.gateway_in_flight),
            (guild, job.guild_id, limits.guild_running),
            (user, (job.guild_id, job.user_id), limits.user_running),
        ):
            occupy(slots(table, key, cap), done)
    for job in ordered:
        free = [
            slots(gateway, job.provider, limits.gateway_in_flight),
            slots(guild, job.guild_id, limits.guild_running),
            slots(user, (job.guild_id, job.user_id), limits.user_running),
        ]
        start = max(max(0.0, job.not_before - now), *(min(f) for f in free))
        done = start + expected(job)
        finish[job.id] = done
        for f in free:
            occupy(f, done)
    return finish


class World:
    """A random stream of arrivals, starts and completions, shared by both queues."""

    def __init__(self, rng: random.Random, guilds: int, users: int, providers: int) -> None:
        self.rng = rng
        self.guilds = [f"g{i}" for i in range(guilds)]
        self.users = [f"u{i}" for i in range(users)]
        self.providers = [f"p{i}" for i in range(providers)]
        self.seq = 0
        self.queued: list[JobView] = []
        self.running: list[JobView] = []

    def arrive(self, count: int, now: float) -> None:
        for _ in range(count):
            self.seq += 1
            retry_later = self.rng.random() < 0.15
            self.queued.append(JobView(
                id=f"j{self.seq}", guild_id=self.rng.choice(self.guilds), channel_id="c",
                user_id=self.rng.choice(self.users), role_ids=(), request=REQUEST,
                provider=self.rng.choice(self.providers), model=None, state=JobState.QUEUED,
                seq=self.seq,
                not_before=now + self.rng.uniform(0.5, 5.0) if retry_later else 0.0,
            ))

    def start(self, jobs: list[JobView]) -> None:
        ids = {j.id for j in jobs}
        self.queued = [j for j in self.queued if j.id not in ids]
        for job in jobs:
            state = self.rng.choice(sorted(RUNNING_STATES))
            self.running.append(JobView(**{**job.__dict__, "state": state}))

    def finish_some(self) -> None:
        self.running = [j for j in self.running if self.rng.random() < 0.6]

    def limits(self) -> EngineLimits:
        return EngineLimits(
            gateway_in_flight=self.rng.randint(1, 5), guild_running=self.rng.randint(1, 4),
            user_running=self.rng.randint(1, 2),
        )


@pytest.mark.parametrize("seed", range(20))
def test_heap_estimate_matches_the_reference(seed: int) -> None:
    rng = random.Random(1000 + seed)
    world = World(rng, guilds=rng.randint(1, 4), users=rng.randint(1, 8),
                  providers=rng.randint(1, 3))
    now = 100.0
    world.arrive(rng.randint(0, 60), now)
    limits = world.limits()
    world.start(FairQueue().pick(world.queued, [], limits, now))
    running = [JobView(**{**j.__dict__, "started_at": now - rng.uniform(0, 120)})
               for j in world.running]
    world.arrive(rng.randint(0, 60), now)
    seconds = {j.id: rng.choice([30.0, 60.0, 90.0, 45.5]) for j in (*world.queued, *running)}
    ordered = FairQueue().order(world.queued)
    limits = world.limits()
    got = estimate_finish(ordered, running, limits, lambda j: seconds[j.id], now)
    want = reference_estimate_finish(ordered, running, limits, lambda j: seconds[j.id], now)
    assert got.keys() == want.keys()
    assert all(got[k] == pytest.approx(want[k]) for k in want)


def ids(jobs: Iterable[JobView]) -> list[str]:
    return [j.id for j in jobs]


@pytest.mark.parametrize("seed", range(40))
def test_heap_queue_matches_the_reference_on_random_streams(seed: int) -> None:
    rng = random.Random(seed)
    world = World(rng, guilds=rng.randint(1, 4), users=rng.randint(1, 6),
                  providers=rng.randint(1, 3))
    fair, reference = FairQueue(), ReferenceFairQueue()
    now = 0.0
    for _ in range(25):
        world.arrive(rng.randint(0, 8), now)
        assert ids(fair.order(world.queued)) == ids(reference.order(world.queued))
        limits = world.limits()
        picked = fair.pick(world.queued, world.running, limits, now)
        assert ids(picked) == ids(reference.pick(world.queued, world.running, limits, now))
        world.start(picked)
        world.finish_some()
        now += rng.uniform(0.0, 2.0)
    assert ids(fair.order(world.queued)) == ids(reference.order(world.queued))


def test_order_of_a_large_queue_is_a_permutation_and_round_robin() -> None:
    """Thousands of jobs: each waiting job exactly once, and one busy user cannot crowd out
    the rest (in a guild, every user's k-th job comes before anyone's (k+1)-th)."""
    rng = random.Random(7)
    world = World(rng, guilds=3, users=40, providers=2)
    world.arrive(3000, 0.0)
    fair = FairQueue()
    ordered = fair.order(world.queued)
    assert sorted(ids(ordered)) == sorted(ids(world.queued))
    for guild in world.guilds:
        rank: Counter[str] = Counter()
        rounds: list[int] = []
        for job in ordered:
            if job.guild_id == guild:
                rank[job.user_id] += 1
                rounds.append(rank[job.user_id])
        assert all(b >= a for a, b in pairwise(rounds)), (
            "a user's next turn came before another user finished the previous round"
        )
