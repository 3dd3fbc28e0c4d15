"""The rig of the fault suite: the real Engine and a real SQLite store, each real gateway module
against its aiohttp fake, a delivery port that dedupes like Discord's nonce, and recorders for
every wait (the engine's clock and the transport's sleep), so "Retry-After was honoured" is a
fact about the waits chosen, never about wall time.

Each gateway is described once (`Gateway`): how to build its provider, how its fake tells a
create from a poll, and what its 429, 503 and moderation answers look like.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from bot.config import Settings
from bot.engine import Engine, EngineLimits, JobView
from bot.engine.policies import PollPolicy
from bot.models import GenerationRequest
from bot.providers import anyfast, hiapi, magnific, runware
from bot.providers.base import Provider
from bot.store import Store
from tests.fakes.anyfast import FakeAnyfast
from tests.fakes.common import FakeGateway, Recorded
from tests.fakes.hiapi import FakeHiAPI
from tests.fakes.magnific import FakeMagnific
from tests.fakes.runware import FakeRunware
from tests.test_engine_fakes import FakeClock, FakeDelivery

#: Fast retries and polls (on the fake clock, so they cost no wall time anyway).
LIMITS = EngineLimits(retry_base=0.5, retry_cap=4.0, download_attempts=2)
POLLS = PollPolicy(first_min=0.1, first_max=1.0, step_max=1.0, ceiling=2.0)
#: The client's read timeout; a late answer waits a little longer than this.
READ_TIMEOUT = 0.25
LATE = 0.6


class SleepLog:
    """The transport's sleep: records each wait and returns at once."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)
        await asyncio.sleep(0)


@dataclass(frozen=True)
class Gateway:
    """What the suite needs to know about one gateway and its fake."""

    name: str
    fake: Callable[[], FakeGateway]
    build: Callable[..., Provider]
    create: dict[str, str]  # Fault filters matching a create call
    poll: dict[str, str]  # Fault filters matching a poll
    rate_limited: Any  # the gateway's 429 body
    unavailable: Any  # its 503 body
    idempotent: bool  # a repeated create names the same task (Runware's taskUUID)
    request: dict[str, Any] = field(default_factory=dict)
    has_audio: bool = True

    def settings(self, fake: FakeGateway, data_dir: Path) -> Settings:
        gateway: dict[str, Any] = {f"{self.name}_api_key": fake.api_key,
                                   f"{self.name}_base_url": fake.base_url}
        return Settings(
            _env_file=None, seedance_data_dir=data_dir, seedance_user_daily_credits=1000,
            seedance_guild_monthly_credits=100_000, seedance_private_hosts="127.0.0.1",
            **gateway,
        )

    def creates(self, fake: FakeGateway) -> list[Recorded]:
        return _matching(fake, self.create)

    def polls(self, fake: FakeGateway) -> list[Recorded]:
        return _matching(fake, self.poll)

    def tasks(self, fake: FakeGateway) -> int:
        """Tasks the gateway made (and would bill)."""
        return len(fake.tasks)


def _matching(fake: FakeGateway, filters: dict[str, str]) -> list[Recorded]:
    needle = filters.get("body_contains")
    return [
        r for r in fake.received(filters.get("method"), filters.get("path_prefix", ""))
        if needle is None or needle in repr(r.body)
    ]


GATEWAYS: dict[str, Gateway] = {
    "anyfast": Gateway(
        "anyfast", FakeAnyfast, anyfast.build,
        create={"method": "POST", "path_prefix": "/v1/video/generations"},
        poll={"method": "GET", "path_prefix": "/v1/video/generations/"},
        rate_limited={"code": "rate_limit_exceeded", "message": "upstream saturated, retry "
                      "later", "data": None},
        unavailable={"code": "service_unavailable", "message": "upstream busy", "data": None},
        idempotent=False,
    ),
    "runware": Gateway(
        "runware", FakeRunware, runware.build,
        create={"method": "POST", "path_prefix": "/v1", "body_contains": "videoInference"},
        poll={"method": "POST", "path_prefix": "/v1", "body_contains": "getResponse"},
        rate_limited={"errors": [{"code": "rateLimitExceeded", "message": "Too many requests."}]},
        unavailable={"errors": [{"code": "serviceUnavailable", "message": "Try again later."}]},
        idempotent=True,
    ),
    "magnific": Gateway(
        "magnific", FakeMagnific, magnific.build,
        create={"method": "POST", "path_prefix": "/v1/ai/video/seedance-2-mini-"},
        poll={"method": "GET", "path_prefix": "/v1/ai/video/seedance-2-mini/"},
        rate_limited={"message": "Too many requests"},
        unavailable={"message": "Service unavailable"},
        idempotent=False, request={"audio": False}, has_audio=False,
    ),
    "hiapi": Gateway(
        "hiapi", FakeHiAPI, hiapi.build,
        create={"method": "POST", "path_prefix": "/v1/tasks"},
        poll={"method": "GET", "path_prefix": "/v1/tasks/"},
        rate_limited={"code": 429, "message": "too many requests", "data": None,
                      "error_code": "RATE_LIMITED"},
        unavailable={"code": 503, "message": "service busy, retry later", "data": None,
                     "error_code": "SERVICE_UNAVAILABLE"},
        idempotent=False,
    ),
}


@dataclass
class Rig:
    """One gateway's fake, its real provider and the real engine around them."""

    gw: Gateway
    fake: Any  # the gateway's fake (its own switches)
    settings: Settings
    store: Store
    engine: Engine
    provider: Provider
    delivery: FakeDelivery
    clock: FakeClock
    sleeps: SleepLog

    async def run(self, **request: Any) -> JobView:
        """Enqueue one job, start the engine and wait until the job ends."""
        job = await self.enqueue(**request)
        await self.engine.start()
        async with asyncio.timeout(60):  # a hang guard, not a timing assertion
            return await self.engine.wait(job.id)

    async def enqueue(self, **request: Any) -> JobView:
        fields = {"prompt": "a lighthouse in a storm", "resolution": "480p", "duration": 5,
                  "ratio": "16:9", "provider": self.gw.name, **self.gw.request, **request}
        return await self.engine.enqueue(
            GenerationRequest(**fields), guild_id="g1", channel_id="c1", user_id="u1"
        )

    async def ledger(self, job_id: str) -> list[str]:
        return [line.kind for line in await self.store.ledger(job_id)]

    async def steps(self, job_id: str) -> list[tuple[str, float]]:
        return [(t.to_state, t.at) for t in await self.store.transitions(job_id)]


@asynccontextmanager
async def rig(gw: Gateway, data_dir: Path, *, limits: EngineLimits = LIMITS,
              downloader: Any = None) -> AsyncIterator[Rig]:
    async with gw.fake() as fake:
        settings = gw.settings(fake, data_dir)
        store = await Store.open(settings.database_path)
        sleeps = SleepLog()
        clock = FakeClock(start=time.time())
        api = httpx.AsyncClient(timeout=httpx.Timeout(5.0, read=READ_TIMEOUT))
        files = httpx.AsyncClient(timeout=5.0)
        provider = gw.build(settings, client=api, sleep=sleeps)
        delivery = FakeDelivery()
        engine = Engine(
            settings, store, delivery=delivery, providers={gw.name: provider}, http=files,
            limits=limits, clock=clock.now, sleep=clock.sleep, poll_policy=POLLS,
            downloader=downloader,
        )
        try:
            yield Rig(gw, fake, settings, store, engine, provider, delivery, clock, sleeps)
        finally:
            await engine.stop()
            await provider.aclose()
            await api.aclose()
            await files.aclose()
            await store.close()
