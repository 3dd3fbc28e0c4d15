"""Two databases behind one small interface: SQLite (the embedded default) and PostgreSQL.

The store writes every statement once, with `?` placeholders, in the SQL both understand
(`INSERT … ON CONFLICT DO NOTHING`, `RETURNING`, `CASE`); PostgreSQL's `$1, $2, …` are made
from the `?`s (bot/store/postgres.py). A transaction is the unit of atomicity on both:

- SQLite: one connection per process and `BEGIN IMMEDIATE`, which takes the file's write lock
  at the start, so a check-then-write is atomic against other coroutines *and* other processes
  sharing the file (readers go on, WAL).
- PostgreSQL (bot/store/postgres.py): a connection from a pool per transaction. Row changes
  are guarded by the rows themselves (`SELECT … FOR UPDATE`, conditional `UPDATE`s); a check
  that spans rows (credits of a server, the scheduler's pick) names a `lock`, a
  transaction-scoped advisory lock, so two processes doing the same check take turns instead
  of both passing it.

Transactions are shielded from cancellation: a job runner cancelled mid-write still leaves a
whole transaction behind, never half of one. `now` is the database's clock, so leases mean the
same on every process whatever their own clocks say.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, Literal, Protocol, TypeVar
from urllib.parse import urlsplit, urlunsplit

import aiosqlite

T = TypeVar("T")
Dialect = Literal["sqlite", "postgres"]
Listener = Callable[[str], None]


Params = Sequence[Any]


class Tx(Protocol):
    """One transaction's statements. Rows read like mappings (`row["column"]`) on both."""

    async def fetch(self, sql: str, params: Params = ()) -> list[Any]: ...

    async def fetchrow(self, sql: str, params: Params = ()) -> Any | None: ...

    async def fetchval(self, sql: str, params: Params = ()) -> Any: ...

    async def execute(self, sql: str, params: Params = ()) -> int:
        """Run a statement; the number of rows it changed."""
        ...

    async def notify(self, channel: str, payload: str) -> None:
        """Tell every process listening on `channel`, when this transaction commits."""
        ...


class DatabaseUnavailable(Exception):
    """The database can't be reached (or refused us); the message names it, password masked."""


def masked(url: str) -> str:
    """A database URL fit for a log line or a message: no password."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "(unreadable URL)"
    host = parts.hostname or ""
    if parts.port:
        host += f":{parts.port}"
    user = f"{parts.username}:***@" if parts.password else (
        f"{parts.username}@" if parts.username else "")
    return urlunsplit((parts.scheme, user + host, parts.path, "", ""))


class Database(ABC):
    """What the store needs of a database."""

    dialect: Dialect
    #: Unix seconds by the database's clock, as an SQL expression.
    now_sql: str

    @abstractmethod
    def transaction(self, *, lock: str | None = None) -> contextlib.AbstractAsyncContextManager[Tx]:
        """A transaction; `lock` names a check that spans rows (see the module docstring)."""

    async def atomic(self, body: Callable[[Tx], Awaitable[T]], *, lock: str | None = None) -> T:
        """Run `body` in one transaction; cancellation waits for it to end."""

        async def run() -> T:
            async with self.transaction(lock=lock) as tx:
                return await body(tx)

        return await asyncio.shield(run())

    @abstractmethod
    async def fetch(self, sql: str, params: Params = ()) -> list[Any]:
        """A read outside any transaction (it sees what was committed)."""

    async def fetchrow(self, sql: str, params: Params = ()) -> Any | None:
        rows = await self.fetch(sql, params)
        return rows[0] if rows else None

    async def fetchval(self, sql: str, params: Params = ()) -> Any:
        row = await self.fetchrow(sql, params)
        return row[0] if row is not None else None

    async def now(self) -> float:
        return float(await self.fetchval(f"SELECT {self.now_sql}"))

    async def listen(self, channel: str, listener: Listener) -> bool:
        """Call `listener(payload)` on every notification on `channel`. False when this
        database has no notifications (SQLite): the caller polls instead."""
        return False

    @abstractmethod
    async def close(self) -> None: ...


# ---- SQLite ------------------------------------------------------------------------------------
class _SqliteTx:
    """Each statement is one trip to aiosqlite's thread (`execute_fetchall`), not three
    (execute, fetch, close): a transaction holds the file's write lock, and every trip waits
    for the event loop to come round, so trips are what a transaction costs (bench/README.md)."""

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
        # The cursor is left to the garbage collector: closing it would be one more trip, and
        # a finished statement holds nothing.
        return (await self.conn.execute(sql, params)).rowcount

    async def notify(self, channel: str, payload: str) -> None:
        """SQLite has no notifications: other processes see the rows when they look."""


class SqliteDatabase(Database):
    """One connection per process, opened at first use (a CLI run refused before anything is
    written leaves no database file behind)."""

    dialect: Dialect = "sqlite"
    now_sql = "((julianday('now') - 2440587.5) * 86400.0)"

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._conn: aiosqlite.Connection | None = None
        self._lock = asyncio.Lock()
        self._opening = asyncio.Lock()
        self.on_open: Callable[[], Awaitable[None]] | None = None  # migrations, set by the store

    async def connection(self) -> aiosqlite.Connection:
        if self._conn is None:
            async with self._opening:
                if self._conn is None:
                    if str(self.path) != ":memory:":
                        self.path.parent.mkdir(parents=True, exist_ok=True)
                    conn = await aiosqlite.connect(str(self.path), isolation_level=None)
                    conn.row_factory = aiosqlite.Row
                    await conn.execute("PRAGMA busy_timeout = 30000")
                    await _enable_wal(conn)
                    await conn.execute("PRAGMA synchronous = NORMAL")
                    await conn.execute("PRAGMA foreign_keys = ON")
                    self._conn = conn
                    if self.on_open is not None:
                        await self.on_open()
        return self._conn

    @contextlib.asynccontextmanager
    async def transaction(self, *, lock: str | None = None) -> AsyncIterator[Tx]:
        conn = await self.connection()
        async with self._lock:
            await conn.execute("BEGIN IMMEDIATE")  # the file's write lock: every check holds
            try:
                yield _SqliteTx(conn)
            except BaseException:
                await conn.execute("ROLLBACK")
                raise
            await conn.execute("COMMIT")

    async def fetch(self, sql: str, params: Params = ()) -> list[Any]:
        conn = await self.connection()
        async with self._lock:
            return list(await conn.execute_fetchall(sql, params))

    async def close(self) -> None:
        async with self._lock:
            if self._conn is not None:
                await self._conn.close()
                self._conn = None


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


def is_outage(exc: BaseException) -> bool:
    """Whether `exc` says the database is away (down, restarting, unreachable, locked too
    long) rather than that a statement is wrong: the work waits and is tried again, nothing
    is failed for it."""
    if isinstance(exc, DatabaseUnavailable):
        return True
    if isinstance(exc, sqlite3.OperationalError):
        text = str(exc)
        return "locked" in text or "busy" in text or "unable to open" in text
    return False


def is_postgres_url(value: str | None) -> bool:
    return bool(value) and str(value).startswith(("postgresql://", "postgres://"))


__all__ = [
    "Database",
    "DatabaseUnavailable",
    "Dialect",
    "SqliteDatabase",
    "Tx",
    "is_outage",
    "is_postgres_url",
    "masked",
]
