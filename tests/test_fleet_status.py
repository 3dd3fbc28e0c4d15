"""What operators see of the fleet, after real jobs ran through the engine against a scripted
gateway (tests/test_engine_fakes.py) on SQLite and PostgreSQL: `/seedance-admin status`'s
figures (bot/service/fleet.py) and `/metrics` (bot/metrics.py) scraped over HTTP and parsed
with prometheus-client's own parser. Expected figures are worked out from the job rows and
their transitions, not from the tables the code under test reads."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from bot.config import Settings
from bot.engine import Engine, EngineLimits, JobState
from bot.errors import TaskFailedError
from bot.health import HealthServer
from bot.metrics import TASK_BUCKETS, Metrics
from bot.service import FleetService, GatewayState, NotAllowed, Requester
from bot.service.fleet import engine_states, percentile, redact
from bot.store import JobView, Store
from tests.fakes.common import FakeGateway
from tests.test_engine_fakes import (
    FakeClock,
    FakeDelivery,
    FakeProvider,
    Outcome,
    request,
    wait_for_state,
)

SECRET = "sk-secret-123456"
LEAKY = (f"render failed; see https://cdn.example.com/out/7.mp4?token=tok-abcdef123&sig=zzz "
         f"(key {SECRET})")
ADMIN = Requester(user_id="u1", guild_id="g1", channel_id="c1", admin=True)


@dataclass
class Rig:
    settings: Settings
    store: Store
    provider: FakeProvider
    clock: FakeClock
    engine: Engine


def outcome_for(prompt: str) -> Outcome:
    """"fail" fails with a message holding a signed URL and the API key; "slow N" takes N
    polls."""
    if "fail" in prompt:
        return Outcome(polls=2, error=TaskFailedError(LEAKY, provider="fake"))
    polls = int(prompt.split()[-1]) if prompt.startswith("slow") else 1
    return Outcome(polls=polls, cost=0.25)


@pytest.fixture
async def rig(data_dir: Path, store_url: str) -> AsyncIterator[Rig]:
    settings = Settings(seedance_data_dir=data_dir, seedance_user_daily_credits=1000,
                        seedance_guild_monthly_credits=100000, runware_api_key=SECRET,
                        seedance_private_hosts="127.0.0.1",
                        seedance_gateway_concurrency="runware=7")
    store = await Store.open(store_url)
    async with FakeGateway() as files, httpx.AsyncClient() as http:
        provider = FakeProvider(files, script=lambda r: outcome_for(r.prompt))
        clock = FakeClock()
        engine = Engine(settings, store, delivery=FakeDelivery(), providers={"fake": provider},
                        http=http, clock=clock.now, sleep=clock.sleep,
                        limits=EngineLimits(retry_base=1.0, gateway_in_flight=1))
        await engine.start()
        try:
            yield Rig(settings, store, provider, clock, engine)
        finally:
            await engine.stop()
    await store.close()


async def run_jobs(rig: Rig, prompts: Sequence[str]) -> list[JobView]:
    ids = [(await rig.engine.enqueue(request(p), guild_id="g1", channel_id="c1",
                                     user_id="u1")).id for p in prompts]
    return [await wait_for_state(rig.store, i, "delivered", "failed") for i in ids]


async def task_seconds(store: Store, job: JobView) -> float:
    """Submitted to result ready, from the job's own row and transitions."""
    ready = next(t.at for t in await store.transitions(job.id) if t.to_state == "downloading")
    assert job.started_at is not None
    return ready - job.started_at


def test_percentile_is_nearest_rank() -> None:
    assert percentile([], 50) is None
    assert percentile([7.0], 95) == 7.0
    values = [float(v) for v in range(1, 21)]  # 1..20
    assert percentile(values, 50) == 10.0 and percentile(values, 95) == 19.0
    assert percentile(list(reversed(values)), 100) == 20.0


def test_redact_keeps_the_host_and_drops_tokens_and_secrets() -> None:
    shown = redact(LEAKY, [SECRET])
    assert "https://cdn.example.com/…" in shown
    for leak in (SECRET, "tok-abcdef123", "zzz", "/out/7.mp4"):
        assert leak not in shown
    assert redact("https://user:pw@host.example/a?b=c").startswith("https://host.example/…")
    assert len(redact("x" * 1000)) == 300


