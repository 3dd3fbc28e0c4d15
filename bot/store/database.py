"""Two databases behind one small interface: SQLite (the embedded default) and PostgreSQL.

The store writes every statement once, with `?` placeholders, in the SQL both understand
(`INSERT … ON CONFLICT DO NOTHING`, `RETURNING`, `CASE`); PostgreSQL's `$1, $2, …` are made
from the `?`s here. A transaction is the unit of atomicity on both:

- SQLite: one connection per process and `BEGIN IMMEDIATE`, which takes the file's write lock
  at the start, so a check-then-write is atomic against other coroutines *and* other processes
  sharing the file (readers go on, WAL).
- PostgreSQL: a connection from a pool per transaction. Row changes are guarded by the rows
  themselves (`SELECT … FOR UPDATE`, conditional `UPDATE`s); a check that spans rows (credits
  of a server, the scheduler's pick) names a `lock`, a transaction-scoped advisory lock, so two
  processes doing the same check take turns instead of both passing it.

Transactions are shielded from cancellation: a job runner cancelled mid-write still leaves a
whole transaction behind, never half of one. `now` is the database's clock, so leases mean the
same on every process whatever their own clocks say.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import sqlite3
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, Literal, Protocol, TypeVar
from urllib.parse import urlsplit, urlunsplit

import aiosqlite

log = logging.getLogger(__name__)

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


# ---- PostgreSQL --------------------------------------------------------------------------------
_PLACEHOLDER = re.compile(r"'(?:[^']|'')*'|\?")


def to_dollar(sql: str) -> str:
    """`?` placeholders to `$1, $2, …`, leaving `?` inside string literals alone."""
    counter = 0

    def number(match: re.Match[str]) -> str:
        nonlocal counter
        if match.group(0) != "?":
            return match.group(0)
        counter += 1
        return f"${counter}"

    return _PLACEHOLDER.sub(number, sql)


#: Lock names spelled into SQL as literals (`transaction`): ours are "seedance:admit:<id>"-like.
_LOCK_NAME = re.compile(r"[\w:.\-]{1,200}")


class _PostgresTx:
    def __init__(self, conn: Any, db: PostgresDatabase) -> None:
        self.conn = conn
        self.db = db

    async def fetch(self, sql: str, params: Params = ()) -> list[Any]:
        return list(await self.conn.fetch(self.db.sql(sql), *params))

    async def fetchrow(self, sql: str, params: Params = ()) -> Any | None:
        return await self.conn.fetchrow(self.db.sql(sql), *params)

    async def fetchval(self, sql: str, params: Params = ()) -> Any:
        return await self.conn.fetchval(self.db.sql(sql), *params)

    async def execute(self, sql: str, params: Params = ()) -> int:
        status = await self.conn.execute(self.db.sql(sql), *params)
        return _rows_of(status)

    async def notify(self, channel: str, payload: str) -> None:
        await self.conn.execute("SELECT pg_notify($1, $2)", channel, payload)


def _rows_of(status: str) -> int:
    """asyncpg's command status ("UPDATE 3", "INSERT 0 1", "DELETE 0") as a row count."""
    last = status.rsplit(" ", 1)[-1]
    return int(last) if last.isdigit() else 0


