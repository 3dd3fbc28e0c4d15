"""Limits people set: gateway concurrency (configuration), each server's running and waiting
caps and the per-minute rate (its settings), applied by the scheduler, the ETAs and admission."""

from __future__ import annotations

import asyncio
import random
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from bot.config import Settings, load_settings
from bot.engine import (
    Engine,
    EngineLimits,
    FairQueue,
    JobState,
    QueueFull,
    QuotaExceeded,
    RateLimited,
)
from bot.engine.caps import CapsReader, default_gateway_concurrency
from bot.engine.scheduler import Caps, estimate_finish
from bot.errors import ConfigError, Refusal
from bot.guild import GuildLimits
from bot.models import TaskState, TaskStatus
from bot.store import JobView, Store
from tests.fakes.common import FakeGateway
from tests.test_engine_fakes import FakeClock, FakeDelivery, FakeProvider, Outcome, request, until


# ---- SEEDANCE_GATEWAY_CONCURRENCY -------------------------------------------------------------
def test_gateway_concurrency_is_read_per_gateway() -> None:
    settings = load_settings(seedance_gateway_concurrency="runware=20, ANYFAST=8")
    assert settings.gateway_concurrency == {"runware": 20, "anyfast": 8}
    assert load_settings().gateway_concurrency == {}


@pytest.mark.parametrize("bad", ["runware", "runware=0", "runware=x", "fake=3", "hiapi=1001",
                                 "runware=2,=3"])
