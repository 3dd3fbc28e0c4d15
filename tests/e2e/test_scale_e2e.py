"""Scaled out, against the fake Discord: a shard identifies as the shard it was given, and a
`seedance-bot worker` makes a job another process wrote and posts it through REST, never
opening the gateway."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import urllib.error
import urllib.request
from pathlib import Path

import httpx
import pytest

from bot.config import Settings
from bot.engine import Engine, JobState
from bot.providers.local import build
from bot.store import Store
from tests.e2e.harness import BotProcess
from tests.fakes.discord.server import FakeDiscord
from tests.test_engine_fakes import FakeDelivery, request
from tests.test_run_startup import closed_port

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

IDENTIFY = 2


class WorkerProcess(BotProcess):
    """`seedance-bot worker` through the same launcher as the bot."""

    async def start(self) -> None:
        log = self.log_path.open("ab")
        self.proc = await asyncio.create_subprocess_exec(
            *self.command("worker"), env=self.environment(), stdout=log, stderr=log,
            cwd=str(self.data_dir.parent))
        log.close()

    @staticmethod
    def command(name: str) -> list[str]:
        return [sys.executable, "-m", "tests.fakes.discord.run_bot", name]


def identified_shards(fake: FakeDiscord) -> list[list[int]]:
    return [f.d.get("shard") for f in fake.gateway.frames
            if f.direction == "recv" and f.op == IDENTIFY and isinstance(f.d, dict)]


async def test_a_shard_identifies_as_the_shard_it_was_given(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    async with FakeDiscord() as fake:
        bot = BotProcess(fake, data, {"SEEDANCE_SHARD_COUNT": "2", "SEEDANCE_SHARD_IDS": "1"})
        await bot.start()
        try:
            await fake.wait_for(lambda: identified_shards(fake), timeout=60, what="IDENTIFY")
        except BaseException:
            print(bot.log())
            raise
        finally:
            await bot.stop()
        assert identified_shards(fake) == [[1, 2]]


def get_json(url: str) -> tuple[int, dict[str, object]]:
    try:
        with urllib.request.urlopen(url, timeout=5) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as answer:
        return answer.code, json.loads(answer.read())


async def test_a_worker_posts_a_job_another_process_wrote_without_a_gateway(
        tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    settings = Settings(_env_file=None, seedance_data_dir=data)  # type: ignore[call-arg]
    async with FakeDiscord() as fake:
        # Another process (a shard, here this test) writes the job into the shared database.
        store = await Store.open(settings.database)
        provider = build(settings)
        async with httpx.AsyncClient() as http:
            engine = Engine(settings, store, delivery=FakeDelivery(),
                            providers={"local": provider}, http=http)
            job = await engine.enqueue(
                request("a lighthouse at dusk", provider="local", duration=4, ratio="16:9"),
                guild_id=str(fake.guild.id), channel_id=str(fake.channel.id),
                user_id=str(fake.member.user.id))
        await provider.aclose()
        port = closed_port()
        worker = WorkerProcess(fake, data, {"SEEDANCE_HTTP_PORT": str(port)})
        await worker.start()
        try:
            post = await fake.wait_for_message(
                predicate=lambda m: any(a.filename.endswith(".mp4") for a in m.attachments),
                timeout=120)
            assert f"<@{fake.member.user.id}>" in post.content
            for _ in range(200):  # the row says delivered right after the post
                done = await store.get_job(job.id)
                if done is not None and done.state is JobState.DELIVERED:
                    break
                await asyncio.sleep(0.05)
            assert done is not None and done.state is JobState.DELIVERED
            status, body = await asyncio.to_thread(get_json, f"http://127.0.0.1:{port}/healthz")
            assert status == 200 and body["ok"] is True
        except BaseException:
            print(worker.log())
            raise
        finally:
            assert worker.proc is not None
            worker.proc.send_signal(signal.SIGTERM)
            code = await asyncio.wait_for(worker.proc.wait(), 20)
            await store.close()
        assert code == 0, worker.log()
        assert fake.received("POST", "/channels/")  # the video went through REST
        assert fake.gateway.connect_paths == [] and fake.gateway.identifies == 0
        assert not fake.received("GET", "/gateway")
        assert not fake.commands(guild_id=fake.guild.id) and not fake.commands()
        assert "Traceback" not in worker.log()
