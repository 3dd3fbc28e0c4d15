"""Issue 14, items 1–3: failover between gateways, circuit breakers, adaptive concurrency.

The engine cases drive the real Engine with the real gateway modules against their aiohttp
fakes (tests/fleet_helpers.py) on both store backends; what each fake received and made is
the evidence (creates, tasks per job), with the ledger and the job's row.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from pathlib import Path

import pytest

from bot.config import Settings, load_settings
from bot.engine import JobState, JobView
from bot.engine.fleet import FleetPolicy, foreign_callback, provably_no_task, throttles
from bot.errors import (
    ConfigError,
    GatewayUnavailableError,
    InsufficientBalanceError,
    RateLimitError,
)
from bot.guild import GuildSettings
from bot.intake import RequestOptions
from bot.models import GenerationRequest, SafetyCheck, TaskState, TaskStatus
from bot.providers import ProviderRegistry
from bot.service.failover import failover_order, fleet_for
from bot.store import Store
from bot.store.records import QueuedRow
from cogs.utils.texts import status_text
from tests.chaos.faults_helpers import GATEWAYS
from tests.fleet_helpers import POLICY, FleetRig, fleet_rig, rate_limited, unavailable

pytestmark = pytest.mark.timeout(120)


async def finished(r: FleetRig, job: JobView) -> JobView:
    async with asyncio.timeout(60):  # a hang guard, not a timing assertion
        return await r.engine.wait(job.id)


async def ledger(r: FleetRig, job: JobView) -> list[str]:
    return [line.kind for line in await r.store.ledger(job.id)]


async def health(r: FleetRig, name: str) -> tuple[str, int | None, str | None]:
    found = {h.provider: h for h in await r.engine.fleet.health()}[name]
    return found.circuit, found.effective, found.last_error


# ---- failover ------------------------------------------------------------------------------

async def test_a_503ing_gateway_hands_the_job_to_the_next_charged_once(
        tmp_path: Path, store_url: str) -> None:
    async with fleet_rig(tmp_path, ("hiapi", "runware"), store_url=store_url) as r:
        unavailable(r.fakes["hiapi"], "hiapi", times=100)
        done = await finished(r, await r.enqueue(1))

        assert done.state is JobState.DELIVERED, done.error_message
        assert done.provider == "runware" and done.request.provider == "runware"
        assert r.delivery.post_count[done.id] == 1
        # HiAPI made nothing; Runware made exactly this job's one task.
        assert r.tasks_by_job() == {"hiapi": Counter(), "runware": Counter({"fleetjob-1": 1})}
        assert r.creates("hiapi") == POLICY.failures  # its circuit opened at the third
        assert await ledger(r, done) == ["reserve", "commit"]
        assert done.credits_charged == done.credits_estimate
        # The row and the status both say which gateway and why.
        move = done.fleet["moves"][-1]
        assert (move["from"], move["to"]) == ("hiapi", "runware")
        said = " ".join(r.reasons(done.id))
        assert "moved to runware" in said and "503" in said and "hiapi" in said
        card = status_text(done)  # the member's status message, as the Discord layer shows it
        assert "moved from hiapi to runware" in card and "503" in card
        circuit, _effective, error = await health(r, "hiapi")
        assert circuit == "open" and error is not None and "503" in error
        # What /seedance-admin status shows: every gateway of the list, with its ceiling.
        assert await health(r, "runware") == ("closed", 4, None)
        assert "key-123456" not in said + (error or "")


async def test_a_move_drops_the_options_only_the_first_gateway_takes(
        tmp_path: Path, store_url: str) -> None:
    """Runware's quality and safety check, chosen for it, are not sent to HiAPI after a move:
    HiAPI's table has neither, and its create would be refused for them."""
    async with fleet_rig(tmp_path, ("runware", "hiapi"), store_url=store_url) as r:
        unavailable(r.fakes["runware"], "runware", times=100)
        done = await finished(r, await r.enqueue(
            2, output_quality=80, safety=SafetyCheck.KEY_FRAMES))

        assert done.state is JobState.DELIVERED, done.error_message
        assert done.provider == "hiapi"
        assert done.request.output_quality is None and done.request.safety is None
        assert r.tasks_by_job()["hiapi"] == Counter({"fleetjob-2": 1})