class PostgresDatabase(Database):
    """A pool of connections; each transaction borrows one."""

    dialect: Dialect = "postgres"
    now_sql = "EXTRACT(EPOCH FROM clock_timestamp())::double precision"

    def __init__(self, url: str, pool: Any) -> None:
        self.url = url
        self._pool = pool
        self._sql: dict[str, str] = {}
        self._listener: Any = None
        self._listeners: dict[str, list[Listener]] = {}
        self._dispatchers: dict[str, Callable[..., None]] = {}

    @classmethod
    async def connect(cls, url: str, *, min_size: int = 1, max_size: int = 10,
                      connect_seconds: float = 10.0) -> PostgresDatabase:
        import asyncpg

        try:
            pool = await asyncpg.create_pool(url, min_size=min_size, max_size=max_size,
                                             timeout=connect_seconds, command_timeout=60)
        except (TimeoutError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise DatabaseUnavailable(
                f"PostgreSQL at {masked(url)} can't be reached ({reason}); check that the server "
                "runs, the host and port, the user and password, and that the database exists"
            ) from None
        return cls(url, pool)

    def sql(self, text: str) -> str:
        converted = self._sql.get(text)
        if converted is None:
            converted = self._sql[text] = to_dollar(text)
        return converted

    @contextlib.asynccontextmanager
    async def transaction(self, *, lock: str | None = None) -> AsyncIterator[Tx]:
        """BEGIN and the lock go in one round trip (the simple protocol takes both): every
        trip of a locked transaction is a trip the next one waits for, and an admission's
        went from five to four (bench/quota.py). The lock stays `hashtext` of its name, so
        processes of an older version still take turns with this one."""
        import asyncpg

        with self._outage():
            async with self._pool.acquire() as conn:
                if lock is None:
                    await conn.execute("BEGIN")
                elif _LOCK_NAME.fullmatch(lock):
                    await conn.execute(f"BEGIN; SELECT pg_advisory_xact_lock(hashtext('{lock}'))")
                else:
                    await conn.execute("BEGIN")
                    await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", lock)
                try:
                    yield _PostgresTx(conn, self)
                except BaseException:
                    # A broken connection cannot roll back; the pool drops it, and the
                    # server ends its transaction. The first error is the one to report.
                    with contextlib.suppress(OSError, asyncpg.PostgresError,
                                             asyncpg.InterfaceError):
                        await conn.execute("ROLLBACK")
                    raise
                await conn.execute("COMMIT")

    async def fetch(self, sql: str, params: Params = ()) -> list[Any]:
        with self._outage():
            async with self._pool.acquire() as conn:
                return list(await conn.fetch(self.sql(sql), *params))

    @contextlib.contextmanager
    def _outage(self) -> Iterator[None]:
        """The server away (down, restarting, the network): `DatabaseUnavailable`, which the
        engine waits out (bot/engine/claims.py) and people are told to try again shortly."""
        import asyncpg

        try:
            yield
        except (OSError, asyncpg.PostgresConnectionError, asyncpg.InterfaceError,
                asyncpg.CannotConnectNowError, asyncpg.exceptions.AdminShutdownError) as exc:
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise DatabaseUnavailable(
                f"PostgreSQL at {masked(self.url)} is unreachable ({reason})") from exc

    async def listen(self, channel: str, listener: Listener) -> bool:
        """One dedicated connection listens for the whole process."""
        if self._listener is None:
            self._listener = await self._pool.acquire()
        if channel not in self._listeners:
            self._listeners[channel] = []

            def dispatch(_conn: Any, _pid: int, chan: str, payload: str) -> None:
                for call in self._listeners.get(chan, ()):
                    try:
                        call(payload)
                    except Exception:  # a listener's bug must not silence the others
                        log.exception("listener on %s failed", chan)

            await self._listener.add_listener(channel, dispatch)
            self._dispatchers[channel] = dispatch
        self._listeners[channel].append(listener)
        return True

    async def close(self) -> None:
        if self._listener is not None:
            with contextlib.suppress(Exception):
                # Unlisten first: asyncpg warns of a connection released with listeners on it.
                for channel, dispatch in self._dispatchers.items():
                    await self._listener.remove_listener(channel, dispatch)
                await self._pool.release(self._listener)
            self._dispatchers.clear()
            self._listener = None
        await self._pool.close()


async def open_database(url_or_path: str | Path) -> Database:
    """A `postgresql://` URL opens PostgreSQL; anything else is a SQLite file's path."""
    text = str(url_or_path)
    if text.startswith(("postgresql://", "postgres://")):
        return await PostgresDatabase.connect(text)
    return SqliteDatabase(Path(text))


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
    "PostgresDatabase",
    "SqliteDatabase",
    "Tx",
    "is_outage",
    "is_postgres_url",
    "masked",
    "open_database",
    "to_dollar",
]
