"""Failover between gateways, their circuit breakers and their adaptive concurrency.

A job may carry an ordered list of gateways (`JobView.fleet["order"]`, written at enqueue from
SEEDANCE_PROVIDERS or a server's own list: only the gateways whose capability table accepts
the request as it is). It runs on the first one; it moves to the next only when its create
provably made no task there (`provably_no_task`: no connection, 429/503, balance exhausted)
and either that gateway's retry budget is spent, its balance is gone or its circuit opened —
or, before sending, when the circuit of its gateway is open. A create that may have made a task
(500, a timeout after sending, an unreadable 2xx) never moves: the job's outcome then comes from
the gateway that may own its task. A move is a state change SUBMITTING → QUEUED written before
the next create (the job waits in the fair queue under the new gateway's caps), settles
nothing (the credits stay reserved once, bot/engine/refunds.py `FAILOVER`), and says on the
job's row and in its status which gateway it uses now and why. With every gateway down, the job
waits in the queue (cancellable), looking again every `recheck` seconds, up to
SEEDANCE_FAILOVER_WAIT; then it fails and its credits come back.

Every create of every job (with or without a list) feeds each gateway's health, kept in the
database for all processes (bot/store/fleet.py): failures that speak of the gateway (5xx, no
connection, balance) count towards its circuit; a 429 or a concurrency error halves its
in-flight limit, successes grow it back (AIMD), and the scheduler starts jobs within it
(bot/engine/caps.py). `Fleet.health` is what an operator's status shows.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from bot.config import Settings
from bot.errors import (
    GatewayError,
    GatewayUnavailableError,
    InsufficientBalanceError,
    RateLimitError,
    scrub,
)
from bot.models import TaskState
from bot.pricing import credits_for
from bot.providers.base import Provider
from bot.store import JobState, JobView, Store
from bot.store.fleet import OPEN, GatewayHealth

from .events import EventKind, JobEvent
from .machine import JobMachine
from .refunds import Outcome

log = logging.getLogger(__name__)

Clock = Callable[[], float]


@dataclass(frozen=True)
class FleetPolicy:
    """How quickly a gateway is given up on and tried again."""

    failures: int = 5  # consecutive failed creates that open a gateway's circuit
    cooldown: float = 30.0  # seconds (database clock) before an open circuit lets a probe by
    probe_ttl: float = 120.0  # a probe unanswered this long may be taken by another job
    wait: float = 600.0  # SEEDANCE_FAILOVER_WAIT: every gateway down this long → the job fails
    recheck: float = 15.0  # seconds between looks while every gateway is down
    spacing: float = 1.0  # a burst of 429s within this many seconds halves concurrency once


def provably_no_task(err: GatewayError) -> bool:
    """Did this create certainly make no task? Balance refused, or refused before any work was
    taken (429, 503) or never sent (no connection). A 500/502/504, a timeout after sending or an
    unreadable answer may hide a task."""
    if isinstance(err, InsufficientBalanceError):
        return True
    if err.status is None:  # a lost answer of a gateway that dedupes creates is retryable too
        return err.sent is False
    return err.retryable and err.status in (429, 503)


def throttles(err: GatewayError) -> bool:
    """A 429 or a gateway's concurrency refusal: too many jobs in flight on the account."""
    words = f"{err.code or ''} {err.reason}".lower()
    return isinstance(err, RateLimitError) or "concurren" in words


def hurts_health(err: GatewayError) -> bool:
    """A failure that speaks of the gateway, not of the request: counts for the circuit."""
    return isinstance(err, GatewayUnavailableError | InsufficientBalanceError)


def foreign_callback(job: JobView, state: TaskState) -> bool:
    """News the job must not take: about an earlier task of it (before the retry without
    audio), or from a gateway the job has left (it made no task there). Logged when dropped."""
    if job.task_id and state.task_id and state.task_id != job.task_id:
        return True
    if state.gateway is not None and state.gateway != job.provider:
        log.warning("callback for job %s from %s dropped: the job runs on %s now",
                    job.id, state.gateway, job.provider)
        return True
    return False


def _span(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.0f} min"