async def test_status_after_real_jobs(rig: Rig) -> None:
    done = await run_jobs(rig, ["slow 1", "slow 3", "slow 6", "fail now"])
    delivered = [j for j in done if j.state is JobState.DELIVERED]
    assert len(delivered) == 3 and done[-1].state is JobState.FAILED
    # One more that stays in the create (in flight) and two that wait behind the cap of one.
    rig.provider.submit_gate = asyncio.Event()
    stuck = await rig.engine.enqueue(request("slow 1"), guild_id="g1", channel_id="c1",
                                     user_id="u1")
    await wait_for_state(rig.store, stuck.id, "submitting")

    fleet = FleetService(rig.settings, rig.store, clock=rig.clock.now,
                         limits=rig.engine.limits)
    waiting = [await rig.engine.enqueue(request(f"later {n}"), guild_id="g1", channel_id="c1",
                                        user_id="u1") for n in range(2)]
    for job in waiting:
        await wait_for_state(rig.store, job.id, "queued")
    status = await fleet.status(ADMIN)
    by_name = {g.name: g for g in status.gateways}
    # The default gateway (local) and runware (a key and a ceiling) are listed though unused.
    assert set(by_name) == {"local", "runware", "fake"}
    assert by_name["runware"].ceiling == 7 and by_name["runware"].credits_today == 0
    g = by_name["fake"]
    assert (g.in_flight, g.queued) == (1, 2)
    assert g.ceiling == 1  # the engine's default ceiling, as configured here
    times = [await task_seconds(rig.store, j) for j in delivered]
    assert g.tasks_last_hour == 3
    assert (g.p50, g.p95) == (percentile(times, 50), percentile(times, 95))
    assert g.p50 is not None and g.p95 is not None and g.p50 < g.p95
    charged = sum(j.credits_charged for j in await rig.store.jobs())
    assert charged == 3 * delivered[0].credits_estimate > 0
    assert g.credits_today == charged and g.cost_today == 0.75
    assert g.last_error is not None and g.last_error.kind == "task_failed"
    assert "https://cdn.example.com/…" in g.last_error.message
    assert SECRET not in g.last_error.message and "tok-abcdef" not in g.last_error.message
    assert g.circuit is None and g.concurrency is None
    with pytest.raises(NotAllowed):
        await fleet.status(Requester(user_id="u2", guild_id="g1", channel_id="c1"))
    rig.provider.submit_gate.set()


async def test_status_takes_circuit_and_concurrency_from_a_reader(rig: Rig) -> None:
    await run_jobs(rig, ["slow 1"])

    async def states(names: Sequence[str]) -> dict[str, GatewayState]:
        return {n: GatewayState("half-open", (2, 8)) for n in names if n == "fake"}

    fleet = FleetService(rig.settings, rig.store, clock=rig.clock.now, states=states)
    g = next(g for g in (await fleet.snapshot()).gateways if g.name == "fake")
    assert (g.circuit, g.concurrency) == ("half-open", (2, 8))


