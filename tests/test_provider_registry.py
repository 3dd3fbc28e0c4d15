"""ProviderRegistry: one provider per gateway for the whole process, on one HTTP client."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from bot.config import PROVIDER_NAMES, Settings
from bot.errors import ConfigError, TaskNotFoundError
from bot.models import GenerationRequest
from bot.providers import Provider, ProviderRegistry
from bot.providers.base import HttpGateway
from bot.providers.http import Sleep
from bot.providers.local import LocalProvider
from tests.fakes.magnific import FakeMagnific
from tests.provider_helpers import GATEWAYS, SleepLog

KEYS = {f"{gw.name}_api_key": f"key-{gw.name}" for gw in GATEWAYS}


def settings(tmp_path: Path, **fields: Any) -> Settings:
    return Settings(_env_file=None, seedance_data_dir=tmp_path, **fields)


async def test_each_gateway_is_built_once_lazily_and_shares_one_client(tmp_path: Path) -> None:
    async with httpx.AsyncClient() as client:
        registry = ProviderRegistry(settings(tmp_path, **KEYS), client=client)
        assert dict(registry.built()) == {}
        made = {name: registry.get(name) for name in PROVIDER_NAMES}
        assert all(registry.get(name) is made[name] for name in PROVIDER_NAMES)
        assert all(registry(name) is made[name] for name in PROVIDER_NAMES)
        assert dict(registry.built()) == made
        assert isinstance(made["local"], LocalProvider)
        gateways = [p for p in made.values() if isinstance(p, HttpGateway)]
        assert len(gateways) == len(GATEWAYS)
        assert all(p.http.client is client for p in gateways)
        assert all(isinstance(p, gw.provider) for gw in GATEWAYS for p in [made[gw.name]])
        await registry.aclose()
        assert not client.is_closed  # the caller's client stays the caller's


async def test_built_is_a_view_that_follows_later_builds(tmp_path: Path) -> None:
    registry = ProviderRegistry(settings(tmp_path, **KEYS))
    view = registry.built()
    registry.get("runware")
    assert list(view) == ["runware"]
    with pytest.raises(TypeError):
        view["hiapi"] = registry.get("hiapi")  # type: ignore[index]
    await registry.aclose()


async def test_without_a_client_it_makes_one_shares_it_and_closes_it(tmp_path: Path) -> None:
    registry = ProviderRegistry(settings(tmp_path, **KEYS))
    anyfast, hiapi = registry.get("anyfast"), registry.get("hiapi")
    assert isinstance(anyfast, HttpGateway) and isinstance(hiapi, HttpGateway)
    shared = anyfast.http.client
    assert hiapi.http.client is shared and not shared.is_closed
    await registry.aclose()
    assert shared.is_closed


async def test_missing_key_and_unknown_name(tmp_path: Path) -> None:
    registry = ProviderRegistry(settings(tmp_path))
    with pytest.raises(ConfigError, match="MAGNIFIC_API_KEY is not set"):
        registry.get("magnific")
    with pytest.raises(ValueError, match="unknown provider 'sora'"):
        registry.get("sora")
    assert dict(registry.built()) == {}  # a failed build leaves nothing behind
    registry.settings = settings(tmp_path, magnific_api_key="k")  # the key arrives later
    assert isinstance(registry.get("magnific"), HttpGateway)
    await registry.aclose()


def test_configured_is_local_plus_the_gateways_with_a_key(tmp_path: Path) -> None:
    assert ProviderRegistry(settings(tmp_path)).configured() == ["local"]
    some = ProviderRegistry(settings(tmp_path, hiapi_api_key="k", runware_api_key="k"))
    assert some.configured() == ["local", "runware", "hiapi"]
    assert ProviderRegistry(settings(tmp_path, **KEYS)).configured() == list(PROVIDER_NAMES)


async def test_sleep_for_gives_each_gateway_its_own_retry_sleep(tmp_path: Path) -> None:
    sleeps: dict[str, SleepLog] = {}

    def sleep_for(name: str) -> Sleep:
        return sleeps.setdefault(name, SleepLog())

    async with FakeMagnific() as fake:
        registry = ProviderRegistry(
            settings(tmp_path, magnific_api_key=fake.api_key, magnific_base_url=fake.base_url,
                     hiapi_api_key="k"),
            sleep_for=sleep_for,
        )
        magnific = registry.get("magnific")
        hiapi = registry.get("hiapi")
        assert isinstance(magnific, HttpGateway) and isinstance(hiapi, HttpGateway)
        assert magnific.http.sleep is sleeps["magnific"] and hiapi.http.sleep is sleeps["hiapi"]
        fake.fail_next(503, {"message": "busy"}, method="GET", headers={"Retry-After": "2"})
        with pytest.raises(TaskNotFoundError):  # a 503 waited out, then the fake's 404
            await magnific.poll("00000000-0000-0000-0000-000000000000")
    await registry.aclose()
    assert sleeps["magnific"].delays == [2.0] and sleeps["hiapi"].delays == []


async def test_sleep_is_every_gateways_without_sleep_for(tmp_path: Path) -> None:
    log = SleepLog()
    registry = ProviderRegistry(settings(tmp_path, **KEYS), sleep=log)
    assert all(registry.get(gw.name).http.sleep is log for gw in GATEWAYS)  # type: ignore[attr-defined]
    await registry.aclose()


async def test_aclose_closes_every_built_provider_once(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    registry = ProviderRegistry(settings(tmp_path, **KEYS))
    built = [registry.get(name) for name in ("local", "runware", "magnific")]
    closes: dict[str, int] = {}

    def counting(provider: Provider, real: Callable[[], Any]) -> Callable[[], Any]:
        async def aclose() -> None:
            closes[provider.name] = closes.get(provider.name, 0) + 1
            if provider.name == "runware":
                raise RuntimeError("socket already gone")  # must not keep the others open
            await real()
        return aclose

    for provider in built:
        monkeypatch.setattr(provider, "aclose", counting(provider, provider.aclose))
    await registry.aclose()
    await registry.aclose()
    assert closes == {"local": 1, "runware": 1, "magnific": 1}
    with pytest.raises(RuntimeError, match="closed"):
        registry.get("local")


async def test_the_engine_takes_it_as_its_provider_source(tmp_path: Path) -> None:
    """A real local job through the real engine, its provider asked of the registry."""
    from bot.engine import Engine, JobState
    from bot.store import Store
    from tests.test_engine_fakes import FakeDelivery

    config = settings(tmp_path, seedance_user_daily_credits=1000)
    registry = ProviderRegistry(config)
    store = await Store.open(config.database_path)
    async with httpx.AsyncClient() as http:
        engine = Engine(config, store, delivery=FakeDelivery(), providers=registry, http=http)
        try:
            job = await engine.enqueue(
                GenerationRequest(prompt="a kite over the sea", duration=4, resolution="480p",
                                  provider="local"),
                guild_id="g1", channel_id="c1", user_id="u1",
            )
            await engine.start()
            async with asyncio.timeout(60):  # a hang guard, not a timing assertion
                done = await engine.wait(job.id)
        finally:
            await engine.stop()
            await registry.aclose()
            await store.close()
    assert done.state is JobState.DELIVERED, done.error_message
    assert list(registry.built()) == ["local"]
