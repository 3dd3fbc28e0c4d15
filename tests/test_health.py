"""GET /healthz: 200 while the loop and the database answer, 503 with a short reason when the
database does not (a dead one fails, a stuck one times out) or the loop is blocked, on its own
server or the callback receiver's (which serves /metrics too)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from bot.health import HealthServer, Probe, healthz
from bot.metrics import Metrics
from bot.store import Store
from bot.webhooks import CallbackReceiver


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    opened = await Store.open(tmp_path / "seedance.sqlite3")
    yield opened
    await opened.close()


async def ask(probe: Probe, within: float = 2.0) -> httpx.Response:
    server = HealthServer(probe, host="127.0.0.1", port=0, within=within)
    await server.start()
    try:
        async with httpx.AsyncClient() as http:
            return await http.get(f"http://127.0.0.1:{server.bound_port}/healthz")
    finally:
        await server.stop()


async def test_healthy_when_the_database_answers(store: Store) -> None:
    answer = await ask(store.db.now)
    assert answer.status_code == 200
    assert answer.json()["ok"] is True and answer.json()["database_ms"] >= 0


async def test_a_failing_database_is_503_with_the_reason() -> None:
    async def dead() -> float:
        raise ConnectionRefusedError("connection refused")

    answer = await ask(dead)
    assert answer.status_code == 503
    assert answer.json() == {"ok": False,
                             "reason": "the database failed: ConnectionRefusedError"}


async def test_a_database_that_does_not_answer_in_time_is_503() -> None:
    async def stuck() -> float:
        await asyncio.sleep(30)
        return 0.0

    answer = await ask(stuck, within=0.2)
    assert answer.status_code == 503
    assert answer.json()["reason"] == "the database did not answer within 0.2 s"


async def test_a_blocked_event_loop_is_503() -> None:
    """Blocking code hogging the loop (here one callback sleeping half a second ahead of the
    check's turn) is what a liveness check exists to catch."""
    server = HealthServer(_fine, host="127.0.0.1", port=0, within=0.2)
    await server.start()
    try:
        async with httpx.AsyncClient() as http:
            url = f"http://127.0.0.1:{server.bound_port}/healthz"
            healthy = await http.get(url)
            assert healthy.status_code == 200 and healthy.json()["loop_ms"] >= 0
    finally:
        await server.stop()
    asyncio.get_running_loop().call_soon(time.sleep, 0.5)  # queued ahead of the check's turn
    answer = await healthz(_fine, 0.2)
    assert answer.status == 503
    assert answer.text is not None and "event loop is blocked" in answer.text


async def _fine() -> None:
    return None


async def test_the_callback_receiver_serves_it_too(store: Store) -> None:
    async def sink(job_id: str, state: object) -> None:
        raise AssertionError("no callback expected")

    metrics = Metrics(store)
    receiver = CallbackReceiver({}, sink, base_url="http://127.0.0.1", secret="s",
                                host="127.0.0.1", port=0, health=store.db.now,
                                metrics=metrics.exposition)
    async with receiver, httpx.AsyncClient() as http:
        answer = await http.get(f"http://127.0.0.1:{receiver.bound_port}/healthz")
        scraped = await http.get(f"http://127.0.0.1:{receiver.bound_port}/metrics")
    assert answer.status_code == 200 and answer.json()["ok"] is True
    assert scraped.status_code == 200
    up = next(f for f in text_string_to_metric_families(scraped.text)
              if f.name == "seedance_store_up")
    assert up.samples[0].value == 1.0
