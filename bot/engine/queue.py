"""The queue as people see it: positions, ETAs, and coalesced "you are now #n" announcements.

Every change of a job's row marks the view stale (`touched`, called by bot/engine/machine.py):
a generation counter moves on. The first change after a quiet spell is announced at once,
further ones at most once per `EngineLimits.announce_interval` by a background announcer. The
rows of the queue are kept as a snapshot tagged with the generation they were read at, so
`entries` and the announcer re-read the table only when something changed.
"""

from __future__ import annotations

import asyncio
import logging
import statistics
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from bot.providers.base import Provider
from bot.store import RUNNING_STATES, JobState, JobView, Store, Timing

from .caps import CapsReader
from .events import EventKind, JobEvent, QueueEntry
from .scheduler import FairQueue, estimate_finish

log = logging.getLogger(__name__)

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]
Emit = Callable[[JobView, JobEvent], Awaitable[None]]
DurationKey = tuple[str, str, int]

#: A snapshot older than this is re-read even if this engine changed nothing (another process,
#: e.g. the CLI, may have written to the same database).
SNAPSHOT_MAX_AGE = 5.0
#: Runs of a kind whose median is its expected time; re-read after this many seconds.
RECENT_RUNS = 20
DURATIONS_MAX_AGE = 60.0


def duration_key(job: JobView) -> DurationKey:
    return (job.provider, job.request.resolution.value, job.request.duration)


