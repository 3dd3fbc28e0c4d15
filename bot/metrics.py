"""`GET /metrics`: the fleet in the Prometheus text format (prometheus-client), on the port of
/healthz (bot/health.py).

Two kinds of figures, kept apart on purpose:
- **Global ones, read from the shared database at scrape time** (bot/store/watch.py): jobs by
  gateway and state, queue depth and jobs in flight per gateway, task times per gateway (a
  histogram), failed jobs by gateway and kind, credits charged today and the gateways' reported
  cost today. Several processes share one database, so a per-process counter would show only
  its own share; every process shows the same whole figure instead (aggregate with `max`, not
  `sum`). The reads are cached for `ttl` seconds, so scrapers of many processes cost the
  database a few indexed reads each per `ttl`; task times are read incrementally.
- **Per-process ones**: how long this process took to acknowledge an interaction (from its
  creation to the defer or first answer; the Discord layer reports it, cogs/utils/acks.py).

Each `Metrics` has its own `CollectorRegistry` (never the global one): tests and several
engines in one process don't clash.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from bot.store import IN_FLIGHT_STATES, JobState, Store
from bot.store.ledger import day_of
from bot.store.watch import Charge, FailureCount, JobCount

log = logging.getLogger(__name__)

#: Task time buckets (seconds): Seedance renders take from about a minute to a quarter hour.
TASK_BUCKETS = (5.0, 15.0, 30.0, 60.0, 90.0, 120.0, 180.0, 300.0, 600.0, 900.0, 1800.0)
#: Discord wants an answer within 3 s: the buckets crowd around it.
ACK_BUCKETS = (0.05, 0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 2.5, 3.0, 5.0)
#: A task time recorded this long before the newest one seen is still looked for (a write that
#: committed after a later one); older rows are counted once and forgotten.
LATE_SECONDS = 300.0
#: A scrape waits this long for the database, then shows the last figures (store_up 0).
READ_SECONDS = 5.0


@dataclass
class TaskHistogram:
    """Cumulative task-time buckets per gateway, grown from the rows not yet counted."""

    counts: dict[str, list[int]] = field(default_factory=dict)
    sums: dict[str, float] = field(default_factory=dict)
    cursor: float = 0.0  # the newest `at` seen
    recent: dict[int, float] = field(default_factory=dict)  # ids counted, at ≥ cursor - LATE

    def add(self, row_id: int, provider: str, seconds: float, at: float) -> None:
        if row_id in self.recent:
            return
        self.recent[row_id] = at
        buckets = self.counts.setdefault(provider, [0] * (len(TASK_BUCKETS) + 1))
        index = next((i for i, le in enumerate(TASK_BUCKETS) if seconds <= le),
                     len(TASK_BUCKETS))
        buckets[index] += 1
        self.sums[provider] = self.sums.get(provider, 0.0) + seconds
        self.cursor = max(self.cursor, at)

    def forget_old(self) -> None:
        self.recent = {i: at for i, at in self.recent.items()
                       if at >= self.cursor - LATE_SECONDS}


@dataclass(frozen=True)
class Figures:
    """One read of the database's figures."""

    jobs: tuple[JobCount, ...]
    failures: tuple[FailureCount, ...]
    charges: tuple[Charge, ...]


