"""Gateways behind one protocol. `create_provider` is the only place that knows their names."""

from __future__ import annotations

import asyncio
import importlib

import httpx

from bot.config import PROVIDER_NAMES, Settings
from bot.errors import InvalidInput
from bot.providers.base import Capabilities, MediaLimits, Provider, SubmitResult
from bot.providers.http import Sleep

__all__ = [
    "PROVIDER_NAMES",
    "Capabilities",
    "MediaLimits",
    "Provider",
    "SubmitResult",
    "create_provider",
    "model_refusal",
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


def model_refusal(provider: Provider, model: str | None) -> str | None:
    """Why `provider` does not run `model`, in the gateway's own words; None when it does.

    Each gateway's `capabilities(model)` refuses a model it does not run and names the ones it
    does, but the exception differs (ValueError, KeyError, InvalidInput): they are read here once,
    so front ends can refuse an unknown model before anything is sent, whatever the gateway.
    """
    try:
        provider.capabilities(model)
    except InvalidInput as exc:
        return "; ".join(problem.message for problem in exc.problems)
    except (KeyError, ValueError) as exc:
        return str(exc.args[0]) if exc.args else repr(exc)
    return None