class Durations:
    """How long a job of a kind (gateway, resolution, seconds) takes: the median of recent real
    runs, else the gateway's typical time.

    The recent runs of a kind are read once and kept: a run this process ends is added to them
    (no read per finished job), and they are read again after `DURATIONS_MAX_AGE`, which
    brings in the runs other processes ended meanwhile."""

    def __init__(self, store: Store, provider: Callable[[str], Provider],
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._store = store
        self._provider = provider
        self._clock = clock
        self._recent: dict[DurationKey, tuple[float, list[float]]] = {}

    async def expected(self, job: JobView) -> float:
        key = duration_key(job)
        cached = self._recent.get(key)
        if cached is None or self._clock() - cached[0] > DURATIONS_MAX_AGE:
            cached = (self._clock(), await self._store.recent_durations(*key, limit=RECENT_RUNS))
            self._recent[key] = cached
        if cached[1]:
            return float(statistics.median(cached[1]))
        try:
            return self._provider(job.provider).capabilities(job.model).typical_seconds
        except Exception:
            return 90.0

    @staticmethod
    def timing(job: JobView, seconds: float) -> Timing:
        """A run of `job`'s kind that took `seconds`, for the move that ends its task to write
        (`JobMachine.move`): one statement with the change instead of one after it."""
        return Timing(*duration_key(job), max(0.0, seconds))

    def written(self, timing: Timing) -> None:
        """`timing` is in the database now: count it without reading the runs again."""
        key = (timing.provider, timing.resolution, timing.duration)
        cached = self._recent.get(key)
        if cached is not None:
            self._recent[key] = (cached[0], [timing.seconds, *cached[1]][:RECENT_RUNS])


@dataclass
class QueueSnapshot:
    """Queued and running rows as read at `generation`; the fair order is cached per tick."""

    generation: int
    loaded_at: float
    queued: list[JobView]
    running: list[JobView]
    order_tick: int = -1
    ordered: list[JobView] = field(default_factory=list)


class QueueView:
    """Positions and ETAs of waiting jobs, announced coalesced (see the module docstring)."""

    def __init__(
        self, store: Store, *, fair: FairQueue, caps: CapsReader, durations: Durations,
        clock: Clock, sleep: Sleep, emit: Emit, announce_interval: float,
    ) -> None:
        self._store = store
        self._fair = fair
        self._caps = caps
        self._durations = durations
        self._clock = clock
        self._sleep = sleep
        self._emit = emit
        self._interval = announce_interval
        self._announced: dict[str, int] = {}  # job id -> the position it was last told
        self._lock = asyncio.Lock()
        self._announcer: asyncio.Task[None] | None = None
        self._next_announce = float("-inf")  # engine clock: no pass before this
        self.generation = 0  # bumped on every job change (see touched)
        self._announced_gen = 0  # the generation the last announcement was computed from
        self._moved: dict[str, int] = {}  # job id -> generation of its latest change
        self._snapshot: QueueSnapshot | None = None

    def touched(self, job_id: str) -> None:
        """A job's row changed: what the view knows is stale."""
        self.generation += 1
        self._moved[job_id] = self.generation

    def forget(self, job_id: str) -> None:
        """The job left the queue: its next place (if it comes back) is news again."""
        self._announced.pop(job_id, None)

    async def stop(self) -> None:
        if self._announcer is not None:
            self._announcer.cancel()
            await asyncio.gather(self._announcer, return_exceptions=True)
            self._announcer = None

    async def snapshot(self) -> QueueSnapshot:
        """Queued and running rows, re-read only if a job changed (or the copy is old).

        Tagged with the generation seen *before* the read: a change committed during the read
        bumps the generation after its commit, so a snapshot can never look newer than it is.
        """
        now = self._clock()
        snapshot = self._snapshot
        if (
            snapshot is not None
            and snapshot.generation == self.generation
            and now - snapshot.loaded_at < SNAPSHOT_MAX_AGE
        ):
            return snapshot
        generation = self.generation
        rows = await self._store.jobs([JobState.QUEUED, *RUNNING_STATES])
        snapshot = QueueSnapshot(
            generation, now,
            [j for j in rows if j.state is JobState.QUEUED],
            [j for j in rows if j.state is not JobState.QUEUED],
        )
        self._snapshot = snapshot
        return snapshot

    async def entries(self, snapshot: QueueSnapshot | None = None) -> list[QueueEntry]:
        """Every running job (position 0) and waiting job (its place in its guild), with ETAs
        under each guild's own caps. Cheap when nothing changed: only the ETAs are recomputed
        (they move with the clock)."""
        snapshot = snapshot or await self.snapshot()
        now = self._clock()
        if snapshot.order_tick != self._fair.tick:
            snapshot.ordered = self._fair.order(snapshot.queued)
            snapshot.order_tick = self._fair.tick
        expected: dict[DurationKey, float] = {}
        for job in (*snapshot.queued, *snapshot.running):
            key = duration_key(job)
            if key not in expected:
                expected[key] = await self._durations.expected(job)
        caps = await self._caps.caps_for(j.guild_id for j in snapshot.queued)
        finish = estimate_finish(
            snapshot.ordered, snapshot.running, caps, lambda j: expected[duration_key(j)], now,
        )
        entries = [QueueEntry(0, finish[j.id], j) for j in snapshot.running]
        position: dict[str, int] = {}
        for job in snapshot.ordered:
            position[job.guild_id] = position.get(job.guild_id, 0) + 1
            entries.append(QueueEntry(position[job.guild_id], finish[job.id], job))
        return entries

    async def announce(self) -> None:
        """Announce queue positions now if the last pass is old enough, else soon.

        A burst of enqueues thus costs one pass per `announce_interval`, not one per enqueue,
        while the first job after a quiet spell learns its place before `enqueue` returns.
        """
        if self.generation == self._announced_gen:
            return
        now = self._clock()
        if not self._lock.locked() and now >= self._next_announce:
            self._next_announce = now + self._interval
            await self._announce_positions()
        elif self._announcer is None or self._announcer.done():
            self._announcer = asyncio.create_task(self._announce_loop(), name="engine-announcer")

    async def _announce_loop(self) -> None:
        """Catch up with the changes a throttled `announce` left behind, then end."""
        try:
            while self.generation != self._announced_gen:
                wait = self._next_announce - self._clock()
                if wait > 0:
                    await self._sleep(wait)
                    continue
                self._next_announce = self._clock() + self._interval
                await self._announce_positions()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("announcing queue positions failed; the next change retries")

    async def _announce_positions(self) -> None:
        """Tell each waiting job its place when it changed (the queue moved).

        Serialised, so two passes cannot both announce the same move. A job that changed
        after the snapshot (started, cancelled) is skipped: its news is already out, and a late
        "queued" must not overwrite it; the change itself calls for the next pass.
        """
        async with self._lock:
            generation = self.generation
            if not await self._store.waiting_guilds():
                # Nobody waits, so no place to tell: skip reading every running row (2,000
                # jobs in flight made this pass a fifth of the engine's CPU, bench/inflight.py).
                self._announced_gen = generation
                self._moved = {k: g for k, g in self._moved.items() if g > generation}
                return
            snapshot = await self.snapshot()
            entries = await self.entries(snapshot)
            self._announced_gen = snapshot.generation
            self._moved = {k: g for k, g in self._moved.items() if g > snapshot.generation}
            moved = [
                entry for entry in entries
                if entry.position != 0
                and self._announced.get(entry.job.id) != entry.position
                and self._moved.get(entry.job.id, 0) <= snapshot.generation
            ]
            if not moved:
                return
            # Another process may have told the same place already: each is told once.
            news = await self._store.tell_positions({e.job.id: e.position for e in moved})
            for entry in moved:
                self._announced[entry.job.id] = entry.position
                if entry.job.id in news \
                        and self._moved.get(entry.job.id, 0) <= snapshot.generation:
                    await self._emit(entry.job, JobEvent(
                        EventKind.QUEUED, position=entry.position, eta=entry.eta))


__all__ = ["Durations", "QueueSnapshot", "QueueView", "duration_key"]
