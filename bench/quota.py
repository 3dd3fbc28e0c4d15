"""quota: 10,000 concurrent reservations on SQLite or PostgreSQL, and the same race through
`Engine.enqueue`.

Each reservation is one transaction (`Store.create_job` with the guild's monthly check): an
IMMEDIATE SQLite transaction, or on PostgreSQL one from the pool that takes the check's
advisory lock (bot/store/database.py); the limit admits only half the demand. Figures:
reservations decided per second and the overspend (credits reserved beyond the limit), which
must be zero. The engine path adds the per-user queue cap and queue-position announcements
(coalesced since 3719e04; before that they cost O(queued²) per enqueue), so it runs its own
burst (ENGINE_ATTEMPTS).

    python -m bench.quota [--backend sqlite|postgres|both]

PostgreSQL is a throwaway local server (tests/pgserver.py, fsync off), a fresh database per race.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

from bench.common import Backend, backend_args, profile_costs, report
from bot.config import Settings
from bot.engine import Engine, EngineLimits, JobEvent, JobResult, QuotaExceeded
from bot.models import GenerationRequest
from bot.providers import create_provider
from bot.store import JobState, JobView, NewJob, QuotaLimitRow, Store, UsageCheck

ATTEMPTS = int(os.environ.get("QUOTA_ATTEMPTS", "10000"))
ENGINE_ATTEMPTS = int(os.environ.get("QUOTA_ENGINE_ATTEMPTS", "1000"))
#: QUOTA_PROFILE=1: one more store race under pyinstrument, for its top costs (bot/ frames).
PROFILE = bool(os.environ.get("QUOTA_PROFILE"))
USERS = 500
CREDITS_PER_JOB = 4  # 4 s of 480p


class NoDelivery:
    """The engine is never started here; nothing is delivered."""

    async def on_event(self, job: JobView, event: JobEvent) -> None:
        return None

    async def deliver(self, job: JobView, result: JobResult) -> str:
        raise AssertionError("not started")


def new_job(i: int, request: GenerationRequest) -> NewJob:
    return NewJob(id=str(uuid.uuid4()), guild_id="g1", channel_id="c", user_id=f"u{i % USERS}",
                  role_ids=(), request=request, provider="local", model=None,
                  state=JobState.QUEUED, credits_estimate=CREDITS_PER_JOB)


async def overspend(store: Store, limit: int) -> tuple[int, int]:
    reserved = sum(line.credits for line in await store.ledger() if line.kind == "reserve")
    return reserved, max(0, reserved - limit)


async def store_race(database: str, attempts: int) -> dict[str, float]:
    """`attempts` concurrent `Store.create_job` calls against a limit of half the demand."""
    limit = attempts * CREDITS_PER_JOB // 2
    store = await Store.open(database)
    check = UsageCheck("guild monthly", "g1", limit, since=0.0)
    req = GenerationRequest(prompt="a cat", resolution="480p", duration=4)

    async def one(i: int) -> bool:
        return await store.create_job(new_job(i, req), [check], now=time.time()) is None

    started = time.perf_counter()
    admitted = sum(await asyncio.gather(*(one(i) for i in range(attempts))))
    wall = time.perf_counter() - started
    reserved, over = await overspend(store, limit)
    await store.close()
    return {"attempts": attempts, "admitted": admitted, "reserved": reserved, "limit": limit,
            "wall_s": round(wall, 2), "per_second": round(attempts / wall, 1), "overspend": over}


async def engine_race(tmp: Path, database: str, attempts: int) -> dict[str, float]:
    """The same race through `Engine.enqueue` (limits resolved, queue positions announced)."""
    limit = attempts * CREDITS_PER_JOB // 2
    settings = Settings(seedance_data_dir=tmp)
    store = await Store.open(database)
    await store.set_quota_limit(QuotaLimitRow("guild", "g1", "", limit, "month"), now=0)
    await store.set_quota_limit(QuotaLimitRow("user", "g1", "", -1, "day"), now=0)
    async with httpx.AsyncClient() as http:
        engine = Engine(settings, store, delivery=NoDelivery(),
                        providers=lambda name: create_provider(name, settings),
                        http=http, limits=EngineLimits(user_queued=attempts))
        req = GenerationRequest(prompt="a cat", resolution="480p", duration=4)

        async def one(i: int) -> bool:
            try:
                await engine.enqueue(req, guild_id="g1", channel_id="c", user_id=f"u{i % USERS}")
            except QuotaExceeded:
                return False
            return True

        started = time.perf_counter()
        admitted = sum(await asyncio.gather(*(one(i) for i in range(attempts))))
        wall = time.perf_counter() - started
    reserved, over = await overspend(store, limit)
    await store.close()
    return {"attempts": attempts, "admitted": admitted, "reserved": reserved, "limit": limit,
            "wall_s": round(wall, 2), "per_second": round(attempts / wall, 1), "overspend": over}


async def main() -> None:
    args = backend_args(__doc__)
    rows: list[tuple[str, str, str]] = []
    details: dict[str, dict[str, Any]] = {}
    for name in args.backends:
        with Backend(name) as backend, tempfile.TemporaryDirectory() as a, \
                tempfile.TemporaryDirectory() as b:
            store = await store_race(backend.database(a), ATTEMPTS)
            engine = await engine_race(Path(b), backend.database(b), ENGINE_ATTEMPTS)
            details[name] = {"server": backend.version(), "store": store, "engine": engine}
            if PROFILE:
                from pyinstrument import Profiler

                profiler = Profiler(interval=0.001, async_mode="disabled")
                profiler.start()
                profiled = await store_race(backend.database(a), ATTEMPTS)
                profiler.stop()
                costs = profile_costs(profiler.last_session)
                details[name]["profiled_store"] = {**profiled, **costs}
                top = "; ".join(f"{c['where']} {c['share_of_busy']}"
                                for c in costs["top_costs"])
                rows.append((f"[{name}] store race under pyinstrument: top 3 costs (share of"
                             " busy samples)", f"{top} ({profiled['per_second']:.0f}/s profiled)",
                             "report"))
        rows += [
            (f"[{name}] store reservations per second ({ATTEMPTS} concurrent)",
             f"{store['per_second']:.0f}/s ({store['wall_s']:.1f} s)", "≥ 2000/s"),
            (f"[{name}] store overspend",
             f"{store['overspend']} credits ({store['admitted']} admitted)", "0"),
            (f"[{name}] engine enqueues per second ({ENGINE_ATTEMPTS} concurrent)",
             f"{engine['per_second']:.0f}/s", "report"),
            (f"[{name}] engine overspend",
             f"{engine['overspend']} credits ({engine['admitted']} admitted)", "0"),
        ]
    report("quota", rows, details)


if __name__ == "__main__":
    asyncio.run(main())
