"""The scheduling loop: whenever something may have changed, start what the caps allow.

A pass reads the waiting and running rows, re-reads the caps of the servers with jobs waiting
(bot/engine/caps.py), lets `FairQueue` pick, and moves each pick to SUBMITTING through the job
machine before handing it to a runner. It then announces queue positions and sleeps until woken
(a job was added, ended, or requeued; `JobMachine.move` sets the event) or until the earliest
retry time of a job waiting for one.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from bot.store import RUNNING_STATES, JobState, JobView, Store

from .caps import CapsReader
from .events import EventKind, JobEvent
from .machine import JobMachine
from .queue import QueueSnapshot, QueueView
from .refunds import Outcome
from .scheduler import FairQueue

log = logging.getLogger(__name__)

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]


class Dispatcher:
    """Runs the scheduling loop (see the module docstring)."""

    def __init__(
        self, store: Store, *, fair: FairQueue, caps: CapsReader, machine: JobMachine,
        queue: QueueView, spawn: Callable[[str], None], wake: asyncio.Event, clock: Clock,
        sleep: Sleep,
    ) -> None:
        self._store = store
        self._fair = fair
        self._caps = caps
        self._machine = machine
        self._queue = queue
        self._spawn = spawn
        self._wake = wake
        self._clock = clock
        self._sleep = sleep
        self.task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.task = asyncio.create_task(self._loop(), name="engine-scheduler")
        self._wake.set()

    async def stop(self) -> None:
        task, self.task = self.task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def _loop(self) -> None:
        while True:
            self._wake.clear()
            try:
                delay = await self.run_once()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("scheduling failed; trying again shortly")
                delay = 1.0
            await self._wait_wake(delay)

    async def _wait_wake(self, delay: float | None) -> None:
        waiter = asyncio.ensure_future(self._wake.wait())
        if delay is None:
            await waiter
            return
        sleeper = asyncio.ensure_future(self._sleep(delay))
        try:
            await asyncio.wait({waiter, sleeper}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            waiter.cancel()
            sleeper.cancel()

    async def run_once(self) -> float | None:
        """One pass; returns the seconds until a waiting job's retry time (None: none)."""
        now = self._clock()
        generation = self._queue.generation
        rows = await self._store.jobs([JobState.QUEUED, *RUNNING_STATES])
        queued = [j for j in rows if j.state is JobState.QUEUED]
        running = [j for j in rows if j.state is not JobState.QUEUED]
        caps = await self._caps.refresh(j.guild_id for j in queued)
        started_rows: list[JobView] = []
        for job in self._fair.pick(queued, running, caps, now):
            started = await self._machine.move(
                job, JobState.SUBMITTING, Outcome.STARTED, detail=f"attempt {job.attempts + 1}",
                events=[JobEvent(EventKind.STARTED)], attempts=job.attempts + 1, started_at=now,
            )
            if started is None:
                continue
            started_rows.append(started)
            self._spawn(job.id)
        # Nothing but our own starts changed since the read: the queue is known without
        # reading it again.
        gone = {j.id for j in started_rows}
        self._queue.adopt(generation + len(started_rows), QueueSnapshot(
            generation + len(started_rows), now, [j for j in queued if j.id not in gone],
            running + started_rows,
        ))
        await self._queue.announce()
        later = [j.not_before - now for j in queued if j.not_before > now]
        return min(later) if later else None


__all__ = ["Dispatcher"]