class StoreFigures(Collector):
    """The global figures, as last read by `refresh` (prometheus-client collects synchronously,
    so the asynchronous read happens before the exposition is generated)."""

    def __init__(self, store: Store, *, ttl: float, clock: Callable[[], float],
                 wall: Callable[[], float]) -> None:
        self._store = store
        self._ttl = ttl
        self._clock = clock
        self._wall = wall
        self._lock = asyncio.Lock()
        self._read_at: float | None = None
        self._ok = False
        self._figures = Figures((), (), ())
        self._tasks = TaskHistogram()

    async def refresh(self) -> None:
        async with self._lock:
            if self._read_at is not None and self._clock() - self._read_at < self._ttl:
                return
            try:
                await asyncio.wait_for(self._read(), READ_SECONDS)
            except Exception as exc:  # the database away: keep the last figures, say so
                if self._ok or self._read_at is None:
                    log.warning("metrics: the database could not be read (%s)",
                                type(exc).__name__)
                self._ok = False
            else:
                self._ok = True
            self._read_at = self._clock()

    async def _read(self) -> None:
        now = self._wall()
        jobs = await self._store.job_counts()
        failures = await self._store.failure_counts()
        charges = await self._store.charges_since(day_of(now))
        since = self._tasks.cursor - LATE_SECONDS if self._tasks.recent else 0.0
        for t in await self._store.task_times(since):
            self._tasks.add(t.id, t.provider, t.seconds, t.at)
        self._tasks.forget_old()
        self._figures = Figures(tuple(jobs), tuple(failures), tuple(charges))

    def collect(self) -> Iterator[Metric]:
        f = self._figures
        up = GaugeMetricFamily("seedance_store_up",
                               "1 when the last read of the shared database succeeded")
        up.add_metric([], 1.0 if self._ok else 0.0)
        yield up
        jobs = GaugeMetricFamily("seedance_jobs", "Jobs in the database by gateway and state",
                                 labels=["gateway", "state"])
        depth = GaugeMetricFamily("seedance_queue_depth", "Jobs queued for a gateway",
                                  labels=["gateway"])
        flight = GaugeMetricFamily("seedance_in_flight",
                                   "Jobs holding a gateway slot (submitting or generating)",
                                   labels=["gateway"])
        gateways = sorted({c.provider for c in f.jobs})
        in_flight = {s.value for s in IN_FLIGHT_STATES}
        for c in f.jobs:
            jobs.add_metric([c.provider, c.state], c.count)
        for name in gateways:
            depth.add_metric([name], sum(c.count for c in f.jobs if c.provider == name
                                         and c.state == JobState.QUEUED.value))
            flight.add_metric([name], sum(c.count for c in f.jobs if c.provider == name
                                          and c.state in in_flight))
        yield from (jobs, depth, flight)
        tasks = HistogramMetricFamily(
            "seedance_task_seconds", "Gateway task time, submitted to result ready",
            labels=["gateway"])
        for name, counts in sorted(self._tasks.counts.items()):
            running, buckets = 0, []
            for le, n in zip([*map(str, TASK_BUCKETS), "+Inf"], counts, strict=True):
                running += n
                buckets.append((le, running))
            tasks.add_metric([name], buckets, self._tasks.sums.get(name, 0.0))
        yield tasks
        failed = GaugeMetricFamily("seedance_failed_jobs",
                                   "Failed jobs by gateway and error kind",
                                   labels=["gateway", "kind"])
        for fc in f.failures:
            failed.add_metric([fc.provider, fc.kind], fc.count)
        yield failed
        credits = GaugeMetricFamily("seedance_credits_spent_today",
                                    "Credits charged since 00:00 UTC, by gateway",
                                    labels=["gateway"])
        cost = GaugeMetricFamily("seedance_gateway_cost_today",
                                 "The gateways' reported cost of today's charged jobs "
                                 "(each gateway's own unit)", labels=["gateway"])
        for name in sorted({c.provider for c in f.charges}):
            mine = [c for c in f.charges if c.provider == name]
            credits.add_metric([name], sum(c.credits for c in mine))
            costs = [c.cost for c in mine if c.cost is not None]
            if costs:
                cost.add_metric([name], sum(costs))
        yield from (credits, cost)


class Metrics:
    """This process's registry: the store's figures and the interaction ack latency."""

    def __init__(self, store: Store, *, ttl: float = 10.0,
                 clock: Callable[[], float] = time.monotonic,
                 wall: Callable[[], float] = time.time) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.store_figures = StoreFigures(store, ttl=ttl, clock=clock, wall=wall)
        self.registry.register(self.store_figures)
        self.acks = Histogram(
            "seedance_interaction_ack_seconds",
            "From an interaction's creation to this process's acknowledgement (defer or "
            "first answer)", ["command"], registry=self.registry, buckets=ACK_BUCKETS)

    def observe_ack(self, command: str, seconds: float) -> None:
        self.acks.labels(command=command).observe(max(0.0, seconds))

    async def exposition(self) -> tuple[bytes, str]:
        """The Prometheus text of every metric, the store's read at most `ttl` ago."""
        await self.store_figures.refresh()
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
