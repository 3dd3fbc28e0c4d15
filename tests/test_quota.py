"""Credits: prices, UTC windows, limit precedence, atomic reservation, balanced ledger."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.config import Settings
from bot.engine import Engine, EngineLimits, JobState, QuotaExceeded, window_bounds
from bot.engine.quota import resolve_limits
from bot.errors import RealFaceError, TaskFailedError
from bot.pricing import credits_for
from bot.store import NewJob, QuotaLimitRow, Store, UsageCheck
from tests.fakes.common import FakeGateway
from tests.test_engine_fakes import (
    FakeClock,
    FakeDelivery,
    FakeProvider,
    Outcome,
    request,
    wait_for_state,
)


def ts(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


# ---- prices and windows -----------------------------------------------------------------------
def test_prices_follow_the_design_table() -> None:
    assert credits_for(request(resolution="480p", duration=5)) == 5
    assert credits_for(request(resolution="720p", duration=10)) == 20
    assert credits_for(request(resolution="1080p", duration=4)) == 16
    assert credits_for(request(resolution="720p", duration=5), {"480p": 1, "720p": 3}) == 15
    with pytest.raises(ValueError, match="1080p"):
        credits_for(request(resolution="1080p"), {"480p": 1})


def test_each_result_of_a_task_is_charged() -> None:
    # A task asked for three videos renders (and is billed by the gateway for) three.
    assert credits_for(request(resolution="480p", duration=5, results=3)) == 15
    assert credits_for(request(resolution="720p", duration=4, results=2)) == 16


def test_settings_price_table_is_used() -> None:
    prices = Settings(seedance_prices="720p=5").prices
    assert credits_for(request(resolution="720p", duration=4), prices) == 20


@pytest.mark.parametrize(
    ("now", "window", "start", "reset"),
    [
        ("2026-03-14 23:59:59", "day", "2026-03-14 00:00:00", "2026-03-15 00:00:00"),
        ("2026-03-15 00:00:00", "day", "2026-03-15 00:00:00", "2026-03-16 00:00:00"),
        ("2026-12-31 12:00:00", "month", "2026-12-01 00:00:00", "2027-01-01 00:00:00"),
        ("2028-02-29 08:00:00", "month", "2028-02-01 00:00:00", "2028-03-01 00:00:00"),
    ],
)
def test_windows_are_utc_calendar_periods(now: str, window: str, start: str, reset: str) -> None:
    assert window_bounds(window, ts(now)) == (ts(start), ts(reset))


def test_event_window_never_resets() -> None:
    assert window_bounds("event", ts("2026-01-01 00:00:00")) == (0.0, None)
    with pytest.raises(ValueError):
        window_bounds("week", 0.0)


def test_limit_precedence() -> None:
    rows = [
        QuotaLimitRow("user", "g", "", 20, "day"),
        QuotaLimitRow("role", "g", "vip", 100, "day"),
        QuotaLimitRow("role", "g", "helper", 50, "day"),
        QuotaLimitRow("role", "g", "staff", -1, "month"),
        QuotaLimitRow("user", "g", "special", 7, "month"),
        QuotaLimitRow("guild", "g", "", 999, "month"),
        QuotaLimitRow("event", "g", "jam", 30, "event"),
    ]

    def limits(user: str, roles: list[str], event: str | None = None) -> tuple[object, ...]:
        a = resolve_limits(rows, user_id=user, role_ids=roles, event_id=event,
                           default_user_daily=60, default_guild_monthly=3000)
        return a.user_limit, a.user_window, a.guild_limit, a.event_limit

    assert limits("plain", []) == (20, "day", 999, None)  # the guild's default user row
    assert limits("plain", ["helper", "vip"]) == (100, "day", 999, None)  # most generous role
    assert limits("plain", ["vip", "staff"]) == (-1, "month", 999, None)  # unlimited wins
    assert limits("special", ["vip"]) == (7, "month", 999, None)  # the user's own row first
    assert limits("plain", [], "jam") == (20, "day", 999, 30)
    bare = resolve_limits([], user_id="u", role_ids=[], event_id=None,
                          default_user_daily=60, default_guild_monthly=3000)
    assert (bare.user_limit, bare.guild_limit) == (60, 3000)


# ---- through the engine -----------------------------------------------------------------------
class Rig:
    def __init__(self, settings: Settings, store: Store, files: FakeGateway,
                 http: httpx.AsyncClient) -> None:
        self.settings, self.store = settings, store
        self.clock = FakeClock(ts("2026-03-14 12:00:00"))
        self.provider = FakeProvider(files)
        self.delivery = FakeDelivery()
        self.engine = Engine(settings, store, delivery=self.delivery,
                             providers={"fake": self.provider}, http=http,
                             limits=EngineLimits(user_queued=2000, retry_base=1.0),
                             clock=self.clock.now, sleep=self.clock.sleep)


@pytest.fixture
async def rig(data_dir: Path, store_url: str) -> AsyncIterator[Rig]:
    settings = Settings(seedance_data_dir=data_dir, seedance_user_daily_credits=10,
                        seedance_guild_monthly_credits=25, seedance_private_hosts="127.0.0.1")
    store = await Store.open(store_url)
    async with FakeGateway() as files, httpx.AsyncClient() as http:
        r = Rig(settings, store, files, http)
        yield r
        await r.engine.stop()
    await store.close()


async def add(rig: Rig, user: str = "u1", **kw: object) -> str:
    job = await rig.engine.enqueue(request(), guild_id="g1", channel_id="c", user_id=user,
                                   **kw)  # type: ignore[arg-type]
    return job.id


async def test_user_daily_limit_and_reset_at_utc_midnight(rig: Rig) -> None:
    await add(rig)
    await add(rig)
    with pytest.raises(QuotaExceeded) as caught:
        await add(rig)
    exc = caught.value
    assert exc.left == 0 and exc.needed == 5 and exc.window.name == "user"
    assert exc.resets_at == ts("2026-03-15 00:00:00")
    assert "10 of 10 used" in str(exc) and "2026-03-15 00:00 UTC" in str(exc)
    assert len(await rig.store.jobs()) == 2  # nothing written for the refused one

    status = await rig.engine.remaining("u1", "g1")
    user = status.window("user")
    assert user is not None and (user.used, user.limit, user.left) == (10, 10, 0)
    assert status.left == 0 and status.resets_at == ts("2026-03-15 00:00:00")

    rig.clock.t = ts("2026-03-15 00:00:00")
    await add(rig)  # a new UTC day
    assert (await rig.engine.remaining("u1", "g1")).window("user").used == 5  # type: ignore[union-attr]


async def test_guild_monthly_limit_spans_users(rig: Rig) -> None:
    for user in ("a", "a", "b", "b", "c"):
        await add(rig, user)
    with pytest.raises(QuotaExceeded) as caught:
        await add(rig, "d")
    assert caught.value.window.name == "guild"
    assert caught.value.resets_at == ts("2026-04-01 00:00:00")
    guild = (await rig.engine.remaining("d", "g1")).window("guild")
    assert guild is not None and (guild.used, guild.left) == (25, 0)


async def test_role_override_and_release_on_cancel(rig: Rig) -> None:
    await rig.store.set_quota_limit(QuotaLimitRow("role", "g1", "vip", 15, "day"), now=0)
    await add(rig, role_ids=["vip"])
    await add(rig, role_ids=["vip"])
    last = await add(rig, role_ids=["vip"])
    with pytest.raises(QuotaExceeded):
        await add(rig, role_ids=["vip"])
    assert "returned" in await rig.engine.cancel(last, "u1")
    await add(rig, role_ids=["vip"])  # the cancelled job's credits came back


async def test_event_limit_caps_each_user_in_the_event(rig: Rig) -> None:
    await rig.store.set_quota_limit(QuotaLimitRow("event", "g1", "jam", 5, "event"), now=0)
    await add(rig, event_id="jam")
    with pytest.raises(QuotaExceeded) as caught:
        await add(rig, event_id="jam")
    assert caught.value.window.name == "event" and caught.value.resets_at is None
    daily = (await rig.engine.remaining("u1", "g1")).window("user")
    assert daily is not None and daily.used == 0  # event credits are separate from daily ones
    await add(rig)  # outside the event only the daily limit applies
    inside = await rig.engine.remaining("u1", "g1", event_id="jam")
    assert inside.window("user") is None and inside.window("event").used == 5  # type: ignore[union-attr]


async def test_operator_jobs_may_skip_limits_but_are_booked(rig: Rig) -> None:
    for _ in range(4):
        await add(rig, enforce_quota=False)
    assert (await rig.engine.remaining("u1", "g1")).window("user").used == 20  # type: ignore[union-attr]


async def test_ledger_balances_after_a_mix_of_outcomes(rig: Rig, data_dir: Path) -> None:
    rig.settings = Settings(seedance_data_dir=data_dir, seedance_user_daily_credits=1000,
                            seedance_guild_monthly_credits=100000,
                            seedance_private_hosts="127.0.0.1")
    rig.engine.settings = rig.settings

    def script(req: object) -> Outcome:
        prompt = getattr(req, "prompt", "")
        if "face" in prompt:
            return Outcome(error=RealFaceError("real person"))
        if "billed" in prompt:
            return Outcome(error=TaskFailedError("boom", refunded=False))
        if "slow" in prompt:
            return Outcome(hang=True)
        return Outcome()

    rig.provider.script = script
    rig.provider.typical = 10.0
    engine = rig.engine
    ids: list[str] = []
    for i, prompt in enumerate(["ok", "face", "billed", "ok", "slow", "ok", "face"]):
        job = await engine.enqueue(request(prompt), guild_id="g1", channel_id="c",
                                   user_id=f"u{i % 3}")
        ids.append(job.id)
    queued = await engine.enqueue(request("never"), guild_id="g1", channel_id="c", user_id="u9",
                                  needs_approval=True)
    await engine.start()
    for job_id in ids:
        if (await rig.store.get_job(job_id)).request.prompt != "slow":  # type: ignore[union-attr]
            await engine.wait(job_id)
    slow = ids[4]
    await wait_for_state(rig.store, slow, "generating")
    await engine.cancel(slow, "u1")
    await engine.reject(queued.id, "mod", "no")

    ledger = await rig.store.ledger()
    jobs = {j.id: j for j in await rig.store.jobs()}
    assert all(j.terminal for j in jobs.values())
    for job_id, job in jobs.items():
        lines = [ln for ln in ledger if ln.job_id == job_id]
        kinds = sorted(ln.kind for ln in lines)
        assert kinds in (["commit", "reserve"], ["release", "reserve"]), (job.state, kinds)
        assert len({ln.credits for ln in lines}) == 1
        charged = sum(ln.credits for ln in lines if ln.kind == "commit")
        assert job.credits_charged == charged
    committed = sum(ln.credits for ln in ledger if ln.kind == "commit")
    delivered = sum(j.credits_estimate for j in jobs.values() if j.state is JobState.DELIVERED)
    assert committed == delivered + 5  # plus the one failure the gateway did not refund
    for user in {j.user_id for j in jobs.values()}:
        used = await rig.store.usage(UsageCheck("user", "g1", -1, 0.0, user_id=user))
        assert used == sum(ln.credits for ln in ledger if ln.user_id == user and
                           ln.kind == "commit")


# ---- concurrency ------------------------------------------------------------------------------
def _new_job(user: str, credits: int) -> NewJob:
    return NewJob(id=str(uuid.uuid4()), guild_id="g", channel_id="c", user_id=user, role_ids=(),
                  request=request(), provider="fake", model=None, state=JobState.QUEUED,
                  credits_estimate=credits)


async def _race(url: str, limit: int, costs: list[int], connections: int) -> None:
    stores = [await Store.open(url) for _ in range(connections)]
    try:
        check = UsageCheck("guild", "g", limit, 0.0)

        async def reserve(i: int, cost: int) -> bool:
            store = stores[i % connections]
            return await store.create_job(_new_job(f"u{i % 7}", cost), [check], now=1.0) is None

        accepted = await asyncio.gather(*(reserve(i, c) for i, c in enumerate(costs)))
        spent = sum(c for c, ok in zip(costs, accepted, strict=True) if ok)
        assert spent <= limit
        assert await stores[0].usage(check) == spent
        # Refusals were real: each refused cost no longer fitted when it was refused.
        smallest_refused = min((c for c, ok in zip(costs, accepted, strict=True) if not ok),
                               default=None)
        if smallest_refused is not None:
            assert spent + smallest_refused > limit
        lines = await stores[0].ledger()
        assert len(lines) == sum(accepted) and {ln.kind for ln in lines} <= {"reserve"}
    finally:
        for store in stores:
            await store.close()


# Each example gets a fresh database of the backend under test (`more_store_urls`), so the
# fixture being function-scoped is harmless.
@settings(max_examples=6, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(
    limit=st.integers(min_value=0, max_value=60),
    costs=st.lists(st.integers(min_value=1, max_value=12), min_size=20, max_size=120),
    connections=st.integers(min_value=1, max_value=3),
)
def test_concurrent_reservations_never_overspend(
    more_store_urls: Callable[[], str], limit: int, costs: list[int], connections: int
) -> None:
    asyncio.run(_race(more_store_urls(), limit, costs, connections))


async def test_a_thousand_concurrent_enqueues_against_a_small_limit(rig: Rig) -> None:
    await rig.store.set_quota_limit(QuotaLimitRow("guild", "g1", "", 37, "month"), now=0)
    await rig.store.set_quota_limit(QuotaLimitRow("user", "g1", "", -1, "day"), now=0)

    async def try_one(i: int) -> bool:
        try:
            await rig.engine.enqueue(request(duration=4 + i % 3), guild_id="g1", channel_id="c",
                                     user_id=f"u{i % 50}")
        except QuotaExceeded:
            return False
        return True

    results = await asyncio.gather(*(try_one(i) for i in range(1000)))
    jobs = await rig.store.jobs()
    spent = sum(j.credits_estimate for j in jobs)
    assert len(jobs) == sum(results)
    assert spent <= 37 and spent > 37 - 4  # full up to less than the cheapest job
    guild = (await rig.engine.remaining("u1", "g1")).window("guild")
    assert guild is not None and guild.used == spent
