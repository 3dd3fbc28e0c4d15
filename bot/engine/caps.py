"""Where the engine's caps come from: the configuration, each server's settings, the defaults.

- Per gateway account (jobs in flight: submitting or generating): SEEDANCE_GATEWAY_CONCURRENCY
  for the gateways it names, else `default_gateway_concurrency`, else
  `EngineLimits.gateway_in_flight` — a ceiling: the scheduler applies the effective value,
  halved after a 429 and grown back by successes (AIMD, bot/engine/fleet.py), re-read from
  the store at every pass.
- Per server and per member (running, waiting): the server's `GuildLimits` (bot/guild.py,
  set with /seedance-admin), each None falling back to `EngineLimits`.

Servers' settings are re-read at every scheduling pass for the servers that have jobs waiting
(`refresh`, one small indexed read each, next to the pass's read of every waiting and running
row), so a change made by an admin, by any process, applies at the next pass; queue views and
ETAs use what the last pass read (`caps_for` reads a server never read before).
"""

from __future__ import annotations

from collections.abc import Iterable

from bot.config import Settings
from bot.guild import GuildLimits
from bot.store import Store

from .scheduler import Caps, EngineLimits


def default_gateway_concurrency() -> dict[str, int]:
    """In-flight ceilings of gateways the operator did not name in SEEDANCE_GATEWAY_CONCURRENCY.

    Only the embedded renderer has one of its own: one task per core it may use
    (`default_parallel_renders`, bot/providers/local.py). It renders one task per core and
    queues the rest inside itself, where neither the fair order nor the ETAs can see them.
    A remote gateway's ceiling is its account's plan, which the bot cannot know: it keeps the
    engine's cautious default (`EngineLimits.gateway_in_flight`, 4), and the operator raises it.
    """
    from bot.providers.local import default_parallel_renders  # the renderer; loaded on use

    return {"local": default_parallel_renders()}


class CapsReader:
    """The caps of every gateway and server, as last read (see the module docstring)."""

    def __init__(self, settings: Settings, limits: EngineLimits, store: Store) -> None:
        self.limits = limits
        self.gateways = {**default_gateway_concurrency(), **settings.gateway_concurrency}
        self._store = store
        self._guilds: dict[str, GuildLimits] = {}
        # In flight allowed now: the ceilings, lowered where AIMD halved one (bot/store/fleet.py)
        self._in_flight = dict(self.gateways)
        self._caps = Caps(limits, self._in_flight, self._guilds)

    @property
    def caps(self) -> Caps:
        """The caps as last read (servers never read have the defaults)."""
        return self._caps

    def gateway(self, provider: str) -> int:
        """Jobs in flight the gateway is allowed now (its effective concurrency)."""
        return self._caps.gateway(provider)

    def ceiling(self, provider: str) -> int:
        """The configured ceiling (SEEDANCE_GATEWAY_CONCURRENCY, else the default)."""
        return self.gateways.get(provider, self.limits.gateway_in_flight)

    def ceilings(self, named: Iterable[str] = ()) -> dict[str, int]:
        """The ceilings of the gateways configured or `named`."""
        return {name: self.ceiling(name) for name in {*self.gateways, *named}}

    async def refresh_gateways(self) -> None:
        """Re-read the effective concurrency of every gateway (AIMD, shared by all processes)."""
        lowered = await self._store.gateway_limits()
        self._in_flight.clear()
        self._in_flight.update(self.gateways)
        for name, value in lowered.items():
            self._in_flight[name] = max(1, min(value, self.ceiling(name)))

    async def guild(self, guild_id: str) -> GuildLimits:
        """A server's limits, read now (admission: a cap just lowered applies at once)."""
        limits = (await self._store.guild_settings(guild_id)).limits
        self._remember(guild_id, limits)
        return limits

    async def refresh(self, guild_ids: Iterable[str]) -> Caps:
        """Re-read the limits of these servers (a scheduling pass: those with jobs waiting)."""
        for guild_id in set(guild_ids):
            await self.guild(guild_id)
        await self.refresh_gateways()
        return self._caps

    async def caps_for(self, guild_ids: Iterable[str]) -> Caps:
        """The caps, having read the servers of `guild_ids` that were never read."""
        for guild_id in set(guild_ids) - set(self._guilds):
            await self.guild(guild_id)
        return self._caps

    def _remember(self, guild_id: str, limits: GuildLimits) -> None:
        self._guilds[guild_id] = limits  # `_caps` reads this very dict


__all__ = ["CapsReader", "default_gateway_concurrency"]
