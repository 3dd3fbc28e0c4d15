"""PostgreSQL behind the `Database` interface of bot/store/database.py (see its docstring):
a pool of asyncpg connections, `?` placeholders made `$n`, named checks as advisory locks,
LISTEN/NOTIFY for news between processes, and a server that went away as `DatabaseUnavailable`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

from bot.store.database import (
    Database,
    DatabaseUnavailable,
    Dialect,
    Listener,
    Params,
    Tx,
    masked,
)

log = logging.getLogger(__name__)

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
                                             timeout=connect_seconds, command_timeout=60,
                                             reset=_nothing_to_reset)
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

    async def execute(self, sql: str, params: Params = ()) -> int:
        async def run() -> int:
            with self._outage():
                async with self._pool.acquire() as conn:
                    return _rows_of(await conn.execute(self.sql(sql), *params))

        return await asyncio.shield(run())

    async def write_returning(self, sql: str, params: Params = ()) -> list[Any]:
        async def run() -> list[Any]:
            with self._outage():
                async with self._pool.acquire() as conn:
                    return list(await conn.fetch(self.sql(sql), *params))

        return await asyncio.shield(run())

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


async def _nothing_to_reset(_conn: Any) -> None:
    """What a pooled connection needs reset on its way back: nothing beyond the open
    transaction, which asyncpg rolls back before calling this. asyncpg's default reset is one
    more round trip per release (advisory unlock, CLOSE ALL, UNLISTEN, RESET ALL), a fifth of
    a job's trips (bench/README.md), for state this module never leaves on a pooled
    connection: locks are transaction-scoped (`pg_advisory_xact_lock`), no cursor outlives its
    transaction, no session setting is changed, and LISTEN has its own connection (`listen`),
    kept until `close`."""


__all__ = ["PostgresDatabase", "to_dollar"]
