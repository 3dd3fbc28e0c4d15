"""Two databases behind one small interface: SQLite (the embedded default) and PostgreSQL.

The store writes every statement once, with `?` placeholders, in the SQL both understand
(`INSERT … ON CONFLICT DO NOTHING`, `RETURNING`, `CASE`); PostgreSQL's `$1, $2, …` are made
from the `?`s (bot/store/postgres.py). A transaction is the unit of atomicity on both:

- SQLite (bot/store/sqlite.py): one connection per process and `BEGIN IMMEDIATE`, which takes
  the file's write lock at the start, so a check-then-write is atomic against other coroutines
  *and* other processes sharing the file (readers go on, WAL).
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
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Literal, Protocol, TypeVar
from urllib.parse import urlsplit, urlunsplit

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

    async def fetch_bulky(self, sql: str, params: Params = ()) -> list[Any]:
        """A read of many bytes (a library file, up to the input cap): where statements run
        on the event loop's thread (SQLite), this one does not."""
        return await self.fetch(sql, params)

    async def execute(self, sql: str, params: Params = ()) -> int:
        """One statement, a transaction of its own; the rows it changed. Backends run it as
        one round trip (no BEGIN, no COMMIT); cancellation waits for it to end."""

        async def body(tx: Tx) -> int:
            return await tx.execute(sql, params)

        return await self.atomic(body)

    async def write_returning(self, sql: str, params: Params = ()) -> list[Any]:
        """One statement that writes and returns rows, a transaction of its own (one round
        trip on PostgreSQL); cancellation waits for it to end."""

        async def body(tx: Tx) -> list[Any]:
            return await tx.fetch(sql, params)

        return await self.atomic(body)

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
    "Tx",
    "is_outage",
    "is_postgres_url",
    "masked",
]
