"""What operators see, from outside the real bot (`seedance-bot run` against the fake Discord,
the real discord.py client): `/seedance-admin status` as an embed, `/metrics` scraped and parsed
with prometheus-client's parser, and `/healthz` turning 503 while PostgreSQL is unreachable
(cut behind a TCP relay) and 200 again once it is back."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from bot.store import JobState
from tests.e2e.test_database_outage_e2e import Relay
from tests.e2e.test_discord_admin_e2e import private_reply
from tests.e2e.test_discord_e2e import FAST, running, store_of, video_posts
from tests.fakes.discord.server import FakeDiscord
from tests.fakes.discord.state import MANAGE_GUILD
from tests.test_run_startup import closed_port

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]
T = TypeVar("T")


def scraped(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str,
          **labels: str) -> float | None:
    return samples.get((name, tuple(sorted(labels.items()))))


async def until(check: Callable[[], Awaitable[T | None]], what: str, tries: int = 300) -> T:
    """Ask again until `check` gives something (a condition, not a timing)."""
    for _ in range(tries):
        got = await check()
        if got is not None:
            return got
        await asyncio.sleep(0.2)
    raise AssertionError(f"never saw {what}")


async def embed_reply(fake: FakeDiscord, inter: Any) -> dict[str, Any]:
    def found() -> dict[str, Any] | None:
        for m in inter.followups:
            if m.ephemeral and m.embeds:
                return dict(m.embeds[0])
        return None

    return await fake.wait_for(found, timeout=30, what="a private embed")


async def test_status_and_metrics_after_a_video(tmp_path: Path) -> None:
    port = closed_port()
    async with FakeDiscord() as fake, running(tmp_path, fake,
                                              SEEDANCE_HTTP_PORT=str(port)) as bot:
        admin = fake.add_member("mod", roles=[fake.add_role("Mods", MANAGE_GUILD)])
        await fake.slash("video", {"prompt": "a paper boat on a pond", **FAST})
        await fake.wait_for(lambda: video_posts(fake) or None, timeout=120, what="the video")
        store = await store_of(bot)
        try:
            job = (await store.jobs())[0]
            await until(lambda: _delivered(store, job.id), "the job delivered")
            done = await store.get_job(job.id)
            assert done is not None
            charged = done.credits_charged
        finally:
            await store.close()
        assert charged > 0

        denied = await fake.slash("seedance-admin", {}, path=("status",))
        assert "Manage Server" in await private_reply(fake, denied)

        status = await fake.slash("seedance-admin", {}, path=("status",), user=admin)
        embed = await embed_reply(fake, status)
        local = next(f["value"] for f in embed["fields"] if f["name"] == "local")
        assert "**In flight** 0 · **queued** 0" in local
        assert "(last hour, 1 done) p50 " in local and "p50 —" not in local
        assert f"**Today** {charged} credits" in local
        # The engine's own circuit and AIMD state (bot/engine/fleet.py): a healthy gateway.
        assert "**Circuit** closed · **concurrency** 2 of 2" in local
        assert "**Last error** none" in local

        async with httpx.AsyncClient() as http:
            answer = await http.get(f"http://127.0.0.1:{port}/metrics")
        assert answer.status_code == 200
        samples = scraped(answer.text)
        assert value(samples, "seedance_store_up") == 1.0
        assert value(samples, "seedance_jobs", gateway="local", state="delivered") == 1
        assert value(samples, "seedance_task_seconds_count", gateway="local") == 1
        assert value(samples, "seedance_credits_spent_today", gateway="local") == charged
        # This process acknowledged the /video and the two status commands, each measured.
        acks = "seedance_interaction_ack_seconds_count"
        assert value(samples, acks, command="video") == 1
        assert value(samples, acks, command="seedance-admin status") == 2


async def _delivered(store: Any, job_id: str) -> bool | None:
    job = await store.get_job(job_id)
    return True if job is not None and job.state is JobState.DELIVERED else None


async def test_healthz_is_503_while_postgres_is_unreachable(tmp_path: Path,
                                                           postgres_url: str) -> None:
    parts = urlsplit(postgres_url)
    relay = Relay(parts.hostname or "127.0.0.1", parts.port or 5432)
    await relay.start()
    user = f"{parts.username}@" if parts.username else ""
    relayed = urlunsplit(parts._replace(netloc=f"{user}127.0.0.1:{relay.listen_port}"))
    port = closed_port()
    base = f"http://127.0.0.1:{port}"
    try:
        async with FakeDiscord() as fake, running(tmp_path, fake, SEEDANCE_DATABASE_URL=relayed,
                                                  SEEDANCE_HTTP_PORT=str(port)), \
                httpx.AsyncClient(timeout=30) as http:
            healthy = await http.get(f"{base}/healthz")
            assert healthy.status_code == 200 and healthy.json()["ok"] is True
            first = scraped((await http.get(f"{base}/metrics")).text)
            assert value(first, "seedance_store_up") == 1.0

            await relay.cut()

            async def sick() -> httpx.Response | None:
                answer = await http.get(f"{base}/healthz")
                return answer if answer.status_code == 503 else None

            down = await until(sick, "/healthz answering 503")
            assert down.json()["ok"] is False
            assert down.json()["reason"].startswith("the database ")

            async def stale() -> dict[Any, float] | None:  # after the metrics' cache expires
                samples = scraped((await http.get(f"{base}/metrics")).text)
                return samples if value(samples, "seedance_store_up") == 0.0 else None

            await until(stale, "/metrics saying the store is down")

            await relay.start()

            async def well() -> httpx.Response | None:
                answer = await http.get(f"{base}/healthz")
                return answer if answer.status_code == 200 else None

            assert (await until(well, "/healthz healthy again")).json()["ok"] is True
    finally:
        await relay.cut()