async def test_balance_exhausted_moves_at_once(tmp_path: Path, store_url: str) -> None:
    async with fleet_rig(tmp_path, ("anyfast", "hiapi"), store_url=store_url) as r:
        r.fakes["anyfast"].fail_next(
            403, {"code": "insufficient_user_quota", "message": "user quota is not enough",
                  "data": None}, **GATEWAYS["anyfast"].create)
        done = await finished(r, await r.enqueue(2))

        assert done.state is JobState.DELIVERED, done.error_message
        assert done.provider == "hiapi"
        assert r.creates("anyfast") == 1  # no retry of a refused balance
        assert r.tasks_by_job() == {"anyfast": Counter(), "hiapi": Counter({"fleetjob-2": 1})}
        assert await ledger(r, done) == ["reserve", "commit"]
        assert any("moved to hiapi" in why for why in r.reasons(done.id))
        # An empty account refuses every create: its circuit opened at once.
        assert (await health(r, "anyfast"))[0] == "open"


async def test_a_500_on_create_never_moves(tmp_path: Path, store_url: str) -> None:
    """The create may have made a task at HiAPI: another gateway must not make a second."""
    async with fleet_rig(tmp_path, ("hiapi", "runware"), store_url=store_url) as r:
        r.fakes["hiapi"].fail_next(500, {"code": 500, "message": "internal error", "data": None,
                                         "error_code": "INTERNAL"}, **GATEWAYS["hiapi"].create)
        done = await finished(r, await r.enqueue(3))

        assert done.state is JobState.FAILED
        assert done.provider == "hiapi"
        assert r.creates("runware") == 0
        assert await ledger(r, done) == ["reserve", "release"]


async def test_a_500_at_an_idempotent_gateway_retries_there(tmp_path: Path,
                                                            store_url: str) -> None:
    """Runware dedupes creates by taskUUID: the job tries Runware again, and stays there."""
    async with fleet_rig(tmp_path, ("runware", "hiapi"), store_url=store_url) as r:
        r.fakes["runware"].fail_next(500, {"errors": [{"code": "internalError",
                                                       "message": "boom"}]},
                                     **GATEWAYS["runware"].create)
        done = await finished(r, await r.enqueue(4))

        assert done.state is JobState.DELIVERED, done.error_message
        assert done.provider == "runware"
        assert r.creates("hiapi") == 0
        assert r.tasks_by_job()["runware"] == Counter({"fleetjob-4": 1})


async def test_a_lost_answer_binds_the_job_to_its_gateway(tmp_path: Path,
                                                           store_url: str) -> None:
    """Runware made the task but its answer was lost: a later 503 (and an open circuit) must
    not send the job elsewhere; it asks Runware again with the same taskUUID."""
    policy = FleetPolicy(failures=1, cooldown=3600.0, probe_ttl=30.0, wait=3600.0)
    async with fleet_rig(tmp_path, ("runware", "hiapi"), store_url=store_url, policy=policy,
                         read_timeout=0.3) as r:
        r.fakes["runware"].answer_late(0.8, **GATEWAYS["runware"].create)
        unavailable(r.fakes["runware"], "runware")
        done = await finished(r, await r.enqueue(11))

        assert done.state is JobState.DELIVERED, done.error_message
        assert done.provider == "runware" and done.fleet["bound"] == "runware"
        assert r.creates("hiapi") == 0
        assert r.tasks_by_job()["runware"] == Counter({"fleetjob-11": 1})
        assert r.creates("runware") == 3  # lost, refused, answered: one task


async def test_an_open_circuit_is_skipped_without_a_create(tmp_path: Path,
                                                           store_url: str) -> None:
    policy = FleetPolicy(failures=3, cooldown=3600.0, probe_ttl=30.0, wait=3600.0)
    async with fleet_rig(tmp_path, ("hiapi", "runware"), store_url=store_url,
                         policy=policy) as r:
        unavailable(r.fakes["hiapi"], "hiapi", times=100)
        first = await finished(r, await r.enqueue(5))
        second = await finished(r, await r.enqueue(6))

        assert first.state is second.state is JobState.DELIVERED
        assert r.creates("hiapi") == 3  # the second job never knocked
        assert any("circuit is open" in why for why in r.reasons(second.id))
        assert r.tasks_by_job()["runware"] == Counter({"fleetjob-5": 1, "fleetjob-6": 1})


