"""SQLite behind the `Database` interface of bot/store/database.py (see its docstring).

Two lanes to one file, because the two kinds of work cost very different things:

- **Statements run inline, on the event loop's thread.** The store's statements are short by
  construction (keyed or indexed, a handful of rows), so SQLite answers them from the page
  cache in microseconds; a trip to a worker thread costs far more than the work itself
  (bench/README.md: ~3 µs of CPU inline against ~190 µs through aiosqlite's thread, for the
  same keyed read; a job makes some fifty statements). What could make the loop wait is kept
  off it: the file's write lock is never waited for inside SQLite (`busy_timeout = 0`; a busy
  `BEGIN IMMEDIATE` is retried with `asyncio.sleep` until `LOCK_WAIT` has passed, then reported
  as "database is locked", which `is_outage` counts as an outage), and commits do not touch
  the disk's cache flush (WAL with `synchronous = NORMAL` syncs only at checkpoints).
- **aiosqlite's thread takes the slow work**: opening and migrating the file (a migration may
  rebuild a table), reads of many bytes (`fetch_bulky`: a library file), and the WAL
  checkpoints, which write the database pages and fsync. The
  inline connection never checkpoints (`wal_autocheckpoint = 0`); every `CHECKPOINT_EVERY`
  writes one runs on the thread, and the last connection to close folds the WAL in.

Because an inline statement never suspends, a transaction whose body only runs statements
holds the write lock for microseconds and no other coroutine runs inside it.

**Writes asked in one turn of the event loop share one transaction** (`atomic`). A commit
writes every page the transaction touched to the WAL, and a job's move touches about eleven
(the row, three indexes on its state, its history row and index): ~110 µs of CPU a commit on
a busy engine, more than the statements (bench/README.md, tenth pass). The writes queued
while the loop runs other coroutines go in one `BEGIN IMMEDIATE … COMMIT` at the next turn,
each inside its own savepoint, so one that fails is rolled back alone and the others commit;
each caller resumes only after the commit, as before. The batch runs without suspending (its
bodies only run statements), so the write lock is still held for one stretch of statements
and no reader in this process ever sees a write before it is committed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiosqlite

from bot.batches import Batches, Failed
from bot.store.database import Database, Dialect, Params, T, Tx

log = logging.getLogger(__name__)

#: How long a write waits for the file's write lock (another process's transaction).
LOCK_WAIT = 30.0
#: Writes between two checkpoints of the WAL (SQLite's own default is every 1,000 pages); a
#: batch of writes counts each of them, so the WAL grows no more between checkpoints.
CHECKPOINT_EVERY = 500
#: Writes one transaction carries at most (`SqliteDatabase.atomic`): another process waiting
#: for the write lock waits for all of them.
BATCH_MAX = 64
#: The inline connection's page cache, in KiB (SQLite's default is 2 MiB). With 2,000 jobs in
#: flight their rows alone outgrow 2 MiB, so every keeper pass and every move read its pages
#: back from the OS; 32 MiB holds the working set of a large bot, and is only used as filled
#: (a keeper pass 8-13 → 3.5-7 ms of CPU, bench/README.md, sixth pass).
CACHE_KIB = 32768
_NOW_SQL = "((julianday('now') - 2440587.5) * 86400.0)"


def _busy(exc: sqlite3.OperationalError) -> bool:
    text = str(exc)
    return "locked" in text or "busy" in text


class _InlineTx:
    """A transaction's statements on the inline connection: each runs to its end at once."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    async def fetch(self, sql: str, params: Params = ()) -> list[Any]:
        return self.conn.execute(sql, params).fetchall()

    async def fetchrow(self, sql: str, params: Params = ()) -> Any | None:
        return self.conn.execute(sql, params).fetchone()

    async def fetchval(self, sql: str, params: Params = ()) -> Any:
        row = self.conn.execute(sql, params).fetchone()
        return row[0] if row is not None else None

    async def execute(self, sql: str, params: Params = ()) -> int:
        return self.conn.execute(sql, params).rowcount

    async def notify(self, channel: str, payload: str) -> None:
        """SQLite has no notifications: other processes see the rows when they look."""


