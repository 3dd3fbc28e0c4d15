"""One process drives a database's jobs: a lease renewed while the bot lives.

Two bots started on the same data directory (a deploy overlapping the old process, a second
`docker run`) would both resume the same running jobs and post twice. The second one now waits
for the lease and, if its holder is alive, stops with a clear message. A holder that died
(SIGKILL, OOM) is recognised at once on the same host (its pid is gone, or is our own pid from a
previous life in a container), else its lease expires after `ttl` seconds.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
import uuid
from collections.abc import Awaitable, Callable

from bot.errors import SeedanceError
from bot.store import Store

log = logging.getLogger(__name__)


class LeaseHeld(SeedanceError):
    """Another live process holds the lease."""


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process: alive
    return True


class Lease:
    def __init__(self, store: Store, name: str = "engine", *, ttl: float = 30.0,
                 host: str | None = None, pid: int | None = None,
                 alive: Callable[[int], bool] = pid_alive,
                 clock: Callable[[], float] = time.time,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> None:
        self.store = store
        self.name = name
        self.ttl = ttl
        self.host = host or socket.gethostname()
        self.pid = os.getpid() if pid is None else pid
        self.owner = f"{self.host}:{self.pid}:{uuid.uuid4().hex[:8]}"
        self._alive = alive
        self._clock = clock
        self._sleep = sleep

    def _dead(self, owner: str) -> bool:
        """Provably dead: same host, and its pid is gone or is ours (a previous life)."""
        host, _, rest = owner.partition(":")
        pid_text = rest.partition(":")[0]
        if host != self.host or not pid_text.isdigit() or owner == self.owner:
            return False
        pid = int(pid_text)
        return pid == self.pid or not self._alive(pid)

    async def acquire(self, *, wait: float | None = None) -> None:
        """Take the lease, waiting up to `wait` (default: one ttl) for a holder to lapse."""
        deadline = self._clock() + (self.ttl + 1.0 if wait is None else wait)
        while True:
            now = self._clock()
            holder = await self.store.lease_holder(self.name)
            replacing = holder[0] if holder and self._dead(holder[0]) else None
            if await self.store.take_lease(self.name, self.owner, until=now + self.ttl, now=now,
                                           replacing=replacing):
                if replacing:
                    log.info("took over the lease of %s, which is no longer running", replacing)
                return
            if self._clock() >= deadline:
                who = holder[0] if holder else "another process"
                raise LeaseHeld(
                    f"Another seedance-bot ({who}) is running on this database. Stop it, or "
                    "give this one its own SEEDANCE_DATA_DIR.")
            await self._sleep(1.0)

    async def renew(self) -> bool:
        now = self._clock()
        return await self.store.take_lease(self.name, self.owner, until=now + self.ttl, now=now)

    async def keep(self, on_lost: Callable[[], Awaitable[None]]) -> None:
        """Renew every third of the ttl; if the lease was lost, call `on_lost` and return."""
        while True:
            await self._sleep(self.ttl / 3)
            try:
                held = await self.renew()
            except Exception:  # a busy disk: try again next round, the ttl has slack
                log.exception("could not renew the lease")
                continue
            if not held:
                log.critical("lost the lease of the database to another process; stopping")
                await on_lost()
                return

    async def release(self) -> None:
        await self.store.drop_lease(self.name, self.owner)