async def test_every_gateway_down_the_job_waits_and_can_be_cancelled(
        tmp_path: Path, store_url: str) -> None:
    policy = FleetPolicy(failures=1, cooldown=3600.0, probe_ttl=30.0, wait=10**6, recheck=5.0)
    async with fleet_rig(tmp_path, ("hiapi", "anyfast"), store_url=store_url,
                         policy=policy) as r:
        unavailable(r.fakes["hiapi"], "hiapi", times=100)
        unavailable(r.fakes["anyfast"], "anyfast", times=100)
        job = await r.enqueue(7)
        async with asyncio.timeout(60):  # until the job says it waits for a gateway
            while True:
                changed = r.engine._machine.changed(job.id)
                waiting = await r.store.get_job(job.id)
                assert waiting is not None and not waiting.terminal
                if waiting.fleet.get("waiting_since"):
                    break
                await changed.wait()
        assert any("Every gateway is down" in why and "cancel" in why
                   for why in r.reasons(job.id))
        await r.engine.cancel(job.id, "u0")
        done = await finished(r, job)

        assert done.state is JobState.CANCELLED
        assert await ledger(r, done) == ["reserve", "release"]
        assert r.tasks_by_job() == {"hiapi": Counter(), "anyfast": Counter()}


async def test_every_gateway_down_past_the_wait_fails_with_credits_back(
        tmp_path: Path, store_url: str) -> None:
    policy = FleetPolicy(failures=1, cooldown=3600.0, probe_ttl=30.0, wait=60.0, recheck=5.0)
    async with fleet_rig(tmp_path, ("hiapi", "anyfast"), store_url=store_url,
                         policy=policy) as r:
        unavailable(r.fakes["hiapi"], "hiapi", times=100)
        unavailable(r.fakes["anyfast"], "anyfast", times=100)
        done = await finished(r, await r.enqueue(8))

        assert done.state is JobState.FAILED
        assert "Every gateway" in (done.error_message or "")
        assert await ledger(r, done) == ["reserve", "release"]
        assert (r.creates("hiapi"), r.creates("anyfast")) == (1, 1)  # circuits kept them shut


async def test_the_wait_ends_even_when_no_circuit_opens(tmp_path: Path,
                                                        store_url: str) -> None:
    """429 storms everywhere: 429s never open a circuit, the job goes round the list, and
    still fails once it waited SEEDANCE_FAILOVER_WAIT, credits back, nothing made."""
    policy = FleetPolicy(failures=1000, cooldown=0.0, wait=120.0, recheck=5.0)
    async with fleet_rig(tmp_path, ("hiapi", "anyfast"), store_url=store_url,
                         policy=policy) as r:
        rate_limited(r.fakes["hiapi"], "hiapi", times=1000)
        rate_limited(r.fakes["anyfast"], "anyfast", times=1000)
        done = await finished(r, await r.enqueue(13))

        assert done.state is JobState.FAILED
        assert "Every gateway" in (done.error_message or "")
        assert await ledger(r, done) == ["reserve", "release"]
        assert r.tasks_by_job() == {"hiapi": Counter(), "anyfast": Counter()}
        rounds = [m for m in done.fleet["moves"] if m["cause"] == "every gateway was down"]
        assert len(rounds) >= 2  # it went round more than once, then gave up


async def test_a_job_waiting_for_gateways_completes_when_one_recovers(
        tmp_path: Path, store_url: str) -> None:
    async with fleet_rig(tmp_path, ("hiapi", "anyfast"), store_url=store_url) as r:
        unavailable(r.fakes["hiapi"], "hiapi", times=7)
        unavailable(r.fakes["anyfast"], "anyfast", times=7)
        done = await finished(r, await r.enqueue(9))

        assert done.state is JobState.DELIVERED, done.error_message
        made = r.tasks_by_job()
        assert made["hiapi"] + made["anyfast"] == Counter({"fleetjob-9": 1})
        assert await ledger(r, done) == ["reserve", "commit"]


# ---- callbacks and wording -------------------------------------------------------------------

