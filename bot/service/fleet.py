"""`/seedance-admin status`: how each gateway is doing, for the people who run the bot.

Per gateway: jobs in flight and queued, p50/p95 task time over the last hour, the last failure
(scrubbed: no secret, no URL with its query), credits charged today and the gateway's own
reported cost today. Every figure is read from the shared database (bot/store/watch.py), so
any process answers for all. The circuit state and the effective concurrency come from the
engine's circuits and AIMD (bot/engine/fleet.py, through `engine_states`); without a reader
they show as a dash beside the configured ceiling (SEEDANCE_GATEWAY_CONCURRENCY).
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass

from bot.config import PROVIDER_NAMES, Settings
from bot.engine.caps import CapsReader
from bot.engine.scheduler import EngineLimits
from bot.errors import scrub
from bot.store import IN_FLIGHT_STATES, JobState, Store
from bot.store.fleet import GatewayHealth
from bot.store.ledger import day_of

from .people import Requester
from .refusals import NotAllowed

HOUR = 3600.0
#: A failure's message as shown: enough to tell one error from another.
MESSAGE_CHARS = 300
_URL = re.compile(r"(?i)\b(https?|wss?)://([^\s/\"'<>?#]+)[^\s\"'<>]*")


@dataclass(frozen=True)
class GatewayState:
    """What the circuit breaker and the adaptive concurrency know of a gateway."""

    circuit: str | None = None  # "closed", "open", "half-open"
    concurrency: tuple[int, int] | None = None  # (effective, ceiling)


#: Reads the `GatewayState` of these gateways from the store (the failover work provides it).
GatewayStateReader = Callable[[Sequence[str]], Awaitable[Mapping[str, GatewayState]]]


def engine_states(health: Callable[[], Awaitable[Sequence[GatewayHealth]]]) -> GatewayStateReader:
    """The `GatewayStateReader` over the engine's circuits and adaptive concurrency
    (bot/engine/fleet.py `Fleet.health`, read from the shared store)."""

    async def read(names: Sequence[str]) -> Mapping[str, GatewayState]:
        wanted = set(names)
        return {h.provider: GatewayState(
                    circuit=h.circuit.replace("_", "-"),
                    concurrency=(h.effective, h.ceiling)
                    if h.effective is not None and h.ceiling is not None else None)
                for h in await health() if h.provider in wanted}

    return read


@dataclass(frozen=True)
class LastError:
    kind: str
    message: str  # scrubbed of secrets and URLs (`redact`)
    at: float


@dataclass(frozen=True)
class GatewayStatus:
    """One gateway's line of the status. None is "not known" (rendered as a dash)."""

    name: str
    in_flight: int
    queued: int
    ceiling: int  # SEEDANCE_GATEWAY_CONCURRENCY, else the engine's default
    tasks_last_hour: int
    p50: float | None  # seconds, tasks finished in the last hour
    p95: float | None
    last_error: LastError | None
    credits_today: int  # charged since 00:00 UTC
    cost_today: float | None  # the gateway's own unit, summed over jobs that reported one
    circuit: str | None = None
    concurrency: tuple[int, int] | None = None  # (effective, ceiling)


@dataclass(frozen=True)
class FleetStatus:
    at: float
    gateways: tuple[GatewayStatus, ...]


def percentile(values: Sequence[float], p: float) -> float | None:
    """The nearest-rank percentile (p in 0..100) of `values`; None when there are none."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def redact(text: str, secrets: Sequence[str] = ()) -> str:
    """A gateway's message fit to show: secrets and tokens scrubbed (bot/errors.py `scrub`),
    and every URL cut to its scheme and host (result links are signed, paths carry ids)."""
    text = scrub(text, tuple(secrets))
    text = _URL.sub(lambda m: f"{m.group(1)}://{m.group(2).rsplit('@', 1)[-1]}/…", text)
    text = " ".join(text.split())
    return text if len(text) <= MESSAGE_CHARS else text[: MESSAGE_CHARS - 1] + "…"


def configured_gateways(settings: Settings) -> tuple[str, ...]:
    """The gateways this bot may use: the default one, those with an API key, and those given
    a ceiling in SEEDANCE_GATEWAY_CONCURRENCY."""
    names = {settings.seedance_provider, *settings.gateway_concurrency}
    names |= {n for n in PROVIDER_NAMES if n != "local" and settings.api_key(n)}
    return tuple(n for n in PROVIDER_NAMES if n in names)


class FleetService:
    """The status of every gateway, as values (the Discord layer renders them)."""

    def __init__(self, settings: Settings, store: Store, *, limits: EngineLimits | None = None,
                 clock: Callable[[], float] = time.time,
                 states: GatewayStateReader | None = None) -> None:
        self.settings = settings
        self.store = store
        self._caps = CapsReader(settings, limits or EngineLimits(), store)
        self._clock = clock
        self._states = states

    async def status(self, who: Requester) -> FleetStatus:
        """For an admin (on Discord, Manage Server)."""
        if not who.admin:
            raise NotAllowed(key="errors.setting.manage_server")
        return await self.snapshot()

    async def snapshot(self) -> FleetStatus:
        now = self._clock()
        wanted = (JobState.QUEUED.value, *sorted(s.value for s in IN_FLIGHT_STATES))
        counts = await self.store.job_counts(wanted)
        times = await self.store.task_times(now - HOUR)
        charges = await self.store.charges_since(day_of(now))
        seen = {c.provider for c in counts} | {t.provider for t in times} | {
            c.provider for c in charges}
        names = configured_gateways(self.settings)
        names += tuple(sorted(seen - set(names)))
        failures = await self.store.last_failures(names)
        states = await self._states(names) if self._states is not None else {}
        secrets = self.settings.secrets()
        lines = []
        for name in names:
            durations = [t.seconds for t in times if t.provider == name]
            mine = [c for c in charges if c.provider == name]
            costs = [c.cost for c in mine if c.cost is not None]
            failed = failures.get(name)
            state = states.get(name, GatewayState())
            lines.append(GatewayStatus(
                name=name,
                in_flight=sum(c.count for c in counts if c.provider == name
                              and c.state != JobState.QUEUED.value),
                queued=sum(c.count for c in counts if c.provider == name
                           and c.state == JobState.QUEUED.value),
                ceiling=self._caps.gateway(name),
                tasks_last_hour=len(durations),
                p50=percentile(durations, 50),
                p95=percentile(durations, 95),
                last_error=None if failed is None else LastError(
                    failed.kind, redact(failed.message, secrets), failed.at),
                credits_today=sum(c.credits for c in mine),
                cost_today=round(sum(costs), 6) if costs else None,
                circuit=state.circuit,
                concurrency=state.concurrency,
            ))
        return FleetStatus(now, tuple(lines))
