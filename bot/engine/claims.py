"""Many processes, one queue: who drives which active job, and what happens when one dies.

Each engine is a process on the queue with an id `host:pid:instance` (`process_id`). A job it
starts or takes over is claimed by it in the job's row (bot/store/claims.py), with a lease
measured by the database's clock; the `Keeper` renews this engine's leases while it lives and,
every `EngineLimits.claim_interval` seconds (or at once on PostgreSQL, through LISTEN):

- takes over orphans: jobs whose lease ran out, jobs nobody drives, and jobs of a process
  known dead (same host and its pid is gone, or this very pid in an earlier life: a container
  restarted as pid 1, an engine in this interpreter whose keeper stopped), then resumes each
  from its row — the exactly-once promises are the row's (idempotent create keys, post nonce
  and history check, a ledger settled once);
- hands its runners the news other processes kept for them (a gateway's callback that reached
  another process's receiver), and
- carries out cancellations people asked for through another process;
- resumes a job it drives whose runner ended early (the database was away);
- wakes this engine's scheduler, which may now start what another process queued or freed.

Leases are renewed every third of their length, one statement for all of a process's jobs, so
2,000 jobs in flight cost one write every 10 s. A process that stops cleanly lets go of its
leases, so the others take its jobs over at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import time
import uuid
from collections.abc import Awaitable, Callable, Collection
from typing import Any

from bot import errors
from bot.errors import GatewayError
from bot.models import TaskState
from bot.store import JobView, Store
from bot.store.db import QUEUE_CHANNEL

log = logging.getLogger(__name__)

#: The engines of this interpreter whose keeper runs: a process id with our pid that is not
#: here belongs to an earlier life of this pid (or an engine whose work was killed).
_LIVE: set[str] = set()

#: PostgreSQL's notification channel for news to a job's owner (bot/store/claims.py).
CHANNEL = "seedance_updates"


def process_id(host: str | None = None, pid: int | None = None) -> str:
    """`host:pid:instance`: unique per engine, and telling the host and pid it runs as."""
    return f"{host or socket.gethostname()}:{os.getpid() if pid is None else pid}:" \
           f"{uuid.uuid4().hex[:8]}"


def uptime() -> float:
    """Seconds on a clock that runs on while the machine sleeps (CLOCK_BOOTTIME on Linux), as
    the database's clock does, which leases are measured by: after a suspend, this process's
    leases must look as old as they are."""
    return time.clock_gettime(_BOOTTIME) if _BOOTTIME is not None else time.monotonic()


_BOOTTIME: int | None = getattr(time, "CLOCK_BOOTTIME", None)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process: alive
    return True


def known_dead(owner: str, me: str, alive: Callable[[int], bool] = pid_alive) -> bool:
    """Whether `owner` is provably gone, so its jobs need not wait for its leases to run out:
    it ran on this host, and its pid is gone or is ours without being a live engine here."""
    host, _, rest = owner.partition(":")
    pid_text = rest.partition(":")[0]
    if owner == me or host != me.partition(":")[0] or not pid_text.isdigit():
        return False
    pid = int(pid_text)
    if pid == os.getpid():
        return owner not in _LIVE
    return not alive(pid)


# ---- a task's news between processes --------------------------------------------------------
def encode_state(state: TaskState) -> str:
    """A `TaskState` as JSON for another process (its error as its class and fields)."""
    data: dict[str, Any] = state.model_dump(mode="json", exclude={"error"})
    err = state.error
    if isinstance(err, GatewayError):
        data["error"] = {
            "type": type(err).__name__, "message": err.reason, "provider": err.provider,
            "status": err.status, "code": err.code, "retry_after": err.retry_after,
            "refunded": err.refunded,
        }
    elif err is not None:
        data["error"] = {"type": "GatewayError", "message": str(err)}
    return json.dumps(data)


def decode_state(text: str) -> TaskState:
    data = json.loads(text)
    err = data.pop("error", None)
    state = TaskState.model_validate(data)
    if err is not None:
        cls = getattr(errors, str(err.get("type")), GatewayError)
        if not (isinstance(cls, type) and issubclass(cls, GatewayError)):
            cls = GatewayError
        state.error = cls(
            str(err.get("message", "")), provider=str(err.get("provider") or ""),
            status=err.get("status"), code=err.get("code"), retry_after=err.get("retry_after"),
            refunded=err.get("refunded"),
        )
    return state


class Keeper:
    """Renews, takes over, relays and cancels for one engine (see the module docstring)."""

    def __init__(
        self, store: Store, *, owner: str, ttl: float, interval: float,
        resume: Callable[[str], None], running: Callable[[], Collection[str]],
        stranded: Callable[[], int], deliver: Callable[[str, TaskState], None],
        cancel: Callable[[str, str], Awaitable[object]],
        wake: asyncio.Event, scope: Callable[[str], bool] | None = None,
        alive: Callable[[int], bool] = pid_alive,
    ) -> None:
        self._store = store
        self.owner = owner
        self._ttl = ttl
        self._interval = interval
        self._resume = resume
        self._running = running
        self._stranded = stranded
        self._stranded_seen = 0
        self._deliver = deliver
        self._cancel = cancel
        self._wake = wake
        self._scope = scope
        self._alive = alive
        self._poke = asyncio.Event()
        self._started = False
        self._renewed = float("-inf")
        #: Jobs whose runners ran while this process's leases may have run out (`holds`).
        self._suspects: set[str] = set()
        self.task: asyncio.Task[None] | None = None

    def holds(self, job_id: str) -> bool:
        """Whether this process certainly still holds the claim on a job its runner drives,
        so the runner's view of the row can stand in for the row (`Engine.on_callback`).

        Others take a job over only when its lease has run out or this keeper has stopped.
        So: this keeper lives, renewed its leases less than half a lease ago, and the job's
        runner did not run through a gap of half a lease or more between two renewals (then
        it stays a suspect while it runs, and the row is read instead)."""
        return (self.owner in _LIVE and job_id not in self._suspects
                and uptime() - self._renewed < self._ttl / 2)

    async def start(self) -> None:
        """Claim what this engine may resume, then keep at it in the background."""
        self._started = True
        _LIVE.add(self.owner)
        await self._store.db.listen(CHANNEL, lambda _payload: self._poke.set())
        await self._store.db.listen(QUEUE_CHANNEL, self._queue_changed)
        await self.pass_once()
        self.task = asyncio.create_task(self._loop(), name="engine-keeper")

    def _queue_changed(self, origin: str) -> None:
        """Another process queued a job or freed a slot: schedule now (this process's own
        changes wake its scheduler already, in their order)."""
        if origin != self._store.origin:
            self._wake.set()

    async def stop(self, *, release: bool = True) -> None:
        """Stop keeping; with `release`, let go of this process's jobs (if it ever ran)."""
        started, self._started = self._started, False
        task, self.task = self.task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        _LIVE.discard(self.owner)
        if release and started:
            try:
                await self._store.release(self.owner)
            except Exception:
                log.warning("could not release this process's jobs; others take them over"
                            " when the leases run out", exc_info=True)

    async def _loop(self) -> None:
        try:
            while True:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._poke.wait(), self._interval)
                self._poke.clear()
                try:
                    await self.pass_once()
                except asyncio.CancelledError:
                    raise
                except Exception:
                    # The database may be away: leases run on, jobs wait; try again.
                    log.warning("keeping this process's jobs failed; trying again shortly",
                                exc_info=True)
        finally:
            _LIVE.discard(self.owner)  # a keeper that stopped means a dead process

    async def pass_once(self) -> None:
        store = self._store
        now = uptime()
        renewing = now - self._renewed >= self._ttl / 3  # three chances before a lease lapses
        if renewing:
            await store.renew(self.owner, self._ttl)
            # First, or late (counting the renewal's own time): leases may have lapsed.
            if uptime() - self._renewed >= self._ttl / 2:
                self._suspects = set(self._running())
            self._renewed = now
        if self._suspects:  # (most passes: none, and no walk over every runner)
            self._suspects.intersection_update(self._running())
        for owner in await store.owners():
            if known_dead(owner, self.owner, self._alive):
                log.info("taking over the jobs of %s, which is gone", owner)
                for job in await store.orphans(owner=owner):
                    await self._take(job, replacing=owner)
        for job in await store.orphans():
            await self._take(job)
        stranded = self._stranded()
        if renewing or stranded != self._stranded_seen:
            # A runner ended early (the database was away) and left its job claimed by this
            # process: resume it. Looked for when that happened, and with every renewal, not
            # at every pass: the list is every job this process drives.
            mine = set(self._running())
            for job_id in await store.owned(self.owner) - mine:
                self._resume(job_id)
            self._stranded_seen = stranded  # (only once read: the database may be away still)
        mine = set(self._running())
        for update_id, job_id, text in await store.updates_for(self.owner):
            if job_id in mine:
                self._deliver(job_id, decode_state(text))
            await store.drop_update(update_id)
        for job in await store.cancel_requests(self.owner):
            await store.clear_cancel_request(job.id)
            await self._cancel(job.id, job.cancel_requested or "someone")
        self._wake.set()

    async def _take(self, job: JobView, *, replacing: str | None = None) -> None:
        if self._scope is not None and not self._scope(job.id):
            return
        taken = await self._store.claim(job.id, self.owner, self._ttl, replacing=replacing)
        if taken is not None:
            log.info("resuming job %s (%s)", job.id, job.state.value)
            self._resume(job.id)


__all__ = ["CHANNEL", "Keeper", "decode_state", "encode_state", "known_dead", "pid_alive",
           "process_id"]