class _ThreadedTx:
    """A transaction's statements on aiosqlite's thread, one trip each (`execute_fetchall`)."""

    def __init__(self, conn: aiosqlite.Connection) -> None:
        self.conn = conn

    async def fetch(self, sql: str, params: Params = ()) -> list[Any]:
        return list(await self.conn.execute_fetchall(sql, params))

    async def fetchrow(self, sql: str, params: Params = ()) -> Any | None:
        rows = await self.conn.execute_fetchall(sql, params)
        return next(iter(rows), None)

    async def fetchval(self, sql: str, params: Params = ()) -> Any:
        row = await self.fetchrow(sql, params)
        return row[0] if row is not None else None

    async def execute(self, sql: str, params: Params = ()) -> int:
        return (await self.conn.execute(sql, params)).rowcount

    async def notify(self, channel: str, payload: str) -> None:
        """SQLite has no notifications."""


class _SlowLane(Database):
    """The file through aiosqlite's thread: what `SqliteDatabase` opens and migrates with."""

    dialect: Dialect = "sqlite"
    now_sql = _NOW_SQL

    def __init__(self, conn: aiosqlite.Connection) -> None:
        self.conn = conn

    @contextlib.asynccontextmanager
    async def transaction(self, *, lock: str | None = None) -> AsyncIterator[Tx]:
        await self.conn.execute("BEGIN IMMEDIATE")  # waits in SQLite's busy handler, off the loop
        try:
            yield _ThreadedTx(self.conn)
        except BaseException:
            await self.conn.execute("ROLLBACK")
            raise
        await self.conn.execute("COMMIT")

    async def fetch(self, sql: str, params: Params = ()) -> list[Any]:
        return list(await self.conn.execute_fetchall(sql, params))

    async def close(self) -> None:
        await self.conn.close()