def test_a_bad_gateway_concurrency_is_one_line_naming_the_variable(bad: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(seedance_gateway_concurrency=bad)
    text = str(caught.value)
    assert text.startswith("SEEDANCE_GATEWAY_CONCURRENCY: use the form runware=20,anyfast=8")
    assert "\n" not in text and repr(bad) in text


async def test_gateways_not_named_keep_their_default(tmp_path: Path) -> None:
    from bot.providers.local import default_parallel_renders

    store = await Store.open(tmp_path / "db.sqlite3")
    try:
        settings = Settings(seedance_data_dir=tmp_path, seedance_gateway_concurrency="runware=20")
        caps = CapsReader(settings, EngineLimits(gateway_in_flight=3), store)
        assert caps.gateway("runware") == 20
        assert caps.gateway("anyfast") == 3  # the engine-wide default
        assert caps.gateway("local") == default_parallel_renders()
        assert default_gateway_concurrency() == {"local": default_parallel_renders()}
        named = CapsReader(Settings(seedance_gateway_concurrency="local=1"), EngineLimits(),
                           store)
        assert named.gateway("local") == 1  # the operator's word wins
    finally:
        await store.close()


# ---- per-server caps in the fair queue and the ETA simulation -----------------------------------
def job(seq: int, user: str, guild: str, **kw: Any) -> JobView:
    return JobView(id=f"j{seq}", guild_id=guild, channel_id="c", user_id=user, role_ids=(),
                   request=request(), provider=kw.pop("provider", "fake"), model=None,
                   state=kw.pop("state", JobState.QUEUED), seq=seq, **kw)


def test_each_server_runs_as_many_as_its_own_caps_allow() -> None:
    queued = [job(i, f"u{i % 4}", "big") for i in range(1, 9)]
    queued += [job(i, f"v{i % 4}", "small") for i in range(9, 17)]
    caps = Caps(EngineLimits(gateway_in_flight=100, guild_running=2, user_running=1),
                guilds={"big": GuildLimits(running=6, user_running=2)})
    picked = FairQueue().pick(queued, [], caps, now=0.0)
    by_guild = {g: [j for j in picked if j.guild_id == g] for g in ("big", "small")}
    assert len(by_guild["big"]) == 6 and len(by_guild["small"]) == 2
    per_user = {u: sum(j.user_id == u for j in by_guild["big"]) for u in ("u0", "u1", "u2")}
    assert max(per_user.values()) == 2  # its members may run two each; others one
    assert len({j.user_id for j in by_guild["small"]}) == 2


def test_gateway_caps_differ_per_gateway() -> None:
    queued = [job(i, f"u{i}", "g", provider="runware" if i % 2 else "anyfast")
              for i in range(1, 21)]
    caps = Caps(EngineLimits(gateway_in_flight=1, guild_running=100),
                gateways={"runware": 5}, guilds={"g": GuildLimits(running=100)})
    picked = FairQueue().pick(queued, [], caps, now=0.0)
    assert sum(j.provider == "runware" for j in picked) == 5
    assert sum(j.provider == "anyfast" for j in picked) == 1


def test_etas_follow_the_servers_own_running_cap() -> None:
    queued = [job(i, f"u{i}", "g") for i in range(1, 7)]
    ordered = FairQueue().order(queued)
    default = estimate_finish(ordered, [], EngineLimits(gateway_in_flight=10),
                              lambda _j: 60.0, 0.0)
    raised = estimate_finish(ordered, [], Caps(EngineLimits(gateway_in_flight=10),
                                               guilds={"g": GuildLimits(running=3)}),
                             lambda _j: 60.0, 0.0)
    assert sorted(default.values()) == [60, 60, 120, 120, 180, 180]
    assert sorted(raised.values()) == [60, 60, 60, 120, 120, 120]


# ---- through the engine ------------------------------------------------------------------------
class Rig:
    def __init__(self, settings: Settings, store: Store, files: FakeGateway,
                 http: httpx.AsyncClient) -> None:
        self.settings, self.store, self.files, self.http = settings, store, files, http
        self.clock = FakeClock()
        self.delivery = FakeDelivery()
        self.provider = FakeProvider(files)
        self.engines: list[Engine] = []

    def engine(self, limits: EngineLimits | None = None, **kw: Any) -> Engine:
        providers = kw.pop("providers", {"fake": self.provider})
        engine = Engine(kw.pop("settings", self.settings), self.store, delivery=self.delivery,
                        providers=providers, http=self.http,
                        limits=limits or EngineLimits(retry_base=1.0), clock=self.clock.now,
                        sleep=self.clock.sleep, **kw)
        self.engines.append(engine)
        return engine

    async def set_limits(self, guild: str, **limits: int | None) -> None:
        await self.store.update_guild_settings(
            guild, lambda s: s.changed(limits=GuildLimits(**limits)))


@pytest.fixture
async def rig(data_dir: Path) -> AsyncIterator[Rig]:
    settings = Settings(seedance_data_dir=data_dir, seedance_user_daily_credits=10**6,
                        seedance_guild_monthly_credits=10**7, seedance_private_hosts="127.0.0.1")
    store = await Store.open(settings.database_path)
    async with FakeGateway() as files, httpx.AsyncClient() as http:
        r = Rig(settings, store, files, http)
        yield r
        for engine in r.engines:
            await engine.stop()
    await store.close()


async def add(engine: Engine, user: str, guild: str = "g1", **kw: Any) -> str:
    made = await engine.enqueue(request(**kw.pop("req", {})), guild_id=guild, channel_id="c",
                                user_id=user, **kw)
    return made.id


async def test_a_servers_running_cap_applies_at_the_next_pass(rig: Rig) -> None:
    rig.provider.script = lambda _r: Outcome(polls=10**6)
    rig.clock.block_from = 0.5  # polls wait "forever": started jobs stay running
    engine = rig.engine(EngineLimits(gateway_in_flight=50, user_queued=20))
    await rig.set_limits("g1", running=4)
    for i in range(12):
        await add(engine, f"u{i}")
    await engine.start()

    async def running(n: int) -> bool:
        return len(await rig.store.jobs([JobState.SUBMITTING, JobState.GENERATING])) == n

    await until(lambda: running(4))
    await rig.set_limits("g1", running=7)  # an admin raises it; the next pass applies it
    first = (await rig.store.jobs([JobState.GENERATING]))[0]
    await engine.cancel(first.id, first.user_id)  # anything that wakes the scheduler
    await until(lambda: running(7))
    for _ in range(20):
        await asyncio.sleep(0.001)
    assert await running(7)


async def test_queue_etas_use_the_servers_caps(rig: Rig) -> None:
    rig.provider.script = lambda _r: Outcome(polls=10**6)
    rig.provider.typical = 60.0
    rig.clock.block_from = 0.5
    engine = rig.engine(EngineLimits(gateway_in_flight=1, announce_interval=0.0))
    await rig.set_limits("g1", running=3)
    ids = [await add(engine, f"u{i}") for i in range(4)]
    entries = {e.job.id: e for e in await engine.queue("g1")}
    # One gateway slot binds here: 60 s apart, whatever the server allows.
    assert [entries[i].eta for i in ids] == [60, 120, 180, 240]
    wide = rig.engine(EngineLimits(gateway_in_flight=10, announce_interval=0.0))
    entries = {e.job.id: e for e in await wide.queue("g1")}
    assert [entries[i].eta for i in ids] == [60, 60, 60, 120]  # three at once on this server


async def test_the_members_and_the_servers_waiting_caps_come_from_its_settings(
    rig: Rig,
) -> None:
    engine = rig.engine(EngineLimits(user_queued=5))
    await rig.set_limits("g1", user_queued=2, queued=3)
    await add(engine, "a")
    await add(engine, "a")
    with pytest.raises(QueueFull) as mine:
        await add(engine, "a")
    assert mine.value.scope == "user" and mine.value.limit == 2
    assert str(mine.value) == ("You already have 2 videos waiting; wait for one to start or "
                               "cancel one first. Nothing was spent.")
    await add(engine, "b")
    with pytest.raises(QueueFull) as full:
        await add(engine, "c")
    assert full.value.scope == "server" and full.value.waiting == 3
    assert str(full.value).startswith("This server already has 3 videos waiting;")
    await add(engine, "c", guild="g2")  # another server, the engine's defaults
    assert len(await rig.store.jobs(guild_id="g1")) == 3
    assert len(await rig.store.ledger()) == 4  # nothing was reserved for the refusals


async def test_unset_caps_fall_back_to_the_engine_defaults(rig: Rig) -> None:
    engine = rig.engine(EngineLimits(user_queued=2))
    await add(engine, "a")
    await add(engine, "a")
    with pytest.raises(QueueFull):
        await add(engine, "a")


async def test_the_per_minute_rate_uses_the_engine_clock(rig: Rig) -> None:
    engine = rig.engine(EngineLimits(user_queued=50))
    await add(engine, "a", per_minute=2)
    rig.clock.t += 30
    await add(engine, "a", per_minute=2)
    with pytest.raises(RateLimited) as caught:
        await add(engine, "a", per_minute=2)
    assert caught.value.per_minute == 2
    assert str(caught.value) == ("You can start 2 videos per minute on this server; try again "
                                 "in a minute. Nothing was spent.")
    await add(engine, "b", per_minute=2)  # another member
    await add(engine, "a", per_minute=0)  # 0 (or None): no rate
    rig.clock.t += 31  # the first is now more than a minute old; the second and third are not
    with pytest.raises(RateLimited):
        await add(engine, "a", per_minute=2)
    await add(engine, "a", per_minute=3)
    assert str(RateLimited(1)).startswith("You can start 1 video per minute")


async def test_concurrent_enqueues_cannot_overfill_a_members_queue(rig: Rig) -> None:
    engine = rig.engine(EngineLimits(user_queued=5))

    async def one() -> bool:
        try:
            await add(engine, "a")
        except QueueFull:
            return False
        return True

    accepted = await asyncio.gather(*(one() for _ in range(40)))
    assert sum(accepted) == 5
    assert len(await rig.store.jobs(user_id="a")) == 5


async def test_quota_is_checked_before_the_queue_caps(rig: Rig, data_dir: Path) -> None:
    settings = Settings(seedance_data_dir=data_dir, seedance_user_daily_credits=5,
                        seedance_private_hosts="127.0.0.1")
    engine = rig.engine(EngineLimits(user_queued=1), settings=settings)
    await add(engine, "a")
    with pytest.raises(QuotaExceeded):  # out of credits and out of places: credits first
        await add(engine, "a")


def test_every_refusal_is_a_refusal_and_exported() -> None:
    import bot.engine

    for refusal in (QuotaExceeded, QueueFull, RateLimited):
        assert issubclass(refusal, Refusal)
        assert refusal.__name__ in bot.engine.__all__


# ---- an event: 300 entries on one gateway, drained at the configured concurrency ---------------
async def test_a_300_entry_event_is_drained_at_the_gateway_concurrency(
    rig: Rig, data_dir: Path,
) -> None:
    """300 jobs from twelve members of one server (its running cap raised) on one gateway whose
    tasks take a while: each runs until the test finishes it, a few at a time, whenever the
    scheduler has settled. The configured 20 are in flight at once, never more."""
    concurrency = 20
    settings = Settings(seedance_data_dir=data_dir, seedance_user_daily_credits=10**6,
                        seedance_guild_monthly_credits=10**7, seedance_private_hosts="127.0.0.1",
                        seedance_gateway_concurrency=f"runware={concurrency}")
    gateway = FakeProvider(rig.files, name="runware")
    gateway.script = lambda _r: Outcome(polls=10**6)  # done only when the test says so
    rig.clock.block_from = 0.5  # polls wait "forever": a task ends by its callback
    # Every change of a job's state, inside its own transaction, records how many are in flight.
    with sqlite3.connect(settings.database_path) as conn:
        conn.executescript("""
            CREATE TABLE test_in_flight (n INTEGER NOT NULL);
            CREATE TRIGGER test_count_in_flight AFTER UPDATE OF state ON jobs BEGIN
                INSERT INTO test_in_flight SELECT COUNT(*) FROM jobs
                WHERE state IN ('submitting', 'generating');
            END;
        """)
    engine = rig.engine(EngineLimits(retry_base=1.0, announce_interval=5.0), settings=settings,
                        providers={"runware": gateway})
    await rig.set_limits("event", running=60, user_running=5, user_queued=30)
    ids = [await add(engine, f"member{i % 12}", guild="event", req={"provider": "runware"})
           for i in range(300)]
    await engine.start()
    rng = random.Random(300)
    finished: set[str] = set()
    while len(finished) < len(ids):
        expected = min(concurrency, len(ids) - len(finished))

        async def settled(expected: int = expected) -> bool:
            # Settled: the finished ones have left and their slots are taken again.
            generating = await rig.store.jobs([JobState.GENERATING])
            return len(generating) == expected and not finished & {j.id for j in generating}

        await until(settled, tries=20000)  # a loaded machine settles slower
        generating = await rig.store.jobs([JobState.GENERATING])
        for job in rng.sample(generating, min(len(generating), rng.randint(1, 8))):
            task = gateway.tasks[job.task_id or ""]
            await engine.on_callback(job.id, TaskState(
                task_id=task.task_id, status=TaskStatus.SUCCEEDED,
                result=gateway.result_for(task)))
            finished.add(job.id)
    done = [await engine.wait(job_id) for job_id in ids]

    assert all(j.state is JobState.DELIVERED for j in done)
    assert len(rig.delivery.posts) == 300
    with sqlite3.connect(settings.database_path) as conn:
        samples = [n for (n,) in conn.execute("SELECT n FROM test_in_flight")]
    assert len(samples) >= 300 * 5  # started, created, result ready, ready, delivered
    assert max(samples) == concurrency
