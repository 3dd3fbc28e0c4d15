"""Gateways behind one protocol. `create_provider` is the only place that knows their names."""

from __future__ import annotations

import asyncio
import importlib

import httpx

from bot.config import PROVIDER_NAMES, Settings
from bot.providers.base import Capabilities, MediaLimits, Provider, SubmitResult
from bot.providers.http import Sleep

__all__ = [
    "PROVIDER_NAMES",
    "Capabilities",
    "MediaLimits",
    "Provider",
    "SubmitResult",
    "create_provider",
]

_MODULES = {name: f"bot.providers.{name}" for name in PROVIDER_NAMES}


def create_provider(
    name: str,
    settings: Settings,
    *,
    client: httpx.AsyncClient | None = None,
    sleep: Sleep = asyncio.sleep,
) -> Provider:
    """Build the provider `name`; each module exposes `build(settings, client=, sleep=)`."""
    if name not in _MODULES:
        raise ValueError(f"unknown provider {name!r}; choose one of {', '.join(PROVIDER_NAMES)}")
    module = importlib.import_module(_MODULES[name])
    provider: Provider = module.build(settings, client=client, sleep=sleep)
    return provider
