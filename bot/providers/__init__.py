"""Gateways behind one protocol. This module is the only place that knows their names:
`create_provider` builds one, `ProviderRegistry` keeps one of each for the whole process."""

from __future__ import annotations

import asyncio
import importlib
import logging
from collections.abc import Callable, Mapping
from types import MappingProxyType

import httpx

from bot.config import PROVIDER_NAMES, Settings
from bot.errors import InvalidInput
from bot.httpclient import new_client
from bot.providers.base import Capabilities, MediaLimits, Provider, SubmitResult
from bot.providers.http import Sleep

__all__ = [
    "PROVIDER_NAMES",
    "Capabilities",
    "MediaLimits",
    "Provider",
    "ProviderRegistry",
    "SubmitResult",
    "create_provider",
    "model_refusal",
]

log = logging.getLogger(__name__)

_MODULES = {name: f"bot.providers.{name}" for name in PROVIDER_NAMES}
#: Providers that need no API key (the embedded renderer).
_KEYLESS = frozenset({"local"})
#: The shared client's timeout when the registry makes its own: HttpTransport's default.
_TIMEOUT = 30.0


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


class ProviderRegistry:
    """One instance per gateway for the whole process, sharing one HTTP client.

    The bot, the engine and the CLI each kept their own cache of providers; asking this one
    instead builds each gateway once (lazily, on first use), on one connection pool, and closes
    each once. Without a `client` the registry makes one (on first use) and closes it in
    `aclose`; a given client stays its owner's. `sleep_for(name)`, when given, is the retry
    sleep of that gateway's transport (the CLI shows each host's waits), else `sleep`.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        client: httpx.AsyncClient | None = None,
        sleep: Sleep = asyncio.sleep,
        sleep_for: Callable[[str], Sleep] | None = None,
    ) -> None:
        self.settings = settings
        self._client = client
        self._own_client = client is None
        self._sleep = sleep
        self._sleep_for = sleep_for
        self._built: dict[str, Provider] = {}
        self._closed = False

    def get(self, name: str) -> Provider:
        """The provider `name`, built on first use with the module's `build()`.

        Raises ValueError for an unknown name, ConfigError when its API key is missing (nothing
        is kept then, so a key set later is picked up), RuntimeError once closed.
        """
        if self._closed:
            raise RuntimeError("the provider registry is closed")
        provider = self._built.get(name)
        if provider is None:
            sleep = self._sleep_for(name) if self._sleep_for is not None else self._sleep
            provider = create_provider(name, self.settings, client=self._shared_client(),
                                       sleep=sleep)
            self._built[name] = provider
        return provider

    def __call__(self, name: str) -> Provider:
        """Same as `get`: the registry is a `Callable[[str], Provider]` (the engine's source)."""
        return self.get(name)

    def configured(self) -> list[str]:
        """The gateways usable now: the embedded one, and those whose *_API_KEY is set."""
        return [name for name in PROVIDER_NAMES
                if name in _KEYLESS or self.settings.api_key(name)]

    def built(self) -> Mapping[str, Provider]:
        """The providers built so far, by name (a read-only view that follows later builds)."""
        return MappingProxyType(self._built)

    async def aclose(self) -> None:
        """Close every built provider once, then the client if the registry made it.

        Idempotent. One provider failing to close does not keep the others open.
        """
        if self._closed:
            return
        self._closed = True
        for name, provider in list(self._built.items()):
            try:
                await provider.aclose()
            except Exception:
                log.exception("closing the %s provider failed", name)
        if self._own_client and self._client is not None:
            await self._client.aclose()

    def _shared_client(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = new_client(timeout=_TIMEOUT)
        return self._client


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