class SqliteDatabase(Database):
    """One file, opened at first use (a CLI run refused before anything is written leaves no
    database file behind); `on_open` (the store's migrations) runs on the slow lane first."""

    dialect: Dialect = "sqlite"
    now_sql = _NOW_SQL

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._inline: sqlite3.Connection | None = None
        self._slow: aiosqlite.Connection | None = None
        self._lock = asyncio.Lock()
        self._opening = asyncio.Lock()
        self._unfolded = 0  # writes committed since the last checkpoint began
        self._writes: Batches[Callable[[Tx], Awaitable[Any]], Any] = Batches(
            self._write_batch, most=BATCH_MAX)
        self._checkpoint: asyncio.Task[None] | None = None
        self.on_open: Callable[[Database], Awaitable[None]] | None = None

    async def connection(self) -> sqlite3.Connection:
        if self._inline is None:
            async with self._opening:
                if self._inline is None:
                    self._inline = await self._open()
        return self._inline

    async def _open(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        slow = await aiosqlite.connect(str(self.path), isolation_level=None)
        slow.row_factory = aiosqlite.Row
        try:
            await slow.execute("PRAGMA busy_timeout = 30000")
            await _enable_wal(slow)
            await slow.execute("PRAGMA synchronous = NORMAL")
            await slow.execute("PRAGMA foreign_keys = ON")
            if self.on_open is not None:
                await self.on_open(_SlowLane(slow))
        except BaseException:
            await slow.close()
            raise
        inline = sqlite3.connect(str(self.path), isolation_level=None, check_same_thread=False)
        inline.row_factory = sqlite3.Row
        for pragma in ("busy_timeout = 0", "synchronous = NORMAL", "foreign_keys = ON",
                       "wal_autocheckpoint = 0", f"cache_size = -{CACHE_KIB}"):
            inline.execute(f"PRAGMA {pragma}")
        self._slow = slow
        return inline

    async def _locked(self, step: Callable[[], Any]) -> Any:
        """Run `step` (one statement), retrying while another process holds the write lock."""
        deadline = time.monotonic() + LOCK_WAIT
        delay = 0.0005
        while True:
            try:
                return step()
            except sqlite3.OperationalError as exc:
                if not _busy(exc) or time.monotonic() >= deadline:
                    raise
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.01)  # a transaction holds the lock for microseconds

    @contextlib.asynccontextmanager
    async def transaction(self, *, lock: str | None = None) -> AsyncIterator[Tx]:
        conn = await self.connection()
        async with self._lock:
            # The file's write lock at the start: every check made inside holds until COMMIT.
            await self._locked(lambda: conn.execute("BEGIN IMMEDIATE"))
            try:
                yield _InlineTx(conn)
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
        self._committed()

    async def fetch(self, sql: str, params: Params = ()) -> list[Any]:
        conn = await self.connection()
        async with self._lock:
            rows: list[Any] = await self._locked(lambda: conn.execute(sql, params).fetchall())
            return rows

    async def fetch_bulky(self, sql: str, params: Params = ()) -> list[Any]:
        """On aiosqlite's thread: copying megabytes out of the file would hold the loop."""
        await self.connection()
        assert self._slow is not None
        return list(await self._slow.execute_fetchall(sql, params))

    async def atomic(self, body: Callable[[Tx], Awaitable[T]], *, lock: str | None = None) -> T:
        """`body` in a transaction shared with the other writes asked in this turn of the loop
        (the module docstring); its result once that transaction has committed. Cancelling
        the caller does not cancel the write. `lock` is not needed: `BEGIN IMMEDIATE` takes
        the file's one write lock."""
        await self.connection()
        result: T = await self._writes.ask(body)
        return result

    async def _write_batch(self, bodies: list[Callable[[Tx], Awaitable[Any]]]) -> list[Any]:
        """One transaction for `bodies`, each in a savepoint of its own when there are several;
        their outcomes (bot/batches.py)."""
        conn = await self.connection()
        tx = _InlineTx(conn)
        shared = len(bodies) > 1
        outcomes: list[Any] = []
        async with self._lock:
            try:
                for body in bodies:
                    if not conn.in_transaction:  # the first, or SQLite rolled all back
                        await self._locked(lambda: conn.execute("BEGIN IMMEDIATE"))
                    if shared:
                        conn.execute("SAVEPOINT write")
                    try:
                        outcomes.append(await body(tx))
                    except Exception as exc:
                        if not conn.in_transaction:  # disk full, I/O: the whole of it is gone
                            outcomes = [o if isinstance(o, Failed) else Failed(exc)
                                        for o in outcomes]
                            outcomes.append(Failed(exc))
                            continue
                        outcomes.append(Failed(exc))
                        conn.execute("ROLLBACK TO write" if shared else "ROLLBACK")
                    if shared:
                        conn.execute("RELEASE write")
                if conn.in_transaction:
                    conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
        self._committed(sum(not isinstance(o, Failed) for o in outcomes))
        return outcomes

    def _committed(self, writes: int = 1) -> None:
        self._unfolded += writes
        if self._unfolded >= CHECKPOINT_EVERY and (
                self._checkpoint is None or self._checkpoint.done()):
            self._unfolded = 0
            self._checkpoint = asyncio.get_running_loop().create_task(self._fold_wal())

    async def _fold_wal(self) -> None:
        """Copy the WAL into the database file on the slow lane (it writes and fsyncs)."""
        if self._slow is None:
            return
        try:
            await self._slow.execute("PRAGMA wal_checkpoint(PASSIVE)")
        except sqlite3.Error as exc:  # another process checkpointing, or closing: next time
            log.debug("WAL checkpoint skipped: %s", exc)

    async def close(self) -> None:
        await self._writes.idle()  # the writes asked before closing
        async with self._lock:
            if self._checkpoint is not None:
                await self._checkpoint
                self._checkpoint = None
            if self._inline is not None:
                self._inline.close()
                self._inline = None
            if self._slow is not None:
                await self._slow.close()  # the last connection out folds the WAL in
                self._slow = None


async def _enable_wal(conn: aiosqlite.Connection, attempts: int = 100) -> None:
    """Switch to WAL. SQLite answers "database is locked" at once, without its busy handler,
    when two connections switch a new file at the same moment, so retry briefly."""
    for attempt in range(attempts):
        try:
            await conn.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or attempt == attempts - 1:
                raise
            await asyncio.sleep(0.05)


__all__ = ["BATCH_MAX", "CACHE_KIB", "CHECKPOINT_EVERY", "LOCK_WAIT", "SqliteDatabase"]
