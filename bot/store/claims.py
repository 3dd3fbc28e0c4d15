"""SQL for many processes on one queue: who drives each active job, news for a job's driver,
and the fair queue's memory.

A job in an active state has an `owner` (a process) until `lease_until`, by the database's
clock, so processes with skewed clocks agree. The owner renews its leases while it lives; a job
whose lease ran out (its owner died) is taken over by any process (`claim`), once: the claim is
a conditional update, and on PostgreSQL the candidates are read `FOR UPDATE SKIP LOCKED` so two
processes scanning at once split them instead of colliding. A mixin of `Store`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from bot.store.database import Database, Tx
from bot.store.records import ACTIVE_STATES, JobState, JobView, Served

#: The fair queue's counter: how many jobs were ever started, across processes.
FAIR_TICK = "fair_tick"


def _in(states: Iterable[JobState]) -> tuple[str, list[str]]:
    wanted = [s.value for s in states]
    return ",".join("?" * len(wanted)), wanted


class ClaimsStore:
    """Claims, leases, updates and the fair queue's memory. `Store` provides the rest."""

    db: Database
    _read: Callable[..., Awaitable[list[Any]]]
    _atomic: Callable[..., Awaitable[Any]]
    _job_from_row: Callable[[Any], JobView]

    async def db_now(self) -> float:
        """The database's clock (leases are measured by it, not by any process's)."""
        return await self.db.now()

    async def renew(self, owner: str, ttl: float) -> int:
        """Extend the leases of every active job `owner` drives; how many it holds."""
        marks, states = _in(ACTIVE_STATES)

        async def body(tx: Tx) -> int:
            return await tx.execute(
                f"UPDATE jobs SET lease_until = {self.db.now_sql} + ? WHERE owner = ?"
                f" AND state IN ({marks})", (ttl, owner, *states))

        renewed: int = await self._atomic(body)
        return renewed

    async def orphans(self, limit: int = 100) -> list[JobView]:
        """Active jobs nobody drives: never claimed, released, or whose lease ran out."""
        marks, states = _in(ACTIVE_STATES)
        rows = await self._read(
            f"SELECT * FROM jobs WHERE state IN ({marks}) AND (lease_until IS NULL"
            f" OR lease_until < {self.db.now_sql}) ORDER BY seq LIMIT ?", (*states, limit))
        return [self._job_from_row(r) for r in rows]

    async def owners(self) -> dict[str, int]:
        """Which processes drive how many active jobs (for sweeps and tests)."""
        marks, states = _in(ACTIVE_STATES)
        rows = await self._read(
            f"SELECT owner, COUNT(*) AS n FROM jobs WHERE state IN ({marks})"
            " AND owner IS NOT NULL GROUP BY owner", states)
        return {r["owner"]: int(r["n"]) for r in rows}

    async def claim(self, job_id: str, owner: str, ttl: float, *,
                    replacing: str | None = None) -> JobView | None:
        """Take over an active job whose lease ran out (or whose owner `replacing` the caller
        proved dead); None when another process holds it, or it is no longer active."""
        marks, states = _in(ACTIVE_STATES)
        skip = " FOR UPDATE SKIP LOCKED" if self.db.dialect == "postgres" else ""

        async def body(tx: Tx) -> JobView | None:
            row = await tx.fetchrow(
                f"SELECT id FROM jobs WHERE id = ? AND state IN ({marks}) AND (lease_until IS"
                f" NULL OR lease_until < {self.db.now_sql} OR owner = ? OR owner = ?){skip}",
                (job_id, *states, owner, replacing or owner))
            if row is None:
                return None
            taken = await tx.fetchrow(
                f"UPDATE jobs SET owner = ?, lease_until = {self.db.now_sql} + ?"
                " WHERE id = ? RETURNING *", (owner, ttl, job_id))
            return self._job_from_row(taken) if taken else None

        result: JobView | None = await self._atomic(body)
        return result

    async def release(self, owner: str) -> int:
        """Give up every lease `owner` holds (a clean stop): others take the jobs over at once."""

        async def body(tx: Tx) -> int:
            return await tx.execute(
                "UPDATE jobs SET lease_until = NULL WHERE owner = ?", (owner,))

        released: int = await self._atomic(body)
        return released

    # ---- news for a job's driver -----------------------------------------------------------
    async def record_update(self, job_id: str, state: str, *, now: float) -> int:
        """Keep a task's news (a callback that reached another process) for the job's owner;
        its id. Every process listening hears of it (PostgreSQL); others look (SQLite)."""

        async def body(tx: Tx) -> int:
            new_id = await tx.fetchval(
                "INSERT INTO job_updates (job_id, state, at) VALUES (?, ?, ?) RETURNING id",
                (job_id, state, now))
            await tx.notify("seedance_updates", job_id)
            return int(new_id)

        recorded: int = await self._atomic(body)
        return recorded

    async def updates(self, job_id: str, *, after: int = 0) -> list[tuple[int, str]]:
        rows = await self._read(
            "SELECT id, state FROM job_updates WHERE job_id = ? AND id > ? ORDER BY id",
            (job_id, after))
        return [(int(r["id"]), str(r["state"])) for r in rows]

    async def drop_updates(self, job_id: str) -> None:
        async def body(tx: Tx) -> None:
            await tx.execute("DELETE FROM job_updates WHERE job_id = ?", (job_id,))

        await self._atomic(body)

    # ---- cancelling a job another process drives --------------------------------------------
    async def request_cancel(self, job_id: str, by: str) -> bool:
        """Ask the job's owner to cancel it; False when it is no longer active."""
        marks, states = _in(ACTIVE_STATES)

        async def body(tx: Tx) -> bool:
            changed = await tx.execute(
                f"UPDATE jobs SET cancel_requested = ? WHERE id = ? AND state IN ({marks})",
                (by, job_id, *states))
            if changed:
                await tx.notify("seedance_updates", job_id)
            return changed > 0

        asked: bool = await self._atomic(body)
        return asked

    async def cancel_requests(self, owner: str) -> list[JobView]:
        """Jobs this process drives that someone asked to cancel."""
        marks, states = _in(ACTIVE_STATES)
        rows = await self._read(
            f"SELECT * FROM jobs WHERE owner = ? AND cancel_requested IS NOT NULL"
            f" AND state IN ({marks})", (owner, *states))
        return [self._job_from_row(r) for r in rows]

    # ---- the fair queue's memory ------------------------------------------------------------
    async def served(self, tx: Tx) -> Served:
        """Who was served when, and the tick, as this transaction sees them."""
        rows = await tx.fetch("SELECT scope, key, tick FROM fair_served")
        tick = await tx.fetchval("SELECT value FROM counters WHERE name = ?", (FAIR_TICK,))
        guilds = {r["key"]: int(r["tick"]) for r in rows if r["scope"] == "guild"}
        users = {tuple(r["key"].split(":", 1)): int(r["tick"]) for r in rows
                 if r["scope"] == "user"}
        return Served(guilds, users, int(tick or 0))

    async def save_served(self, tx: Tx, served: Served, changed: Served) -> None:
        for guild, tick in changed.guilds.items():
            await tx.execute(
                "INSERT INTO fair_served (scope, key, tick) VALUES ('guild', ?, ?)"
                " ON CONFLICT (scope, key) DO UPDATE SET tick = excluded.tick", (guild, tick))
        for (guild, user), tick in changed.users.items():
            await tx.execute(
                "INSERT INTO fair_served (scope, key, tick) VALUES ('user', ?, ?)"
                " ON CONFLICT (scope, key) DO UPDATE SET tick = excluded.tick",
                (f"{guild}:{user}", tick))
        await tx.execute(
            "INSERT INTO counters (name, value) VALUES (?, ?) ON CONFLICT (name)"
            " DO UPDATE SET value = excluded.value", (FAIR_TICK, served.tick))
