"""One process drives a database's jobs: a lease renewed while the bot lives.

Two bots started on the same data directory (a deploy overlapping the old process, a second
`docker run`) would both resume the same running jobs and post twice. On the same host the
holder's liveness is known at once: alive (its pid runs), the second one stops immediately with
a clear message; dead (SIGKILL, OOM: its pid is gone, or is our own pid from a previous life in
a container), its lease is taken over. Only a holder on another host, whose liveness cannot be
known from here, is waited for, up to `ttl` seconds, and the wait is said in the log.
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

    def _local_pid(self, owner: str) -> int | None:
        """The holder's pid when it ran on this host (so its liveness can be checked), else None."""
        host, _, rest = owner.partition(":")
        pid_text = rest.partition(":")[0]
        if host != self.host or not pid_text.isdigit() or owner == self.owner:
            return None
        return int(pid_text)

    def _dead(self, owner: str) -> bool:
        """Provably dead: same host, and its pid is gone or is ours (a previous life)."""
        pid = self._local_pid(owner)
        return pid is not None and (pid == self.pid or not self._alive(pid))

    def _alive_here(self, owner: str) -> bool:
        """Provably alive: same host, another pid than ours, and that pid runs."""
        pid = self._local_pid(owner)
        return pid is not None and pid != self.pid and self._alive(pid)

    async def acquire(self, *, wait: float | None = None) -> None:
        """Take the lease. A live holder on this host is refused at once (`LeaseHeld`); one on
        another host is waited for up to `wait` seconds (default: one ttl) to lapse."""
        deadline = self._clock() + (self.ttl + 1.0 if wait is None else wait)
        announced = False
        while True:
            now = self._clock()
            holder = await self.store.lease_holder(self.name)
            replacing = holder[0] if holder and self._dead(holder[0]) else None
            if await self.store.take_lease(self.name, self.owner, until=now + self.ttl, now=now,
                                           replacing=replacing):
                if replacing:
                    log.info("took over the lease of %s, which is no longer running", replacing)
                return
            # Taking failed, so the lease is held and not expired. A pid reused by an unrelated
            # process after the holder died reads as alive until the lease expires; the message
            # names the holder, and a later start takes over.
            who = holder[0] if holder else "another process"
            if (holder and self._alive_here(holder[0])) or self._clock() >= deadline:
                raise LeaseHeld(
                    f"Another seedance-bot ({who}) is running on this database. Stop it, or "
                    "give this one its own SEEDANCE_DATA_DIR.")
            if not announced:
                announced = True
                left = max(0.0, deadline - now)
                log.warning(
                    "the database is held by %s, on another host or not known to be alive; "
                    "waiting up to %.0f s for its lease to lapse (stop it, or give this bot its "
                    "own SEEDANCE_DATA_DIR)", who, left)
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
