"""Fair order of waiting jobs: round-robin across guilds, then across users inside a guild.

The database keeps the jobs and their `seq` (arrival order); this module only decides who goes
next. Each guild and each (guild, user) remembers when it was last served; the one served
longest ago (never served first, ties by oldest job) goes next, so a user with twenty jobs
waiting delays another user's single job by at most one slot. Caps apply per gateway (in
flight), per guild (running) and per member of a guild (running), each guild's own where it set
them (`Caps`); the queued caps and the per-minute rate are checked at enqueue, in the store's
transaction (bot/engine/admission.py). The memory of who was served (`Served`) lives in the
database: every process's pass reads it and writes it back in the same transaction as its
starts (`Store.schedule`), so the turns hold across processes and restarts.
Picking and ordering cost O(n log n) (heaps, see `_RoundRobin`), so a queue of thousands can be
re-ordered several times a second.
"""

from __future__ import annotations

import heapq
from collections import Counter, deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Generic, Protocol, TypeVar

from bot.guild import GuildLimits
from bot.store import IN_FLIGHT_STATES, JobView
from bot.store.records import RunningCounts, Served


class Waiting(Protocol):
    """What the fair order needs of a waiting job (a `JobView`, or the store's light row)."""

    @property
    def id(self) -> str: ...
    @property
    def guild_id(self) -> str: ...
    @property
    def user_id(self) -> str: ...
    @property
    def provider(self) -> str: ...
    @property
    def seq(self) -> int: ...
    @property
    def not_before(self) -> float: ...


W = TypeVar("W", bound=Waiting)


@dataclass(frozen=True)
class EngineLimits:
    """The engine-wide defaults of caps, and retry bounds. The defaults suit one bot on one
    small server; SEEDANCE_GATEWAY_CONCURRENCY and each server's `GuildLimits` (bot/guild.py)
    override the caps (see `Caps` and bot/engine/caps.py)."""

    gateway_in_flight: int = 4  # per provider: jobs submitting or generating
    guild_running: int = 2  # per guild: jobs submitting, generating or downloading
    user_running: int = 1
    user_queued: int = 5  # waiting (queued or awaiting approval) per user per guild
    guild_queued: int | None = None  # waiting per guild; None: no cap
    submit_retries: int = 3  # transient create failures before the job fails
    poll_errors: int = 8  # consecutive failed polls before the job fails
    download_attempts: int = 3
    delivery_attempts: int = 5
    retry_base: float = 2.0  # seconds, doubled per attempt
    retry_cap: float = 60.0
    # seconds between two recomputations of the queue's positions while it keeps changing
    # (a burst of enqueues): the first change is announced at once, the rest coalesce
    announce_interval: float = 0.5
    # Many processes (bot/engine/claims.py): how long a claim on a job lasts without renewal
    # (seconds of the database's clock; a process that dies holds its jobs this long, unless
    # it is known dead), and how often a process renews, takes over orphans and looks for news
    # (on PostgreSQL news also comes at once, through LISTEN).
    lease_ttl: float = 30.0
    claim_interval: float = 1.0
    # Jobs one scheduling pass starts at most: a process then passes again at once, taking
    # turns on the queue's lock with the others, so a burst is shared among the processes
    # instead of being taken whole by the first to look. A pass reads every waiting job, so
    # with a long queue it takes a share of it instead (1/claim_share of those waiting, when
    # that is more): draining n jobs then costs ~claim_share * n rows read, not n² / batch.
    claim_batch: int = 32
    claim_share: int = 8


@dataclass(frozen=True)
class Caps:
    """The running caps one scheduling pass (and its ETAs) applies: per gateway, per guild and
    per member of a guild, each falling back to `limits` where nothing more specific is set."""

    limits: EngineLimits = EngineLimits()
    gateways: Mapping[str, int] = field(default_factory=dict)  # provider -> jobs in flight
    guilds: Mapping[str, GuildLimits] = field(default_factory=dict)

    def gateway(self, provider: str) -> int:
        return self.gateways.get(provider, self.limits.gateway_in_flight)

    def guild_running(self, guild_id: str) -> int:
        own = self.guilds.get(guild_id)
        return own.running if own is not None and own.running is not None \
            else self.limits.guild_running

    def user_running(self, guild_id: str) -> int:
        own = self.guilds.get(guild_id)
        return own.user_running if own is not None and own.user_running is not None \
            else self.limits.user_running


def as_caps(limits: EngineLimits | Caps) -> Caps:
    """`limits` as caps: bare `EngineLimits` apply the same caps to every gateway and guild."""
    return limits if isinstance(limits, Caps) else Caps(limits)


