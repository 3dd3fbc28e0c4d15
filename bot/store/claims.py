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
from bot.store.records import (
    ACTIVE_STATES,
    IN_FLIGHT_STATES,
    RUNNING_STATES,
    WAITING_STATES,
    JobState,
    JobView,
    QueuedRow,
    RunningCounts,
    SchedulePass,
    Served,
)
from bot.store.rows import chunks

#: Picks the jobs to start from the waiting ones, the slots taken and the served memory (which
#: it advances in place); bot/engine/scheduler.py's `FairQueue.pick_counted`.
Choose = Callable[[list[QueuedRow], RunningCounts, Served], list[QueuedRow]]

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

    async def task_owners(self, provider: str, task_ids: Iterable[str]) -> dict[str, str]:
        """Which of `task_ids` at `provider` a job has already (task id → job id)."""
        ids = list(dict.fromkeys(task_ids))
        if not ids:
            return {}
        rows = await self._read(
            f"SELECT id, task_id FROM jobs WHERE provider = ? AND task_id IN "
            f"({','.join('?' * len(ids))})", [provider, *ids])
        return {r["task_id"]: r["id"] for r in rows}

    async def submitting_at(self, provider: str) -> list[JobView]:
        """Jobs whose create to `provider` may be on its way (state SUBMITTING)."""
        rows = await self._read(
            "SELECT * FROM jobs WHERE provider = ? AND state = ?",
            (provider, JobState.SUBMITTING.value))
        return [self._job_from_row(r) for r in rows]

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

    async def orphans(self, *, owner: str | None = None, limit: int = 500) -> list[JobView]:
        """Active jobs nobody drives: never claimed, released, or whose lease ran out; with
        `owner`, every active job of that (dead) process, whatever its leases say."""
        marks, states = _in(ACTIVE_STATES)
        if owner is not None:
            rows = await self._read(
                f"SELECT * FROM jobs WHERE state IN ({marks}) AND owner = ? ORDER BY seq"
                " LIMIT ?", (*states, owner, limit))
        else:
            rows = await self._read(
                f"SELECT * FROM jobs WHERE state IN ({marks}) AND (lease_until IS NULL"
                f" OR lease_until < {self.db.now_sql}) ORDER BY seq LIMIT ?", (*states, limit))
        return [self._job_from_row(r) for r in rows]

    async def owned(self, owner: str) -> set[str]:
        """The ids of the active jobs `owner` drives (no row decoded: a keeper asks often)."""
        marks, states = _in(ACTIVE_STATES)
        rows = await self._read(
            f"SELECT id FROM jobs WHERE owner = ? AND state IN ({marks})", (owner, *states))
        return {str(r["id"]) for r in rows}

    async def owners(self) -> dict[str, int]:
        """Which processes drive how many active jobs (for sweeps and tests).

        Only an active job has an owner (a move out of the active states clears it,
        bot/store/transitions.py), so the partial owner index answers without a state filter
        (on SQLite without reading a row): the keeper asks every second, and reading every
        active row each time made this its costliest question (bench/README.md, sixth pass)."""
        rows = await self._read(
            "SELECT owner, COUNT(*) AS n FROM jobs WHERE owner IS NOT NULL GROUP BY owner")
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

    # ---- starting queued jobs ----------------------------------------------------------------
    async def schedule(self, choose: Choose, *, owner: str, ttl: float, now: float) -> SchedulePass:
        """One scheduling pass for every process: read the waiting jobs, the slots running jobs
        hold and the served memory, let `choose` pick, and move each pick to SUBMITTING claimed
        by `owner` — all in one transaction under one lock, so two processes never both fill
        the last slot of a cap, nor start the same job, nor lose each other's turns.

        Reads no request and no running row (a grouped count), so a pass costs the same with
        2,000 jobs in flight as with none."""
        running_marks, running = _in(RUNNING_STATES)
        in_flight = {s.value for s in IN_FLIGHT_STATES}

        async def body(tx: Tx) -> SchedulePass:
            rows = await tx.fetch(
                "SELECT id, guild_id, user_id, provider, seq, not_before, attempts FROM jobs"
                " WHERE state = 'queued' ORDER BY seq")
            waiting = [QueuedRow(r["id"], r["guild_id"], r["user_id"], r["provider"],
                                 int(r["seq"]), float(r["not_before"]), int(r["attempts"]))
                       for r in rows]
            if not waiting:
                return SchedulePass([], [], await self.served(tx))
            counts = RunningCounts()
            for r in await tx.fetch(
                "SELECT provider, guild_id, user_id, state, COUNT(*) AS n FROM jobs"
                f" WHERE state IN ({running_marks}) GROUP BY provider, guild_id, user_id, state",
                running,
            ):
                n = int(r["n"])
                if r["state"] in in_flight:
                    counts.gateways[r["provider"]] = counts.gateways.get(r["provider"], 0) + n
                counts.guilds[r["guild_id"]] = counts.guilds.get(r["guild_id"], 0) + n
                key = (r["guild_id"], r["user_id"])
                counts.users[key] = counts.users.get(key, 0) + n
            served = await self.served(tx)
            chosen = choose(waiting, counts, served)
            started = await self._start(tx, [j.id for j in chosen], owner=owner, ttl=ttl,
                                        now=now)
            if chosen:
                changed = Served(
                    {j.guild_id: served.guilds[j.guild_id] for j in chosen
                     if j.guild_id in served.guilds},
                    {(j.guild_id, j.user_id): served.users[(j.guild_id, j.user_id)]
                     for j in chosen if (j.guild_id, j.user_id) in served.users},
                    served.tick)
                await self.save_served(tx, served, changed)
            gone = {j.id for j in chosen}
            return SchedulePass(started, [j for j in waiting if j.id not in gone], served)

        result: SchedulePass = await self._atomic(body, lock="seedance:schedule")
        return result

    async def _start(self, tx: Tx, ids: list[str], *, owner: str, ttl: float,
                     now: float) -> list[JobView]:
        """Move the pass's picks `ids` (still queued) to SUBMITTING, claimed by `owner`, with
        their history lines; the jobs as written, in the picks' order.

        One UPDATE and one INSERT per chunk of picks instead of two statements per pick: on
        PostgreSQL each statement is a round trip, and a pass over a burst starts hundreds."""
        written: dict[str, Any] = {}
        for chunk in chunks(ids):
            moved = await tx.fetch(
                "UPDATE jobs SET state = 'submitting', attempts = attempts + 1,"
                " started_at = ?, updated_at = ?, owner = ?,"
                f" lease_until = {self.db.now_sql} + ?, told_position = NULL"
                f" WHERE id IN ({', '.join('?' * len(chunk))}) AND state = 'queued'"
                " RETURNING *", (now, now, owner, ttl, *chunk))
            if not moved:
                continue
            await tx.execute(
                "INSERT INTO job_transitions (job_id, from_state, to_state, at, detail) VALUES "
                + ", ".join("(?, 'queued', 'submitting', ?, ?)" for _ in moved),
                [v for r in moved for v in (r["id"], now, f"attempt {r['attempts']}")])
            written.update((str(r["id"]), r) for r in moved)
        return [self._job_from_row(written[i]) for i in ids if i in written]

    async def waiting_guilds(self) -> set[str]:
        """The servers with jobs queued (whose caps a scheduling pass needs)."""
        rows = await self._read("SELECT DISTINCT guild_id FROM jobs WHERE state = 'queued'")
        return {str(r["guild_id"]) for r in rows}

    async def tell_positions(self, positions: dict[str, int]) -> set[str]:
        """Record each waiting job's announced place; the ids whose place is news (not told
        before, by any process), so each move of the queue is announced once.

        One statement per chunk of jobs: a draining queue of a thousand moves them all at
        every announcement."""
        marks, states = _in(WAITING_STATES)
        items = list(positions.items())

        async def body(tx: Tx) -> set[str]:
            news: set[str] = set()
            for chunk in chunks(items):
                values = ", ".join("(?, CAST(? AS INTEGER))" for _ in chunk)
                # A join, so each job is found by its key (a correlated `SELECT pos FROM v`
                # scanned the whole VALUES list per row on SQLite: 2,000 jobs took ~50 ms).
                rows = await tx.fetch(
                    f"WITH v (id, pos) AS (VALUES {values})"
                    " UPDATE jobs SET told_position = v.pos FROM v"
                    f" WHERE jobs.id = v.id AND jobs.state IN ({marks})"
                    " AND (jobs.told_position IS NULL OR jobs.told_position <> v.pos)"
                    " RETURNING jobs.id",
                    (*(x for pair in chunk for x in pair), *states))
                news.update(str(r["id"]) for r in rows)
            return news

        # Under the scheduling pass's lock: both change many waiting rows, each in its own
        # order (fair order, scan order), and two such transactions at once could deadlock on
        # PostgreSQL (the fleet chaos run met it: tests/chaos/test_fleet_chaos.py).
        told: set[str] = await self._atomic(body, lock="seedance:schedule")
        return told

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

    async def updates_for(self, owner: str) -> list[tuple[int, str, str]]:
        """(id, job id, TaskState JSON) of the news kept for the jobs `owner` drives, in order."""
        # From the news (a few rows, usually none) to their jobs: a join from the jobs side
        # read every job `owner` drives to find them.
        rows = await self._read(
            "SELECT u.id, u.job_id, u.state FROM job_updates u WHERE EXISTS (SELECT 1 FROM"
            " jobs j WHERE j.id = u.job_id AND j.owner = ?) ORDER BY u.id", (owner,))
        return [(int(r["id"]), str(r["job_id"]), str(r["state"])) for r in rows]

    async def drop_update(self, update_id: int) -> None:
        async def body(tx: Tx) -> None:
            await tx.execute("DELETE FROM job_updates WHERE id = ?", (update_id,))

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

    async def clear_cancel_request(self, job_id: str) -> None:
        async def body(tx: Tx) -> None:
            await tx.execute("UPDATE jobs SET cancel_requested = NULL WHERE id = ?", (job_id,))

        await self._atomic(body)

    async def cancel_requests(self, owner: str) -> list[JobView]:
        """Jobs this process drives that someone asked to cancel.

        Read through the index of the asked-to-cancel jobs (migration 0018), the only one the
        condition can use, then narrowed to `owner`'s active jobs: naming the owner in the
        query let the planner pick the owner index and read every job the process drives."""
        rows = await self._read("SELECT * FROM jobs WHERE cancel_requested IS NOT NULL")
        return [job for job in map(self._job_from_row, rows)
                if job.owner == owner and job.state in ACTIVE_STATES]

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
        # One statement per chunk of rows (each key once: PostgreSQL refuses to upsert a row
        # twice in one statement, and the dicts' keys are distinct).
        rows = [("guild", guild, tick) for guild, tick in changed.guilds.items()] + [
            ("user", f"{guild}:{user}", tick) for (guild, user), tick in changed.users.items()]
        for chunk in chunks(rows):
            await tx.execute(
                "INSERT INTO fair_served (scope, key, tick) VALUES "
                + ", ".join("(?, ?, ?)" for _ in chunk)
                + " ON CONFLICT (scope, key) DO UPDATE SET tick = excluded.tick",
                [v for row in chunk for v in row])
        await tx.execute(
            "INSERT INTO counters (name, value) VALUES (?, ?) ON CONFLICT (name)"
            " DO UPDATE SET value = excluded.value", (FAIR_TICK, served.tick))
