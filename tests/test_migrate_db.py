"""`seedance-bot migrate-db` against a real PostgreSQL: every table copied with its ids, new
rows and queue places after the copied ones, and the refusals (a target with data, a source a
bot still runs on). Also /healthz of a store whose PostgreSQL database went away.

The server is the test run's (conftest.py `postgres_server`, tests/pgserver.py); each test gets
a fresh database.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import httpx
import pytest

from bot.config import Settings
from bot.engine import Engine, JobState
from bot.health import HealthServer
from bot.models import GenerationRequest
from bot.providers.local import build
from bot.store import QuotaLimitRow, Store
from bot.store.library import LibraryItem
from tests import pgserver
from tests.test_engine_fakes import FakeDelivery, request

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def empty_database(postgres_url: str) -> str:
    """A new PostgreSQL database of its own for each test (conftest.py: tests/pgserver.py)."""
    return postgres_url


# ---- a SQLite database with some history -------------------------------------------------------
@pytest.fixture
async def sqlite_with_jobs(tmp_path: Path) -> AsyncIterator[Path]:
    """Finished, failed and waiting jobs, their ledger and transitions, settings and limits."""
    settings = Settings(_env_file=None, seedance_data_dir=tmp_path / "data")  # type: ignore[call-arg]
    store = await Store.open(settings.database_path)
    provider = build(settings)
    async with httpx.AsyncClient() as http:
        engine = Engine(settings, store, delivery=FakeDelivery(), providers={"local": provider},
                        http=http)
        await engine.start()
        done = [await engine.enqueue(local(f"a cat {i}"), guild_id="g", channel_id="c",
                                     user_id=f"u{i}") for i in range(3)]
        for job in done:
            assert (await engine.wait(job.id)).state is JobState.DELIVERED
        await engine.stop()
        # Waiting ones, as a stopped bot leaves them: queued, no owner.
        waiting = [await engine.enqueue(local(f"a dog {i}"), guild_id="g2", channel_id="c",
                                         user_id="w") for i in range(2)]
    # A library item (bytes and preview), registered on a gateway, used by a waiting job.
    item = library_item("g2")
    await store.add_library_item(item, bytes(range(256)) * 3, b"\x89PNG preview", max_items=5,
                                 max_bytes=10**9)
    await store.use_library_items(waiting[0].id, [(item.id, item.blob_id, "/data/cache/x")])
    await store.begin_library_group("g2", "anyfast")
    await store.end_library_group("g2", "anyfast", "group-1")
    await store.begin_library_asset(item.id, "anyfast")
    await store.end_library_asset(item.id, "anyfast", "asset-1")
    await provider.aclose()
    await store.set_quota_limit(QuotaLimitRow("role", "g", "vip", 90, "day"), now=time.time())
    await store.set_quota_limit(QuotaLimitRow("guild", "g", "", 900, "month"), now=time.time())
    await store.close()
    yield settings.database_path


def library_item(guild: str) -> LibraryItem:
    return LibraryItem(id="item-1", guild_id=guild, name="hero", kind="image", format="png",
                       size=768, seconds=None, width=800, height=450, description="",
                       owner_id="w", blob_id="blob-1", state="ready", uses=0, decided_by=None,
                       created_at=1.0, has_thumb=True)


def local(prompt: str) -> GenerationRequest:
    return request(prompt, provider="local", duration=4, resolution="480p", ratio="16:9")


def migrate(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SEEDANCE_")}
    env.update({"PYTHONPATH": str(REPO), "SEEDANCE_DATA_DIR": str(cwd / "data")})
    return subprocess.run([sys.executable, "-m", "bot", "migrate-db", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)


async def counts(store: Store) -> dict[str, int]:
    tables = [t for t in await table_names(store) if t != "schema_migrations"]
    return {t: int(await store.db.fetchval(f'SELECT COUNT(*) FROM "{t}"')) for t in tables}


async def table_names(store: Store) -> list[str]:
    if store.dialect == "sqlite":
        rows = await store.db.fetch("SELECT name FROM sqlite_master WHERE type = 'table'"
                                    " AND name NOT LIKE 'sqlite_%'")
    else:
        rows = await store.db.fetch("SELECT table_name AS name FROM information_schema.tables"
                                    " WHERE table_schema = current_schema()")
    return sorted(r["name"] for r in rows)


LEDGER_SUM = ("SELECT COALESCE(SUM(CASE kind WHEN 'reserve' THEN credits WHEN 'release' THEN"
              " -credits ELSE 0 END), 0) FROM ledger")


# ---- the copy ----------------------------------------------------------------------------------
async def test_every_table_is_copied_with_its_ids_and_new_rows_follow(
        sqlite_with_jobs: Path, empty_database: str) -> None:
    result = migrate("--to", empty_database, "--from", str(sqlite_with_jobs),
                     cwd=sqlite_with_jobs.parents[1])
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("copied 5 jobs (") and "SEEDANCE_DATABASE_URL" in result.stdout
    source, target = await Store.open(sqlite_with_jobs), await Store.open(empty_database)
    try:
        assert await source.schema_version() == await target.schema_version()
        source_counts = await counts(source)
        assert source_counts == await counts(target)
        assert source_counts["jobs"] == 5 and source_counts["job_transitions"] > 5
        # The library's bytes arrive whole (BLOB → bytea), with its assets and job uses.
        assert source_counts["library_items"] == source_counts["job_library"] == 1
        assert await target.library_items("g2") == await source.library_items("g2")
        assert await target.library_blob("blob-1") == bytes(range(256)) * 3
        assert await target.library_thumb("item-1") == b"\x89PNG preview"
        assert await target.library_assets(["item-1"], "anyfast") == {"item-1": "asset-1"}
        assert await target.begin_library_group("g2", "anyfast") == ("ready", "group-1")
        for job in await source.jobs():
            assert await target.get_job(job.id) == job
        assert await source.ledger(job.id) == await target.ledger(job.id)
        assert float(await source.db.fetchval(LEDGER_SUM)) == float(
            await target.db.fetchval(LEDGER_SUM))
        assert (await source.db.fetchval("SELECT MAX(id) FROM job_transitions")
                == await target.db.fetchval("SELECT MAX(id) FROM job_transitions"))
        # A new job queues after the copied ones, and new rows get new ids.
        settings = Settings(_env_file=None, seedance_data_dir=sqlite_with_jobs.parent)  # type: ignore[call-arg]
        async with httpx.AsyncClient() as http:
            provider = build(settings)
            engine = Engine(settings, target, delivery=FakeDelivery(),
                            providers={"local": provider}, http=http)
            new = await engine.enqueue(local("a new one"), guild_id="g", channel_id="c",
                                       user_id="n")
            await provider.aclose()
        copied_seq = await source.db.fetchval("SELECT MAX(seq) FROM jobs")
        assert new.seq > copied_seq
        assert await target.db.fetchval("SELECT COUNT(*) FROM ledger WHERE job_id = ?",
                                        (new.id,)) == 1
    finally:
        await source.close()
        await target.close()


async def test_a_target_that_holds_jobs_is_refused(sqlite_with_jobs: Path,
                                                   empty_database: str) -> None:
    first = migrate("--to", empty_database, "--from", str(sqlite_with_jobs),
                    cwd=sqlite_with_jobs.parents[1])
    assert first.returncode == 0, first.stderr
    again = migrate("--to", empty_database, "--from", str(sqlite_with_jobs),
                    cwd=sqlite_with_jobs.parents[1])
    assert again.returncode == 2 and again.stdout == ""
    line = again.stderr.strip()
    assert "\n" not in line and line.startswith("seedance-bot: nothing copied: PostgreSQL at")
    assert "already holds data (5 jobs and rows in" in line and "create a new one" in line


async def test_a_source_a_bot_still_runs_on_is_refused(sqlite_with_jobs: Path,
                                                       empty_database: str) -> None:
    store = await Store.open(sqlite_with_jobs)
    try:
        await store.db.atomic(lambda tx: tx.execute(
            f"UPDATE jobs SET owner = 'live', lease_until = {store.db.now_sql} + 600"
            " WHERE state = 'queued'"))
    finally:
        await store.close()
    result = migrate("--to", empty_database, "--from", str(sqlite_with_jobs),
                     cwd=sqlite_with_jobs.parents[1])
    assert result.returncode == 2
    line = result.stderr.strip()
    assert "a bot is still running on the SQLite database (2 jobs" in line and "\n" not in line
    target = await Store.open(empty_database)
    try:
        assert (await counts(target))["jobs"] == 0
    finally:
        await target.close()


def test_an_unreachable_target_is_one_line_with_the_password_masked(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "seedance.sqlite3").touch()
    result = migrate("--to", f"postgresql://bot:s3cret@127.0.0.1:{port}/seedance", cwd=tmp_path)
    assert result.returncode == 2
    assert f"postgresql://bot:***@127.0.0.1:{port}/seedance" in result.stderr
    assert "s3cret" not in result.stderr and "Traceback" not in result.stderr


def test_no_sqlite_file_is_refused(tmp_path: Path) -> None:
    result = migrate("--to", "postgresql://bot@127.0.0.1:1/seedance", cwd=tmp_path)
    assert result.returncode == 2
    assert f"there is no SQLite database at {tmp_path / 'data' / 'seedance.sqlite3'}" in (
        result.stderr)


# ---- /healthz of a dead PostgreSQL -------------------------------------------------------------
async def test_healthz_is_503_when_the_postgresql_database_goes_away(
        postgres_server: pgserver.PgServer, empty_database: str) -> None:
    store = await Store.open(empty_database)
    server = HealthServer(store.db.now, host="127.0.0.1", port=0)
    await server.start()
    try:
        async with httpx.AsyncClient() as http:
            url = f"http://127.0.0.1:{server.bound_port}/healthz"
            assert (await http.get(url)).status_code == 200
            admin = await asyncpg.connect(postgres_server.url)
            try:
                name = empty_database.rsplit("/", 1)[1]
                await admin.execute(f"DROP DATABASE {name} WITH (FORCE)")
            finally:
                await admin.close()
            answer = await http.get(url)
        assert answer.status_code == 503
        assert answer.json()["ok"] is False and "database" in answer.json()["reason"]
    finally:
        await server.stop()
        await asyncio.wait_for(store.close(), 10)