def counts_of(running: Iterable[JobView]) -> RunningCounts:
    """The slots `running` hold (what the store counts with one grouped read)."""
    running = list(running)
    return RunningCounts(
        dict(Counter(j.provider for j in running if j.state in IN_FLIGHT_STATES)),
        dict(Counter(j.guild_id for j in running)),
        dict(Counter((j.guild_id, j.user_id) for j in running)),
    )


class FairQueue:
    """Chooses which queued jobs start now, and predicts the order of the rest.

    Holds a copy of the served memory: `pick_counted` advances a `Served` read from the
    database in the pass's transaction (and this copy with it); `adopt` takes in what another
    process's pass wrote, for `order`."""

    def __init__(self, served: Served | None = None) -> None:
        self._served = served or Served()

    @property
    def tick(self) -> int:
        """How many jobs were picked so far: `order` only changes when this does."""
        return self._served.tick

    def adopt(self, served: Served) -> None:
        """The served memory as the database has it now (any process may have moved it)."""
        self._served = served

    def pick(
        self,
        queued: Iterable[W],
        running: Iterable[JobView],
        limits: EngineLimits | Caps,
        now: float,
    ) -> list[W]:
        """The jobs to start now, in start order; remembers them as served."""
        return self.pick_counted(queued, counts_of(running), limits, now)

    def pick_counted(
        self, queued: Iterable[W], counts: RunningCounts, limits: EngineLimits | Caps, now: float,
        *, limit: int | None = None,
    ) -> list[W]:
        """`pick`, with the running jobs given as the slots they hold; at most `limit`."""
        caps = as_caps(limits)
        gateway = Counter(counts.gateways)
        guild = Counter(counts.guilds)
        user = Counter(counts.users)

        def eligible(job: W) -> bool:
            # Counters only grow during one pick, so a job once ineligible stays so: the
            # round-robin may drop it for good.
            return (
                gateway[job.provider] < caps.gateway(job.provider)
                and guild[job.guild_id] < caps.guild_running(job.guild_id)
                and user[(job.guild_id, job.user_id)] < caps.user_running(job.guild_id)
            )

        served = self._served
        turns = _RoundRobin(
            (j for j in queued if j.not_before <= now), served.guilds, served.users, eligible,
        )
        chosen: list[W] = []
        while (limit is None or len(chosen) < limit) \
                and (job := turns.take(served.tick + 1)) is not None:
            served.tick += 1
            gateway[job.provider] += 1
            guild[job.guild_id] += 1
            user[(job.guild_id, job.user_id)] += 1
            chosen.append(job)
        return chosen

    def order(self, queued: Iterable[W]) -> list[W]:
        """The order the waiting jobs would start in if slots opened one at a time."""
        served = self._served
        turns: _RoundRobin[W] = _RoundRobin(queued, dict(served.guilds), dict(served.users),
                                            None)
        tick = served.tick
        ordered: list[W] = []
        while (job := turns.take(tick + 1)) is not None:
            tick += 1
            ordered.append(job)
        return ordered


