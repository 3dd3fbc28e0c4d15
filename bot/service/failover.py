"""Which gateways a new video may fail over to (bot/engine/fleet.py moves it between them).

DESIGN.md §3: with SEEDANCE_PROVIDERS set (or a server's own ordered list), a request goes to
the first gateway whose capability table accepts it, and may move to any later one that accepts
the very same request (mode, resolution, duration, ratio, inputs) — checked here, before
anything is spent, by the same validation intake runs (bot/validation.py). A gateway named
outright (`--provider`, `/video provider:`, a server's single gateway) or a model named outright
(a model belongs to its gateway) binds the job to that one gateway.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from bot.config import Settings
from bot.guild import GuildSettings
from bot.intake import RequestOptions
from bot.models import GenerationRequest
from bot.providers.base import Provider
from bot.validation import validate


def failover_order(options: RequestOptions, guild: GuildSettings,
                   settings: Settings) -> tuple[str, ...]:
    """The gateways to try in order; empty: one gateway, chosen as before."""
    if options.provider or options.model:
        return ()
    if guild.providers:
        return tuple(guild.providers)
    if guild.provider:
        return ()
    return settings.providers


def usable(names: Sequence[str], providers: Callable[[str], Provider]) -> list[str]:
    """The gateways of `names` that can be built here (their key is configured)."""
    found = []
    for name in names:
        try:
            providers(name)
        except Exception:  # no key, unknown name: not part of this fleet here
            continue
        found.append(name)
    return found


def accepts(request: GenerationRequest, provider: Provider) -> bool:
    """Would `provider` take `request` as it is (its default model)?"""
    try:
        caps = provider.capabilities(None)
    except Exception:
        return False
    moved = request.model_copy(update={"provider": caps.provider, "model": caps.model})
    return not validate(moved, caps)


def fleet_for(request: GenerationRequest, later: Sequence[str],
              providers: Callable[[str], Provider]) -> list[str]:
    """The job's list: its own gateway, then each later one that accepts the request."""
    return [request.provider, *(n for n in later if n != request.provider
                                and accepts(request, providers(n)))]


__all__ = ["accepts", "failover_order", "fleet_for", "usable"]
