"""bot/store/sqlite.py: the writes asked in one turn of the event loop share one transaction,
each in its own savepoint, and every caller still resumes only after its write is committed.

Commits are counted as SQLite sees them (its trace of the statements it runs), and what is
committed is read back through a second connection to the file, as another process would."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from bot.store.database import Tx, is_outage
from bot.store.sqlite import BATCH_MAX, SqliteDatabase


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[SqliteDatabase]:
    database = SqliteDatabase(tmp_path / "t.sqlite")
    await database.execute("CREATE TABLE t (n INTEGER PRIMARY KEY, note TEXT)")
    yield database
    await database.close()


def statements(conn: sqlite3.Connection) -> list[str]:
    seen: list[str] = []
    conn.set_trace_callback(seen.append)
    return seen


def committed(path: Path) -> list[int]:
    """The rows another connection (another process) sees."""
    with sqlite3.connect(path) as other:
        return [n for (n,) in other.execute("SELECT n FROM t ORDER BY n")]


def insert(n: int) -> Any:
    async def body(tx: Tx) -> int:
        return await tx.execute("INSERT INTO t (n) VALUES (?)", (n,))
    return body


async def test_writes_of_one_turn_share_one_commit(db: SqliteDatabase) -> None:
    seen = statements(await db.connection())
    results = await asyncio.gather(*(db.atomic(insert(n)) for n in range(10)))
    assert results == [1] * 10
    assert seen.count("COMMIT") == 1 and seen.count("BEGIN IMMEDIATE") == 1
    assert committed(db.path) == list(range(10))


async def test_a_write_alone_takes_no_savepoint(db: SqliteDatabase) -> None:
    seen = statements(await db.connection())
    await db.atomic(insert(1))
    assert seen == ["BEGIN IMMEDIATE", "INSERT INTO t (n) VALUES (1)", "COMMIT"]


async def test_a_failing_write_is_rolled_back_alone(db: SqliteDatabase) -> None:
    async def half_then_fail(tx: Tx) -> None:
        await tx.execute("INSERT INTO t (n) VALUES (100)")
        raise ZeroDivisionError("the body's own error")

    outcomes = await asyncio.gather(
        db.atomic(insert(1)), db.atomic(half_then_fail), db.atomic(insert(1)),  # duplicate key
        db.atomic(insert(2)), return_exceptions=True)
    assert outcomes[0] == 1 and outcomes[3] == 1
    assert isinstance(outcomes[1], ZeroDivisionError)
    assert isinstance(outcomes[2], sqlite3.IntegrityError)
    assert committed(db.path) == [1, 2]


async def test_more_writes_than_a_batch_carries_take_several_commits(
        db: SqliteDatabase) -> None:
    seen = statements(await db.connection())
    count = 2 * BATCH_MAX + 3
    await asyncio.gather(*(db.atomic(insert(n)) for n in range(count)))
    assert seen.count("COMMIT") == 3
    assert committed(db.path) == list(range(count))


async def test_a_reader_never_sees_a_write_before_its_commit(db: SqliteDatabase) -> None:
    """Even a body that suspends (none of the store's does) holds the readers back."""
    inside = asyncio.Event()

    async def slow(tx: Tx) -> None:
        await tx.execute("INSERT INTO t (n) VALUES (7)")
        inside.set()
        await asyncio.sleep(0.05)

    write = asyncio.ensure_future(db.atomic(slow))
    await inside.wait()
    seen = [r["n"] for r in await db.fetch("SELECT n FROM t")]  # waits for the commit
    assert seen == committed(db.path) == [7]
    await write
    assert [r["n"] for r in await db.fetch("SELECT n FROM t")] == [7]


async def test_a_cancelled_caller_still_has_its_write_committed(db: SqliteDatabase) -> None:
    caller = asyncio.ensure_future(db.atomic(insert(5)))
    await asyncio.sleep(0)  # asked, not yet run
    caller.cancel()
    with pytest.raises(asyncio.CancelledError):
        await caller
    await db.atomic(insert(6))  # queued behind it: once this one is in, so is the first
    assert committed(db.path) == [5, 6]


async def test_writes_wait_for_another_process_holding_the_write_lock(
        db: SqliteDatabase) -> None:
    other = sqlite3.connect(db.path, isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")
    other.execute("INSERT INTO t (n) VALUES (50)")
    release = threading.Timer(0.2, lambda: other.execute("COMMIT"))
    release.start()
    try:
        await asyncio.gather(*(db.atomic(insert(n)) for n in range(3)))
    finally:
        release.join()
        other.close()
    assert committed(db.path) == [0, 1, 2, 50]


async def test_a_batch_that_cannot_get_the_lock_fails_every_write_as_an_outage(
        db: SqliteDatabase, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("bot.store.sqlite.LOCK_WAIT", 0.05)
    other = sqlite3.connect(db.path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    try:
        outcomes = await asyncio.gather(*(db.atomic(insert(n)) for n in range(3)),
                                        return_exceptions=True)
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert all(isinstance(o, sqlite3.OperationalError) and is_outage(o) for o in outcomes)
    await db.atomic(insert(9))  # the connection is usable again
    assert committed(db.path) == [9]


async def test_a_full_disk_fails_exactly_the_writes_that_were_not_kept(
        db: SqliteDatabase) -> None:
    """SQLite may roll a whole transaction back on SQLITE_FULL: whichever it does, a caller
    told its write is in finds it in the file, and one told it failed does not."""
    conn = await db.connection()
    pages = conn.execute("PRAGMA page_count").fetchone()[0]
    conn.execute(f"PRAGMA max_page_count = {pages + 3}")

    def big(n: int) -> Any:
        async def body(tx: Tx) -> int:
            return await tx.execute("INSERT INTO t (n, note) VALUES (?, ?)", (n, "x" * 3000))
        return body

    outcomes = await asyncio.gather(*(db.atomic(big(n)) for n in range(12)),
                                    return_exceptions=True)
    kept = [n for n, o in enumerate(outcomes) if o == 1]
    refused = [o for o in outcomes if o != 1]
    assert refused and all(isinstance(o, sqlite3.OperationalError) for o in refused)
    assert committed(db.path) == kept
    conn.execute(f"PRAGMA max_page_count = {2 ** 30}")
    await db.atomic(insert(100))
    assert committed(db.path) == [*kept, 100]


async def test_close_commits_the_writes_asked_before_it(tmp_path: Path) -> None:
    db = SqliteDatabase(tmp_path / "t.sqlite")
    await db.execute("CREATE TABLE t (n INTEGER PRIMARY KEY, note TEXT)")
    writes = [asyncio.ensure_future(db.atomic(insert(n))) for n in range(4)]
    await asyncio.sleep(0)
    await db.close()
    assert all(w.done() and w.result() == 1 for w in writes)
    assert committed(db.path) == [0, 1, 2, 3]


async def test_the_wal_is_folded_in_after_so_many_writes_however_batched(
        db: SqliteDatabase, monkeypatch: pytest.MonkeyPatch) -> None:
    """Three commits of four writes each: twelve writes, past a checkpoint every eight, so
    the pages reach the database file (three commits alone would not have asked for one)."""
    monkeypatch.setattr("bot.store.sqlite.CHECKPOINT_EVERY", 8)
    before = db.path.stat().st_size

    def big(n: int) -> Any:
        async def body(tx: Tx) -> int:
            return await tx.execute("INSERT INTO t (n, note) VALUES (?, ?)", (n, "x" * 3000))
        return body

    seen = statements(await db.connection())
    for turn in range(3):
        await asyncio.gather(*(db.atomic(big(4 * turn + k)) for k in range(4)))
    assert seen.count("COMMIT") == 3
    for _ in range(250):
        if db.path.stat().st_size > before:
            break
        await asyncio.sleep(0.02)
    assert db.path.stat().st_size > before
