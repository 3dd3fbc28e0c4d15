"""The engine with the real offline provider (bot/providers/local.py): real renders, real files,
and a killed `seedance-bot generate` subprocess resumed over its own database."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from bot.config import Settings
from bot.engine import Engine, JobState
from bot.oneshot import FileDelivery
from bot.providers.local import build
from bot.store import Store
from tests.test_engine_fakes import FakeDelivery, request


@pytest.fixture
async def local(data_dir: Path) -> AsyncIterator[tuple[Engine, FakeDelivery, Store]]:
    settings = Settings(seedance_data_dir=data_dir)
    store = await Store.open(settings.database_path)
    provider = build(settings)
    delivery = FakeDelivery()
    async with httpx.AsyncClient() as http:
        engine = Engine(settings, store, delivery=delivery, providers={"local": provider},
                        http=http)
        await engine.start()
        yield engine, delivery, store
        await engine.stop()
    await provider.aclose()
    await store.close()


def local_request(prompt: str, **kw: object) -> object:
    return request(prompt, provider="local", duration=4, resolution="480p", ratio="16:9", **kw)


async def test_local_job_is_rendered_downloaded_and_delivered(
    local: tuple[Engine, FakeDelivery, Store],
) -> None:
    engine, delivery, store = local
    job = await engine.enqueue(local_request("a red ball", return_last_frame=True),  # type: ignore[arg-type]
                               guild_id="g", channel_id="c", user_id="u")
    done = await engine.wait(job.id)
    assert done.state is JobState.DELIVERED, done.error_message
    result = delivery.results[job.id]
    assert result.video_path.stat().st_size > 1000
    assert result.video_path.read_bytes()[4:8] == b"ftyp"
    assert result.last_frame_path is not None and result.last_frame_path.exists()
    assert [ln.kind for ln in await store.ledger(job.id)] == ["reserve", "commit"]


async def test_local_audio_moderation_is_retried_without_audio(
    local: tuple[Engine, FakeDelivery, Store],
) -> None:
    engine, delivery, _store = local
    job = await engine.enqueue(local_request("a song [local:fail:audio_moderation]"),  # type: ignore[arg-type]
                               guild_id="g", channel_id="c", user_id="u")
    done = await engine.wait(job.id)
    assert done.state is JobState.DELIVERED and done.audio_retried
    assert len(delivery.of(job.id, "retrying")) == 1


def _state(db: Path) -> str | None:
    if not db.exists():
        return None
    try:
        with sqlite3.connect(db, timeout=5) as conn:
            row = conn.execute("SELECT state FROM jobs").fetchone()
    except sqlite3.OperationalError:
        return None
    return row[0] if row else None


async def test_killed_cli_subprocess_resumes_and_writes_once(
    data_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out.mp4"
    env = {k: v for k, v in os.environ.items() if not k.startswith("SEEDANCE_")}
    env.update(SEEDANCE_DATA_DIR=str(data_dir), SEEDANCE_LOCAL_DELAY="3")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", "generate", "a slow blue square", "--out", str(out),
        "--provider", "local", "--duration", "4", "--resolution", "480p", "--ratio", "16:9",
        env=env, cwd=tmp_path, stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    db = data_dir / "cli.sqlite3"
    try:
        for _ in range(3000):
            if _state(db) == "generating" or proc.returncode is not None:
                break
            await asyncio.sleep(0.01)
        assert _state(db) == "generating", proc.returncode
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGKILL)
        await proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert not out.exists()

    # Restart over the same database; the local task's deadline is wall-clock, like a gateway's.
    settings = Settings(seedance_data_dir=data_dir)
    store = await Store.open(db)
    provider = build(settings)
    async with httpx.AsyncClient() as http:
        engine = Engine(settings, store, delivery=FileDelivery(progress=False),
                        providers={"local": provider}, http=http)
        await engine.start()
        (job,) = await store.jobs()
        done = await engine.wait(job.id)
        await engine.stop()
    await provider.aclose()
    assert done.state is JobState.DELIVERED and done.delivery_ref == str(out.resolve())
    assert out.read_bytes()[4:8] == b"ftyp"
    assert [ln.kind for ln in await store.ledger(job.id)] == ["reserve", "commit"]
    trail = [t.to_state for t in await store.transitions(job.id)]
    assert trail.count("submitting") == 1 and trail[-1] == "delivered"
    await store.close()