def test_a_callback_from_the_gateway_the_job_left_is_dropped(
        caplog: pytest.LogCaptureFixture) -> None:
    job = JobView(id="j1", guild_id="g", channel_id="c", user_id="u", role_ids=(),
                  request=GenerationRequest(prompt="x", provider="runware"), provider="runware",
                  model=None, state=JobState.SUBMITTING, seq=1)
    stale = TaskState(task_id="tk-1", status=TaskStatus.SUCCEEDED, gateway="hiapi")
    with caplog.at_level(logging.WARNING):
        assert foreign_callback(job, stale)
    assert "from hiapi dropped" in caplog.text
    assert not foreign_callback(job, stale.model_copy(update={"gateway": "runware"}))
    assert not foreign_callback(job, stale.model_copy(update={"gateway": None}))


def test_which_errors_move_a_job() -> None:
    assert provably_no_task(GatewayUnavailableError("busy", status=503))
    unsent = GatewayUnavailableError("could not connect")
    unsent.sent = False  # bot/providers/http.py: no connection was made
    assert provably_no_task(unsent)
    # A lost answer of a gateway that dedupes creates is retryable, yet the task may exist.
    assert not provably_no_task(GatewayUnavailableError("no answer (ReadTimeout)"))
    assert provably_no_task(RateLimitError("slow down", status=429))
    assert provably_no_task(InsufficientBalanceError("broke", status=402))
    assert not provably_no_task(GatewayUnavailableError("boom", status=500))
    assert not provably_no_task(GatewayUnavailableError("bad json", status=200))
    lost = GatewayUnavailableError("no answer")
    lost.retryable = False  # a timeout after sending (bot/providers/http.py)
    assert not provably_no_task(lost)
    assert throttles(RateLimitError("slow", status=429))
    assert throttles(GatewayUnavailableError("x", code="ConcurrencyLimitExceeded", status=400))


# ---- circuit breaker and AIMD in the store -----------------------------------------------------

async def test_circuit_opens_after_n_failures_and_half_opens(store_url: str) -> None:
    store = await Store.open(store_url)
    try:
        for _ in range(2):
            assert await store.gateway_failed("hiapi", "HTTP 503", threshold=3) == "closed"
        assert await store.circuit_admit("hiapi", cooldown=3600, probe_ttl=60) == "closed"
        assert await store.gateway_failed("hiapi", "HTTP 503", threshold=3) == "open"
        assert await store.circuit_admit("hiapi", cooldown=3600, probe_ttl=60) == "open"
        assert await store.circuit_is_open("hiapi", cooldown=3600)
        # Cool-down over: exactly one caller probes; the others stay away meanwhile.
        assert not await store.circuit_is_open("hiapi", cooldown=0)
        assert await store.circuit_admit("hiapi", cooldown=0, probe_ttl=60) == "probe"
        assert await store.circuit_admit("hiapi", cooldown=0, probe_ttl=60) == "open"
        # The probe fails: open again; the next probe succeeds: closed.
        assert await store.gateway_failed("hiapi", "HTTP 503", threshold=3) == "open"
        assert await store.circuit_admit("hiapi", cooldown=0, probe_ttl=60) == "probe"
        await store.gateway_succeeded("hiapi", ceiling=4)
        assert await store.circuit_admit("hiapi", cooldown=3600, probe_ttl=60) == "closed"
        [seen] = await store.gateway_health({"hiapi": 4})
        assert (seen.circuit, seen.failures, seen.effective) == ("closed", 0, 4)
        assert seen.last_error == "HTTP 503"
        # A lapsed probe (its job died) is taken by the next caller.
        for _ in range(3):
            await store.gateway_failed("hiapi", "HTTP 503", threshold=3)
        assert await store.circuit_admit("hiapi", cooldown=0, probe_ttl=0) == "probe"
        assert await store.circuit_admit("hiapi", cooldown=0, probe_ttl=0) == "probe"
    finally:
        await store.close()


async def test_every_process_sees_one_circuit(store_url: str) -> None:
    """Two stores on one database stand for two processes: what one books, both see."""
    one, two = await Store.open(store_url), await Store.open(store_url)
    try:
        await one.gateway_failed("anyfast", "HTTP 503", threshold=2)
        assert await two.gateway_failed("anyfast", "HTTP 503", threshold=2) == "open"
        assert await one.circuit_admit("anyfast", cooldown=3600, probe_ttl=60) == "open"
        assert await two.circuit_admit("anyfast", cooldown=0, probe_ttl=60) == "probe"
        assert await one.circuit_admit("anyfast", cooldown=0, probe_ttl=60) == "open"
        await one.gateway_throttled("anyfast", "429", ceiling=6, spacing=0)
        assert await two.gateway_limits() == {"anyfast": 3}
    finally:
        await one.close()
        await two.close()