async def test_status_reads_the_engines_circuits_and_concurrency(rig: Rig) -> None:
    """Wired as the bot wires it (bot/service/__init__.py): a gateway whose creates failed
    shows its circuit open, one that was throttled its halved concurrency."""
    await run_jobs(rig, ["slow 1"])
    await rig.store.gateway_failed("fake", "HTTP 503", threshold=1)
    fleet = FleetService(rig.settings, rig.store, clock=rig.clock.now,
                         states=engine_states(rig.engine.fleet.health))
    before = {g.name: g for g in (await fleet.snapshot()).gateways}
    assert before["fake"].circuit == "open"
    assert before["runware"].circuit == "closed" and before["runware"].concurrency is not None
    effective, ceiling = before["runware"].concurrency
    assert effective == ceiling >= 2
    await rig.store.gateway_throttled("runware", "HTTP 429", ceiling=ceiling, spacing=0.0)
    after = {g.name: g for g in (await fleet.snapshot()).gateways}
    assert after["runware"].concurrency == (ceiling // 2, ceiling)


def families(text: str) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    """Every sample of a scrape: family name → (sorted labels) → value; samples of a
    histogram keep their own names (`_bucket`, `_count`, `_sum`) under the family."""
    found: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            key = tuple(sorted({**s.labels, "__name__": s.name}.items()))
            found.setdefault(family.name, {})[key] = s.value
    return found


def sample(found: dict[str, dict[tuple[tuple[str, str], ...], float]], family: str,
           name: str | None = None, **labels: str) -> float | None:
    key = tuple(sorted({**labels, "__name__": name or family}.items()))
    return found.get(family, {}).get(key)


async def scrape(metrics: Metrics) -> str:
    server = HealthServer(lambda: _ok(), host="127.0.0.1", port=0,
                          metrics=metrics.exposition)
    await server.start()
    try:
        async with httpx.AsyncClient() as http:
            answer = await http.get(f"http://127.0.0.1:{server.bound_port}/metrics")
    finally:
        await server.stop()
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/plain")
    return answer.text


async def _ok() -> None:
    return None


async def test_metrics_after_real_jobs(rig: Rig) -> None:
    done = await run_jobs(rig, ["slow 1", "slow 4", "fail one", "fail two"])
    delivered = [j for j in done if j.state is JobState.DELIVERED]
    ticks = [0.0]
    metrics = Metrics(rig.store, ttl=10.0, clock=lambda: ticks[0], wall=rig.clock.now)
    metrics.observe_ack("video", 0.4)
    metrics.observe_ack("video", 2.7)
    found = families(await scrape(metrics))

    assert sample(found, "seedance_store_up") == 1.0
    assert sample(found, "seedance_jobs", gateway="fake", state="delivered") == 2
    assert sample(found, "seedance_jobs", gateway="fake", state="failed") == 2
    assert sample(found, "seedance_queue_depth", gateway="fake") == 0
    assert sample(found, "seedance_in_flight", gateway="fake") == 0
    assert sample(found, "seedance_failed_jobs", gateway="fake", kind="task_failed") == 2
    charged = sum(j.credits_charged for j in done)
    assert charged > 0
    assert sample(found, "seedance_credits_spent_today", gateway="fake") == charged
    assert sample(found, "seedance_gateway_cost_today", gateway="fake") == 0.5
    times = sorted([await task_seconds(rig.store, j) for j in delivered])
    hist = "seedance_task_seconds"
    assert sample(found, hist, f"{hist}_count", gateway="fake") == 2
    assert sample(found, hist, f"{hist}_sum", gateway="fake") == pytest.approx(sum(times))
    for le in TASK_BUCKETS:
        expected = sum(1 for t in times if t <= le)
        assert sample(found, hist, f"{hist}_bucket", gateway="fake", le=str(le)) == expected
    acks = "seedance_interaction_ack_seconds"
    assert sample(found, acks, f"{acks}_count", command="video") == 2
    assert sample(found, acks, f"{acks}_bucket", command="video", le="0.5") == 1
    assert sample(found, acks, f"{acks}_bucket", command="video", le="3.0") == 2

    # Within the TTL the figures are the cached ones; after it, the new job is counted once
    # (task times are read incrementally: nothing counted twice).
    await run_jobs(rig, ["slow 2"])
    cached = families(await scrape(metrics))
    assert sample(cached, hist, f"{hist}_count", gateway="fake") == 2
    ticks[0] = 11.0
    fresh = families(await scrape(metrics))
    assert sample(fresh, hist, f"{hist}_count", gateway="fake") == 3
    assert sample(fresh, "seedance_jobs", gateway="fake", state="delivered") == 3
    ticks[0] = 22.0
    again = families(await scrape(metrics))
    assert sample(again, hist, f"{hist}_count", gateway="fake") == 3


async def test_two_registries_in_one_process_do_not_clash(rig: Rig) -> None:
    await run_jobs(rig, ["slow 1"])
    first, second = Metrics(rig.store), Metrics(rig.store)
    first.observe_ack("queue", 0.1)
    one, two = families(await scrape(first)), families(await scrape(second))
    acks = "seedance_interaction_ack_seconds"
    assert sample(one, acks, f"{acks}_count", command="queue") == 1
    assert sample(two, acks, f"{acks}_count", command="queue") is None
    assert sample(two, "seedance_jobs", gateway="fake", state="delivered") == 1
