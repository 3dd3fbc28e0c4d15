"""The scheduling loop: whenever something may have changed, start what the caps allow.

A pass re-reads the caps of the servers with jobs waiting (bot/engine/caps.py), then, in one
transaction shared with every other process (`Store.schedule`), reads the waiting jobs, the
slots the running ones hold and the served memory, lets `FairQueue` pick, and claims each pick
in SUBMITTING for this process before handing it to a runner. It then announces queue positions
and sleeps until woken (a job was added, ended, or requeued: `JobMachine.move` sets the event;
another process may have done so: the keeper, bot/engine/claims.py, sets it every
`claim_interval`) or until the earliest retry time of a job waiting for one.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from bot.store import JobView, Store
from bot.store.records import QueuedRow, RunningCounts, Served

from .caps import CapsReader
from .machine import JobMachine
from .queue import QueueView
from .scheduler import FairQueue

log = logging.getLogger(__name__)

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]


class Dispatcher:
    """Runs the scheduling loop (see the module docstring)."""

    def __init__(
        self, store: Store, *, fair: FairQueue, caps: CapsReader, machine: JobMachine,
        queue: QueueView, spawn: Callable[[JobView], None], wake: asyncio.Event, clock: Clock,
        sleep: Sleep, scope: Callable[[str], bool] | None = None,
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
        self._scope = scope  # which jobs this engine may start (None: any)
        self._batch = max(1, caps.limits.claim_batch)
        self._share = max(1, caps.limits.claim_share)
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
        # Caps of the servers with jobs waiting, read fresh (an admin's change applies now).
        guilds = await self._store.waiting_guilds()
        caps = await self._caps.refresh(guilds)
        scope = self._scope

        def choose(waiting: list[QueuedRow], counts: RunningCounts,
                   served: Served) -> list[QueuedRow]:
            # A server whose first job arrived since its caps were read waits for the next
            # pass (its enqueue woke one), rather than starting under the default caps.
            self._fair.adopt(served)
            mine = [j for j in waiting
                    if j.guild_id in guilds and (scope is None or scope(j.id))]
            return self._fair.pick_counted(mine, counts, caps, now,
                                           limit=max(self._batch, len(mine) // self._share))

        done = await self._store.schedule(choose, owner=self._machine.owner,
                                          ttl=self._machine.ttl, now=now)
        self._fair.adopt(done.served)
        for job in done.started:
            self._spawn(job)  # as the claim wrote it: its runner starts without a read
        await self._machine.started(done.started)
        await self._queue.announce()
        if len(done.started) >= self._batch:
            return 0.0  # more may start now: pass again, after the others had their turn
        later = [j.not_before - now for j in done.waiting if j.not_before > now
                 and (scope is None or scope(j.id))]
        return min(later) if later else None


__all__ = ["Dispatcher"]