class _RoundRobin(Generic[W]):
    """Hands out jobs in fair order in O(log n) each.

    A heap of guilds keyed on (last served, first waiting seq); inside each guild a heap of
    users keyed the same way; each user's jobs in seq order. Keys only grow (serving stamps a
    newer tick; dropping ineligible or taken jobs raises the first seq), so stale heap entries
    are fixed lazily: an entry whose real key grew is pushed back with it, and the top entry
    whose key is current is the true minimum.
    """

    def __init__(
        self,
        jobs: Iterable[W],
        guild_served: dict[str, int],
        user_served: dict[tuple[str, str], int],
        eligible: Callable[[W], bool] | None,
    ) -> None:
        self._guild_served = guild_served
        self._user_served = user_served
        self._eligible = eligible
        self._taken: set[str] = set()
        self._of_guild: dict[str, deque[W]] = {}
        self._of_user: dict[tuple[str, str], deque[W]] = {}
        for job in sorted(jobs, key=lambda j: j.seq):
            self._of_guild.setdefault(job.guild_id, deque()).append(job)
            self._of_user.setdefault((job.guild_id, job.user_id), deque()).append(job)
        self._guilds = [
            (guild_served.get(g, -1), jobs_[0].seq, g) for g, jobs_ in self._of_guild.items()
        ]
        heapq.heapify(self._guilds)
        self._users: dict[str, list[tuple[int, int, str]]] = {}
        for (g, u), jobs_ in self._of_user.items():
            self._users.setdefault(g, []).append((user_served.get((g, u), -1), jobs_[0].seq, u))
        for heap in self._users.values():
            heapq.heapify(heap)

    def _first(self, jobs: deque[W]) -> W | None:
        """The first job still to hand out; drops taken and (for good) ineligible ones."""
        while jobs and (
            jobs[0].id in self._taken
            or (self._eligible is not None and not self._eligible(jobs[0]))
        ):
            jobs.popleft()
        return jobs[0] if jobs else None

    def take(self, tick: int) -> W | None:
        """The next job in fair order (None: nothing left), marked served at `tick`."""
        guilds = self._guilds
        while guilds:
            served, seq, guild = guilds[0]
            first = self._first(self._of_guild[guild])
            if first is None:
                heapq.heappop(guilds)
                continue
            key = (self._guild_served.get(guild, -1), first.seq)
            if key != (served, seq):
                heapq.heapreplace(guilds, (*key, guild))
                continue
            user = self._take_user(guild)
            mine = self._of_user[(guild, user)]
            job = self._first(mine)
            assert job is not None
            mine.popleft()
            self._taken.add(job.id)
            self._guild_served[guild] = tick
            self._user_served[(guild, user)] = tick
            following = self._first(mine)
            if following is not None:
                heapq.heappush(self._users[guild], (tick, following.seq, user))
            following = self._first(self._of_guild[guild])
            if following is None:
                heapq.heappop(guilds)
            else:
                heapq.heapreplace(guilds, (tick, following.seq, guild))
            return job
        return None

    def _take_user(self, guild: str) -> str:
        """Pop the guild's user to serve; the guild has a job to hand out, so one exists."""
        users = self._users[guild]
        while True:
            served, seq, user = users[0]
            first = self._first(self._of_user[(guild, user)])
            if first is None:
                heapq.heappop(users)
                continue
            key = (self._user_served.get((guild, user), -1), first.seq)
            if key != (served, seq):
                heapq.heapreplace(users, (*key, user))
                continue
            heapq.heappop(users)
            return user


class _Slots:
    """`cap` slots, each free from some time on (all free at 0.0 to start with).

    Only the occupied ones are stored, in a heap: a cap of 1,000 costs nothing until used, and
    taking the earliest free slot is O(log cap). Times are seconds from now, never negative.
    """

    __slots__ = ("busy", "cap")

    def __init__(self, cap: int) -> None:
        self.cap = max(1, cap)
        self.busy: list[float] = []

    def earliest(self) -> float:
        return self.busy[0] if len(self.busy) >= self.cap else 0.0

    def occupy(self, until: float) -> None:
        """Take the earliest free slot until `until`."""
        if len(self.busy) < self.cap:
            heapq.heappush(self.busy, until)
        else:
            heapq.heapreplace(self.busy, until)


def estimate_finish(
    ordered: Sequence[JobView],
    running: Sequence[JobView],
    limits: EngineLimits | Caps,
    expected: Callable[[JobView], float],
    now: float,
) -> dict[str, float]:
    """Seconds from now until each job (running or waiting) should be done.

    A greedy simulation: each waiting job starts when its gateway, its guild and its user all
    have a free slot, and takes its expected duration (recent real durations, else typical).
    O(n log cap), so it runs on every announcement even with thousands waiting.
    """
    caps = as_caps(limits)
    finish: dict[str, float] = {}
    gateway: dict[str, _Slots] = {}
    guild: dict[str, _Slots] = {}
    user: dict[tuple[str, str], _Slots] = {}

    def slots(job: JobView) -> tuple[_Slots, _Slots, _Slots]:
        g = gateway.get(job.provider)
        if g is None:
            g = gateway[job.provider] = _Slots(caps.gateway(job.provider))
        h = guild.get(job.guild_id)
        if h is None:
            h = guild[job.guild_id] = _Slots(caps.guild_running(job.guild_id))
        u = user.get((job.guild_id, job.user_id))
        if u is None:
            u = user[(job.guild_id, job.user_id)] = _Slots(caps.user_running(job.guild_id))
        return g, h, u

    for job in running:
        started = job.started_at if job.started_at is not None else now
        done = max(0.0, started + expected(job) - now)
        finish[job.id] = done
        for free in slots(job):
            free.occupy(done)
    for job in ordered:
        g, h, u = slots(job)
        start = max(0.0, job.not_before - now, g.earliest(), h.earliest(), u.earliest())
        done = start + max(0.0, expected(job))
        finish[job.id] = done
        g.occupy(done)
        h.occupy(done)
        u.occupy(done)
    return finish
