"""The rig of the fleet tests: several real gateway modules, each against its aiohttp fake, one
real Engine over a real store (SQLite or PostgreSQL) with the failover list, a fake clock for
the engine's waits and a delivery port that records every status event.

Which job a gateway's task belongs to is read from the task's own body: every prompt here
carries a `fleetjob-<n>` tag, so "one task per job, at the gateway that finished it" is a fact
about what each fake made (and would bill), not about what the engine says.
"""

from __future__ import annotations

import json
import re
import time
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from bot.config import Settings
from bot.engine import Engine, EngineLimits, JobView
from bot.engine.fleet import FleetPolicy
from bot.models import GenerationRequest
from bot.store import Store
from tests.chaos.faults_helpers import GATEWAYS, POLLS, SleepLog
from tests.fakes.common import FakeGateway
from tests.test_engine_fakes import FakeClock, FakeDelivery

LIMITS = EngineLimits(retry_base=0.5, retry_cap=4.0, download_attempts=2, submit_retries=2,
                      user_running=50, guild_running=50, user_queued=500)
#: Circuits that cool down at once (the database's clock is real): tests that want an open
#: circuit to stay open set a long cool-down.
POLICY = FleetPolicy(failures=3, cooldown=0.0, probe_ttl=30.0, wait=3600.0, recheck=5.0,
                     spacing=0.0)
TAG = re.compile(r"fleetjob-\d+")


@dataclass
class FleetRig:
    names: tuple[str, ...]
    fakes: dict[str, Any]
    settings: Settings
    store: Store
    engine: Engine
    delivery: FakeDelivery
    clock: FakeClock

    async def enqueue(self, n: int = 0, *, gateways: Sequence[str] | None = None,
                      **request: Any) -> JobView:
        order = list(self.names if gateways is None else gateways)
        fields = {"prompt": f"fleetjob-{n} a lighthouse in a storm", "resolution": "480p",
                  "duration": 5, "ratio": "16:9", "provider": order[0], **request}
        return await self.engine.enqueue(
            GenerationRequest(**fields), guild_id="g1", channel_id="c1", user_id=f"u{n % 7}",
            gateways=order)

    def creates(self, name: str) -> int:
        """Create calls the gateway received (refused ones included)."""
        return len(GATEWAYS[name].creates(self.fakes[name]))

    def tasks_by_job(self) -> dict[str, Counter[str]]:
        """For each gateway, how many tasks it made per prompt tag."""
        found: dict[str, Counter[str]] = {}
        for name, fake in self.fakes.items():
            tags: Counter[str] = Counter()
            for task in fake.tasks.values():
                tags.update(set(TAG.findall(json.dumps(task.body))))
            found[name] = tags
        return found

    def reasons(self, job_id: str) -> list[str]:
        return [e.reason or "" for j, e in self.delivery.events if j == job_id and e.reason]


def unavailable(fake: FakeGateway, name: str, *, times: int = 1) -> None:
    """The gateway's next creates answer 503 (it took no work)."""
    gw = GATEWAYS[name]
    fake.fail_next(503, gw.unavailable, times=times, **gw.create)


def rate_limited(fake: FakeGateway, name: str, *, times: int = 1) -> None:
    gw = GATEWAYS[name]
    fake.fail_next(429, gw.rate_limited, times=times, **gw.create)


@asynccontextmanager
async def fleet_rig(data_dir: Path, names: Sequence[str] = ("hiapi", "runware", "anyfast"), *,
                    store_url: str | None = None, limits: EngineLimits = LIMITS,
                    policy: FleetPolicy = POLICY, concurrency: str = "",
                    start: bool = True, read_timeout: float = 10.0) -> AsyncIterator[FleetRig]:
    async with AsyncExitStack() as stack:
        fakes: dict[str, Any] = {}
        keys: dict[str, Any] = {}
        for name in names:
            fakes[name] = await stack.enter_async_context(GATEWAYS[name].fake())
            keys[f"{name}_api_key"] = fakes[name].api_key
            keys[f"{name}_base_url"] = fakes[name].base_url
        settings = Settings(
            _env_file=None, seedance_data_dir=data_dir, seedance_user_daily_credits=10**6,
            seedance_guild_monthly_credits=10**7, seedance_private_hosts="127.0.0.1",
            seedance_providers=",".join(names), seedance_gateway_concurrency=concurrency,
            **keys)
        store = await Store.open(store_url or settings.database_path)
        stack.push_async_callback(store.close)
        api = httpx.AsyncClient(timeout=httpx.Timeout(10.0, read=read_timeout))
        stack.push_async_callback(api.aclose)
        files = httpx.AsyncClient(timeout=10.0)
        stack.push_async_callback(files.aclose)
        sleeps = SleepLog()
        providers = {n: GATEWAYS[n].build(settings, client=api, sleep=sleeps) for n in names}
        for provider in providers.values():
            stack.push_async_callback(provider.aclose)
        clock = FakeClock(start=time.time())
        delivery = FakeDelivery()
        engine = Engine(settings, store, delivery=delivery, providers=providers, http=files,
                        limits=limits, clock=clock.now, sleep=clock.sleep, poll_policy=POLLS)
        engine.fleet.policy = policy
        stack.push_async_callback(engine.stop)
        rig = FleetRig(tuple(names), fakes, settings, store, engine, delivery, clock)
        if start:
            await engine.start()
        yield rig
