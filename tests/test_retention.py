"""What stays in the data folder: after retention (SEEDANCE_RETENTION_DAYS) and after "delete my
data", nothing of a finished job remains — not its video, not its downloaded inputs under
cache/, not the embedded provider's copy (prompt and video) under local_tasks/. Each test lists
the data folder before and after."""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from aiohttp import web

from bot.config import Settings
from bot.engine import Engine, JobState
from bot.intake import MediaInput, RequestOptions, prepare
from bot.media.fetch import NetworkPolicy
from bot.models import Resolution
from bot.moderation import forget_user
from bot.providers.local import build
from bot.store import Store
from tests.media_factory import make_image
from tests.test_engine_fakes import FakeDelivery

DAY = 86400.0
#: SQLite's own files come and go with the connection; they are the database, not leftovers.
DATABASE = {"seedance.sqlite3", "seedance.sqlite3-wal", "seedance.sqlite3-shm"}


def listing(data_dir: Path) -> list[str]:
    """Every file under the data folder, relative, without the database's own files."""
    return sorted(str(p.relative_to(data_dir)) for p in data_dir.rglob("*")
                  if p.is_file() and p.name not in DATABASE)


@dataclass
class Local:
    settings: Settings
    engine: Engine
    store: Store
    now: list[float]
    image_url: str
    http: httpx.AsyncClient

    async def job_from_url(self, user: str = "u") -> str:
        """A first-frame job whose image was downloaded from a URL (a Discord attachment)."""
        request = await prepare(
            [MediaInput(self.image_url, name="file1 (cat.png)")],
            RequestOptions(prompt="the cat walks", duration=4, resolution=Resolution.P480,
                           provider="local"),
            self.engine.provider("local").capabilities(), http=self.http,
            cache_dir=self.engine.inputs_dir, policy=NetworkPolicy.parse("127.0.0.1"))
        job = await self.engine.enqueue(request, guild_id="g", channel_id="c", user_id=user)
        return job.id


@pytest.fixture
async def local(data_dir: Path, tmp_path: Path) -> AsyncIterator[Local]:
    png = make_image(tmp_path / "cat.png", 640, 480).read_bytes()
    app = web.Application()

    async def serve(_request: web.Request) -> web.Response:
        return web.Response(body=png, content_type="image/png")

    app.router.add_get("/cat.png", serve)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    url = f"http://127.0.0.1:{runner.addresses[0][1]}/cat.png"
    settings = Settings(_env_file=None, seedance_data_dir=data_dir)
    store = await Store.open(settings.database_path)
    provider = build(settings)
    now = [time.time()]
    async with httpx.AsyncClient() as http:
        engine = Engine(settings, store, delivery=FakeDelivery(), providers={"local": provider},
                        http=http, clock=lambda: now[0])
        await engine.start()
        try:
            yield Local(settings, engine, store, now, url, http)
        finally:
            await engine.stop()
            await provider.aclose()
            await store.close()
            await runner.cleanup()


async def test_retention_empties_the_data_folder_of_old_jobs(local: Local,
                                                             data_dir: Path) -> None:
    job_id = await local.job_from_url()
    done = await local.engine.wait(job_id)
    assert done.state is JobState.DELIVERED, done.error_message
    # A refused upload a crash left behind: no job refers to it.
    orphan = local.engine.inputs_dir / "left-by-a-crash"
    orphan.write_bytes(b"half an attachment")
    hour_ago = time.time() - 2 * 3600
    os.utime(orphan, (hour_ago, hour_ago))
    before = listing(data_dir)
    assert f"jobs/{job_id}/video.mp4" in before
    assert sum(p.startswith("cache/") for p in before) == 2  # the input copy and the orphan
    # The embedded provider's copy went as soon as the job had its own.
    assert not any(p.startswith("local_tasks/") for p in before), before

    assert await local.engine.cleanup() == 1  # only the orphan: the job is not old enough
    assert listing(data_dir) == sorted(p for p in before if p != "cache/left-by-a-crash")
    local.now[0] += 8 * DAY
    assert await local.engine.cleanup() == 2  # the video and the input copy
    assert listing(data_dir) == []
    cleaned = await local.store.get_job(job_id)
    assert cleaned is not None and cleaned.result_path is None
    assert await local.engine.cleanup() == 0  # each job once


async def test_retention_keeps_the_inputs_of_a_job_still_waiting(local: Local,
                                                                 data_dir: Path) -> None:
    await local.engine.stop()  # nothing runs: the job stays queued
    job_id = await local.job_from_url()
    (copy,) = [p for p in (data_dir / "cache").iterdir()]
    old = time.time() - 30 * DAY
    os.utime(copy, (old, old))
    local.now[0] += 30 * DAY
    await local.engine.cleanup()
    assert listing(data_dir) == [f"cache/{copy.name}"]
    job = await local.store.get_job(job_id)
    assert job is not None and job.state is JobState.QUEUED


async def test_delete_my_data_leaves_nothing_of_the_users_jobs(local: Local,
                                                               data_dir: Path) -> None:
    mine = await local.job_from_url("me")
    theirs = await local.job_from_url("someone")
    for job_id in (mine, theirs):
        assert (await local.engine.wait(job_id)).state is JobState.DELIVERED
    # A crash right after the download: the provider's copy (prompt and video) is still there.
    job = await local.store.get_job(mine)
    assert job is not None and job.task_id
    tasks = data_dir / "local_tasks"
    tasks.mkdir(exist_ok=True)
    (tasks / f"{job.task_id}.json").write_text('{"request": {"prompt": "the cat walks"}}')
    (tasks / f"{job.task_id}.mp4").write_bytes(b"video")
    before = listing(data_dir)
    assert f"local_tasks/{job.task_id}.json" in before

    await forget_user(local.store, data_dir, "me", now=time.time(),
                      discard=local.engine.discard_task)
    after = listing(data_dir)
    theirs_job = await local.store.get_job(theirs)
    assert theirs_job is not None and theirs_job.result_path
    theirs_files = {f"jobs/{theirs}/video.mp4",
                    *(str(Path(r.local_path or "").relative_to(data_dir))
                      for r in theirs_job.request.references)}
    assert set(after) == theirs_files


async def test_the_bots_retention_leaves_the_clis_inputs_alone(local: Local,
                                                              data_dir: Path) -> None:
    """The bot and the CLI may share a data folder; each database's retention knows only its
    own jobs, so each keeps its downloaded inputs in a folder of its own."""
    from bot.oneshot import cli_inputs

    cli_copy = cli_inputs(local.settings) / "an-input-of-a-running-cli-job"
    cli_copy.parent.mkdir(parents=True)
    cli_copy.write_bytes(b"png")
    old = time.time() - 30 * DAY
    os.utime(cli_copy, (old, old))
    local.now[0] += 30 * DAY
    await local.engine.cleanup()
    assert cli_copy.exists() and cli_inputs(local.settings) != local.engine.inputs_dir