async def test_aimd_halves_on_429_and_grows_back_by_one_per_window(store_url: str) -> None:
    store = await Store.open(store_url)
    try:
        assert await store.gateway_throttled("runware", "429", ceiling=8, spacing=0) == 4
        assert await store.gateway_throttled("runware", "429", ceiling=8, spacing=0) == 2
        # A burst: within `spacing` of the last decrease, no further halving.
        assert await store.gateway_throttled("runware", "429", ceiling=8, spacing=3600) == 2
        assert await store.gateway_limits() == {"runware": 2}
        grown = [await store.gateway_succeeded("runware", ceiling=8) for _ in range(2 + 3)]
        assert grown == [2, 3, 3, 3, 4]  # a window of 2 successes, then of 3
        for _ in range(4 + 5 + 6 + 7):
            last = await store.gateway_succeeded("runware", ceiling=8)
        assert last is None  # back at the ceiling: never above it
        assert await store.gateway_limits() == {}
        [seen] = await store.gateway_health({"runware": 8})
        assert seen.effective == 8 and seen.circuit == "closed"
    finally:
        await store.close()


async def test_successes_booked_together_count_as_one_by_one(store_url: str) -> None:
    """`count` successes at once leave the row as that many bookings one after the other."""
    store = await Store.open(store_url)
    try:
        for name in ("one", "many"):
            await store.gateway_throttled(name, "429", ceiling=8, spacing=0)  # 4 allowed
        for count in (1, 3, 5, 2, 9, 4):  # windows of 4, 5, 6 and 7 successes: 8 after 22
            for _ in range(count):
                singly = await store.gateway_succeeded("one", ceiling=8)
            together = await store.gateway_succeeded("many", ceiling=8, count=count)
            assert together == singly
            assert await store.gateway_limits() == ({} if singly is None else
                                                    {"one": singly, "many": singly})
        assert together is None  # back at the ceiling, as one by one
    finally:
        await store.close()