class Fleet:
    """Health bookkeeping for every create, and the moves of jobs with a list of gateways."""

    def __init__(
        self, store: Store, *, machine: JobMachine, ceiling: Callable[[str], int],
        ceilings: Callable[[Sequence[str]], dict[str, int]],
        provider: Callable[[str], Provider],
        settings: Settings, clock: Clock, policy: FleetPolicy | None = None,
    ) -> None:
        self._store = store
        self._machine = machine
        self._ceiling = ceiling
        self._ceilings = ceilings
        self._listed = settings.providers
        self._provider = provider
        self._prices = settings.prices
        self._secrets = settings.secrets()
        self._clock = clock
        self.policy = policy or FleetPolicy(wait=settings.seedance_failover_wait)
        #: Successes not yet booked, per gateway, and the one booking of each under way.
        self._unbooked: Counter[str] = Counter()
        self._booking: dict[str, asyncio.Task[None]] = {}

    # ---- health -------------------------------------------------------------------------------
    async def health(self) -> list[GatewayHealth]:
        """Per gateway: circuit, effective concurrency (within its ceiling), last error — of
        the gateways configured, in SEEDANCE_PROVIDERS, or ever booked."""
        return await self._store.gateway_health(self._ceilings(self._listed),
                                                default=self._ceiling)

    def succeeded(self, provider: str) -> None:
        """Book a create that made its task, without holding the job up on its way to
        following the task (best effort: a lost success only delays a circuit's closing).

        The successes that come while a booking of their gateway is under way are booked
        together by the next one: a burst of creates costs a few reads of the gateway's row
        instead of one each (bench/README.md, eighth pass), with the same effect on its
        circuit and concurrency as booking them one by one."""
        self._unbooked[provider] += 1
        booking = self._booking.get(provider)
        # A booking that ended (even cancelled before it ran) books nothing more: the next
        # success starts one, with the successes it left.
        if booking is None or booking.done():
            task = asyncio.create_task(self._book_successes(provider))
            self._booking[provider] = task
            task.add_done_callback(lambda t: self._booked(provider, t))

    async def drain(self) -> None:
        """Let the bookings under way finish (a clean stop)."""
        await asyncio.gather(*self._booking.values(), return_exceptions=True)

    def _booked(self, provider: str, task: asyncio.Task[None]) -> None:
        if self._booking.get(provider) is task:
            del self._booking[provider]

    async def _book_successes(self, provider: str) -> None:
        while count := self._unbooked.pop(provider, 0):
            try:
                await self._store.gateway_succeeded(
                    provider, ceiling=self._ceiling(provider), count=count)
            except Exception as exc:
                log.warning("could not book %d success(es) of %s: %s", count, provider, exc)

    async def record(self, provider: str, error: GatewayError) -> str | None:
        """Book one failed create on its gateway; the circuit after a counted failure."""
        text = scrub(str(error), self._secrets)
        if throttles(error):
            await self._store.gateway_throttled(
                provider, text, ceiling=self._ceiling(provider), spacing=self.policy.spacing)
            return None
        if hurts_health(error):
            # An empty balance refuses every create alike: one is enough to open the circuit.
            empty = isinstance(error, InsufficientBalanceError)
            return await self._store.gateway_failed(
                provider, text, threshold=1 if empty else self.policy.failures)
        return None

    # ---- moves --------------------------------------------------------------------------------
    @staticmethod
    def fails_over(job: JobView) -> bool:
        return bool(job.fleet.get("order"))

    @staticmethod
    def bound(job: JobView, *, resumed: bool = False) -> bool:
        """Is the job tied to its gateway for good? Once a create there may have made a task
        (an answer lost, a restart in the middle of a create), the job's outcome belongs to
        that gateway: it resends the same create there (where that is safe) or fails."""
        return resumed or job.fleet.get("bound") == job.provider

    @staticmethod
    def created(job: JobView) -> dict[str, Any]:
        """Row fields for a create that succeeded: a wait for a working gateway is over."""
        if not job.fleet.get("waiting_since"):
            return {}
        return {"fleet": {**job.fleet, "waiting_since": None}}

    def pin(self, job: JobView, err: GatewayError) -> dict[str, Any]:
        """Row fields that bind a fleet job to its gateway after `err`, when the create may
        have made a task there and the job is about to send it again."""
        if not self.fails_over(job) or provably_no_task(err) or self.bound(job):
            return {}
        return {"fleet": {**job.fleet, "bound": job.provider}}

    async def admit(self, job: JobView, *, resumed: bool = False) -> bool:
        """Before a fleet job's create: may it go to its gateway? If not (the circuit is open),
        the job was moved on and the caller stops. A bound job always goes: only its gateway
        can own its task."""
        if self.bound(job, resumed=resumed):
            return True
        answer = await self._store.circuit_admit(
            job.provider, cooldown=self.policy.cooldown, probe_ttl=self.policy.probe_ttl)
        if answer != OPEN:
            return True
        await self.move_on(job, f"{job.provider} is down (its circuit is open)")
        return False

    def should_move(self, job: JobView, err: GatewayError, circuit: str | None, *,
                    budget_left: bool, resumed: bool = False) -> bool:
        """After a failed create of a fleet job: go to the next gateway?"""
        if not self.fails_over(job) or not provably_no_task(err) \
                or self.bound(job, resumed=resumed):
            return False
        return isinstance(err, InsufficientBalanceError) or circuit == OPEN or not budget_left

    async def move_on(self, job: JobView, why: str) -> JobView | None:
        """Requeue `job` on the next usable gateway of its list, or wait for one (every one
        down), or fail it once it waited SEEDANCE_FAILOVER_WAIT. None: it had moved on."""
        order: list[str] = list(job.fleet.get("order") or [])
        after = order[order.index(job.provider) + 1:] if job.provider in order else order
        skipped: list[str] = []
        for name in after:
            reason = await self._unusable(job, name)
            if reason is None:
                return await self._requeue(job, name, f"{job.provider}: {why}; moved to {name}"
                                           + (f" ({'; '.join(skipped)})" if skipped else ""),
                                           cause=why, not_before=self._clock())
            skipped.append(reason)
        return await self._wait(job, why, skipped)

    async def _unusable(self, job: JobView, name: str) -> str | None:
        """Why the job can't go to gateway `name` now (None: it can)."""
        if await self._store.circuit_is_open(name, cooldown=self.policy.cooldown):
            return f"{name} is down too"
        try:
            caps = self._provider(name).capabilities(None)
        except Exception as exc:  # its key went missing since the job was written
            return f"{name} is not usable ({type(exc).__name__})"
        quote = credits_for(self._moved_request(job, name, caps.model), self._prices)
        if quote > job.credits_estimate:
            # The price shown is the price charged: a dearer gateway is never used silently.
            return f"{name} would cost {quote} credits, more than the {job.credits_estimate} shown"
        return None

    def _builds(self, name: str) -> bool:
        try:
            self._provider(name)
        except Exception:  # its key went missing since the job was written
            return False
        return True

    def _moved_request(self, job: JobView, name: str, model: str | None) -> Any:
        """The request as gateway `name` gets it: the options the bot chose from the first
        gateway's table (Runware's quality and safety check) go where the new table lacks
        them, so the create there is not refused for them (bot/validation.py)."""
        caps = self._provider(name).capabilities(model)
        request = job.request
        return request.model_copy(update={
            "provider": name, "model": model,
            "output_quality": request.output_quality if caps.output_quality else None,
            "safety": request.safety if request.safety in caps.safety_modes else None,
        })

    async def _wait(self, job: JobView, why: str, skipped: list[str]) -> JobView | None:
        now = self._clock()
        since = float(job.fleet.get("waiting_since") or now)
        order: list[str] = list(job.fleet["order"])
        down = "; ".join([f"{job.provider}: {why}", *skipped])
        if now - since >= self.policy.wait:
            return await self._machine.fail(
                job, "create:unavailable", "unavailable",
                f"Every gateway this job may use stayed down for {_span(self.policy.wait)} "
                f"({down}); nothing was made and your credits were returned.")
        left = self.policy.wait - (now - since)
        note = (f"Every gateway is down ({down}); waiting for one to recover (up to "
                f"{_span(left)} more). You can cancel meanwhile.")
        first = next((n for n in order if self._builds(n)), job.provider)
        waiting = replace(job, fleet={**job.fleet, "waiting_since": since})
        return await self._requeue(waiting, first, note, cause="every gateway was down",
                                   not_before=now + min(self.policy.recheck, left))

    async def _requeue(self, job: JobView, name: str, note: str, *, cause: str,
                       not_before: float) -> JobView | None:
        """Back to the queue on gateway `name`; the row keeps the move (`moves`: from, to,
        cause, the whole note) for the status card (cogs/utils/texts.py)."""
        note, cause = scrub(note, self._secrets), scrub(cause, self._secrets)
        model = job.model if name == job.provider else self._provider(name).default_model
        request = job.request if name == job.provider else self._moved_request(job, name, model)
        moves = [*job.fleet.get("moves", []),
                 {"from": job.provider, "to": name, "cause": cause, "why": note,
                  "at": self._clock()}]
        # The wait for a working gateway runs from the first time every one was down until
        # a create succeeds (`created`), across the moves between, so it ends for sure.
        fleet = {**job.fleet, "moves": moves[-20:], "note": note}
        log.info("job %s: %s", job.id, note)
        return await self._machine.move(
            job, JobState.QUEUED, Outcome.FAILOVER, detail=f"failover: {note}",
            events=[JobEvent(EventKind.RETRYING, reason=note)],
            provider=name, model=model, request=request,
            attempts=0, not_before=not_before, fleet=fleet, task_id=None,
        )


__all__ = ["Fleet", "FleetPolicy", "foreign_callback", "hurts_health", "provably_no_task",
           "throttles"]