async def test_a_burst_of_creates_books_its_successes_in_a_few_reads(
        tmp_path: Path, store_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Creates that succeed while a booking of their gateway is under way are booked together
    by the next one: every success counts, and a burst costs a few bookings, not one each."""
    async with fleet_rig(tmp_path, ("runware",), store_url=store_url, start=False,
                         concurrency="runware=64") as r:
        await r.store.gateway_throttled("runware", "429", ceiling=64, spacing=0)  # 32
        bookings: list[int] = []
        book = r.store.gateway_succeeded

        async def counted(provider: str, *, ceiling: int, count: int = 1) -> int | None:
            bookings.append(count)
            return await book(provider, ceiling=ceiling, count=count)

        monkeypatch.setattr(r.store, "gateway_succeeded", counted)  # counts, then books
        for _ in range(40):
            r.engine.fleet.succeeded("runware")
        await asyncio.sleep(0)
        for _ in range(10):
            r.engine.fleet.succeeded("runware")
        await r.engine.fleet.drain()
        assert bookings == [40, 10]  # the first burst in one booking, the rest in the next
        # 32 successes grow 32 to 33, the next 18 are on the way to 34: as one by one.
        assert await r.store.gateway_limits() == {"runware": 33}
        # A booking cancelled before it ran (a stop) does not hold the next ones back.
        r.engine.fleet.succeeded("runware")
        next(iter(r.engine.fleet._booking.values())).cancel()
        await asyncio.sleep(0)
        for _ in range(15):
            r.engine.fleet.succeeded("runware")
        await r.engine.fleet.drain()
        assert bookings == [40, 10, 16]
        assert await r.store.gateway_limits() == {"runware": 34}


async def test_a_429_halves_what_the_scheduler_starts_and_successes_restore_it(
        tmp_path: Path, store_url: str) -> None:
    async with fleet_rig(tmp_path, ("hiapi",), store_url=store_url, concurrency="hiapi=4",
                         policy=FleetPolicy(spacing=3600.0)) as r:
        rate_limited(r.fakes["hiapi"], "hiapi")
        done = await finished(r, await r.enqueue(10, gateways=["hiapi"]))
        assert done.state is JobState.DELIVERED, done.error_message
        assert (await health(r, "hiapi"))[1] == 2
        # The scheduler's caps (and so the queue's places and ETAs) use the effective value.
        caps = await r.engine._caps.refresh([])
        assert caps.gateway("hiapi") == 2
        rows = [QueuedRow(f"q{n}", "g1", f"u{n}", "hiapi", n, 0.0, 0) for n in range(5)]
        picked = r.engine._dispatch._fair.pick_counted(rows, _no_counts(), caps, now=1.0)
        assert len(picked) == 2
        for n in range(11, 13):  # a window of two successes: one more slot
            assert (await finished(r, await r.enqueue(n, gateways=["hiapi"]))).state \
                is JobState.DELIVERED
        assert (await health(r, "hiapi"))[1] == 3
        assert (await r.engine._caps.refresh([])).gateway("hiapi") == 3


def _no_counts() -> object:
    from bot.store.records import RunningCounts

    return RunningCounts()


# ---- where the list comes from ---------------------------------------------------------------

def test_setting_both_provider_variables_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SEEDANCE_PROVIDER", "hiapi")
    monkeypatch.setenv("SEEDANCE_PROVIDERS", "hiapi,runware")
    with pytest.raises(ConfigError, match="ambiguous"):
        load_settings(_env_file=None)
    monkeypatch.delenv("SEEDANCE_PROVIDER")
    assert load_settings(_env_file=None).providers == ("hiapi", "runware")
    monkeypatch.setenv("SEEDANCE_PROVIDERS", "hiapi,hiapi")
    with pytest.raises(ConfigError, match="SEEDANCE_PROVIDERS"):
        load_settings(_env_file=None)


def test_an_explicit_gateway_or_a_servers_own_choice_wins() -> None:
    settings = Settings(_env_file=None, seedance_providers="hiapi,runware,anyfast")
    plain = GuildSettings()
    assert failover_order(RequestOptions(), plain, settings) == ("hiapi", "runware", "anyfast")
    assert failover_order(RequestOptions(provider="anyfast"), plain, settings) == ()
    assert failover_order(RequestOptions(), GuildSettings(provider="runware"), settings) == ()
    own = GuildSettings(providers=("runware", "hiapi"))
    assert failover_order(RequestOptions(), own, settings) == ("runware", "hiapi")
    assert failover_order(RequestOptions(), plain, Settings(_env_file=None)) == ()


async def test_only_gateways_accepting_the_request_as_it_is_are_listed() -> None:
    settings = Settings(_env_file=None, hiapi_api_key="k1", magnific_api_key="k2",
                        anyfast_api_key="k3")
    registry = ProviderRegistry(settings)
    try:
        with_sound = GenerationRequest(prompt="a fox", provider="hiapi", duration=7, audio=True,
                                       ratio="16:9")
        # Magnific makes no sound and only 5 or 10 s: it cannot take this request as it is.
        assert fleet_for(with_sound, ["magnific", "anyfast"], registry) == ["hiapi", "anyfast"]
        silent = with_sound.model_copy(update={"duration": 5, "audio": False})
        assert "magnific" in fleet_for(silent, ["magnific"], registry)
    finally:
        await registry.aclose()


def test_the_cli_refuses_both_provider_variables_at_start(tmp_path: Path) -> None:
    from tests.test_cli import run_cli

    both = {"SEEDANCE_PROVIDER": "hiapi", "SEEDANCE_PROVIDERS": "hiapi,runware"}
    for args in (("generate", "a fox", "--out", "x.mp4"), ("run",)):
        result = run_cli(*args, cwd=tmp_path, env={**both, "DISCORD_TOKEN": "t"})
        assert result.returncode == 2
        assert "ambiguous" in result.stderr and "SEEDANCE_PROVIDERS" in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1


async def test_the_cli_follows_the_list_unless_told_a_gateway(tmp_path: Path) -> None:
    from tests.test_cli import run_cli

    result = run_cli("generate", "a fox", "--out", "x.mp4", "--duration", "4",
                     "--resolution", "480p", cwd=tmp_path,
                     env={"SEEDANCE_PROVIDERS": "local"})
    assert result.returncode == 0, result.stderr
    store = await Store.open(tmp_path / "data" / "cli.sqlite3")
    try:
        [job] = await store.jobs()
        assert job.fleet["order"] == ["local"] and job.provider == "local"
    finally:
        await store.close()
    told = run_cli("generate", "a fox", "--out", "y.mp4", "--duration", "4", "--resolution",
                   "480p", "--provider", "local", cwd=tmp_path,
                   env={"SEEDANCE_PROVIDERS": "local"})
    assert told.returncode == 0, told.stderr
    store = await Store.open(tmp_path / "data" / "cli.sqlite3")
    try:
        assert [j.fleet for j in await store.jobs()] == [{"order": ["local"]}, {}]
    finally:
        await store.close()


async def test_the_engine_drops_news_from_a_gateway_the_job_left(tmp_path: Path) -> None:
    async with fleet_rig(tmp_path, ("hiapi", "runware"), start=False) as r:
        job = await r.enqueue(20)
        moved = await r.store.transition(job.id, JobState.GENERATING, now=r.clock.now(),
                                         task_id="tk-20", provider="runware")
        assert moved is not None and moved.provider == "runware"
        done = TaskState(task_id="tk-20", status=TaskStatus.SUCCEEDED)
        await r.engine.on_callback(job.id, done.model_copy(update={"gateway": "hiapi"}))
        assert await r.store.db.fetch("SELECT id FROM job_updates") == []
        await r.engine.on_callback(job.id, done.model_copy(update={"gateway": "runware"}))
        assert len(await r.store.db.fetch("SELECT id FROM job_updates")) == 1


async def test_the_receiver_says_which_gateway_called_back(tmp_path: Path) -> None:
    from tests.fakes.hiapi import FakeHiAPI
    from tests.test_webhooks import Sink, start_receiver

    async with FakeHiAPI() as fake:
        settings = Settings(_env_file=None, hiapi_api_key=fake.api_key,
                            hiapi_base_url=fake.base_url)
        registry = ProviderRegistry(settings)
        sink = Sink()
        receiver = await start_receiver({"hiapi": registry("hiapi")}, sink)
        try:
            await fake.send_callback(receiver.url_for("hiapi", "job-1"),
                                     {"taskId": "tk-1", "status": "handling"}, times=1)
        finally:
            await receiver.stop()
            await registry.aclose()
    [(job_id, state)] = sink.calls
    assert job_id == "job-1" and state.gateway == "hiapi"


async def test_a_servers_own_list_runs_on_the_first_gateway_that_takes_the_request(
        tmp_path: Path, store_url: str) -> None:
    """/seedance-admin provider provider:magnific failover:hiapi,runware, then a 7 s video:
    Magnific makes only 5 or 10 s, so the job starts at HiAPI and may move to Runware."""
    import httpx

    from bot.service import Requester, Services

    admin = Requester("1", "g1", "10", admin=True, moderator=True)
    member = Requester("2", "g1", "10")
    names = ("magnific", "hiapi", "runware")
    async with fleet_rig(tmp_path, names, store_url=store_url) as r, \
            httpx.AsyncClient() as http:
        services = Services.build(r.settings, r.store, r.engine, r.engine.provider, http)
        await services.admin.set_provider(admin, "magnific", None, ["hiapi", "runware"])
        assert (await r.store.guild_settings("g1")).providers == names
        assert (await services.admin.overview(admin)).provider == "magnific → hiapi → runware"
        unavailable(r.fakes["hiapi"], "hiapi", times=100)
        made = await services.videos.make(member, [], RequestOptions(
            prompt="fleetjob-30 a heron", duration=7, ratio="16:9"))
        assert made.job.provider == "hiapi"
        assert made.job.fleet["order"] == ["hiapi", "runware"]
        done = await finished(r, made.job)

        assert done.state is JobState.DELIVERED, done.error_message
        assert done.provider == "runware" and done.request.duration == 7
        assert r.creates("magnific") == 0
        assert r.tasks_by_job()["runware"] == Counter({"fleetjob-30": 1})
        # A gateway named outright binds the job to it.
        outright = await services.videos.make(member, [], RequestOptions(
            prompt="fleetjob-31 a heron", duration=5, ratio="16:9", provider="runware"))
        assert outright.job.fleet == {}
