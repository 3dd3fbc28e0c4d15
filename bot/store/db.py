"""The only home of SQL: jobs, their audit trail, the credits ledger, limits, guild settings.

One aiosqlite connection per `Store`, WAL mode, numbered migrations applied at open. Every write
runs in its own `BEGIN IMMEDIATE` transaction, so a check-then-write (a quota reservation, a
conditional state change) is atomic against other coroutines *and* other processes sharing the
file. Writes are shielded from task cancellation: a job runner cancelled mid-write still leaves
a whole transaction behind, never half of one.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, Literal, TypeVar

import aiosqlite

from bot.guild import GuildSettings
from bot.models import GenerationRequest
from bot.store.leases import LeaseStore
from bot.store.moderation import ModerationStore
from bot.store.records import (
    Admission,
    AdmissionRefused,
    CheckResult,
    JobState,
    JobView,
    LedgerLine,
    NewJob,
    QuotaLimitRow,
    Transition,
    UsageCheck,
)

T = TypeVar("T")
MIGRATIONS_DIR = Path(__file__).parent / "migrations"

#: Columns a transition or update may set, and how each is stored.
_JSON_COLUMNS = frozenset({"role_ids", "result_meta", "context"})
_WRITABLE = frozenset(
    {
        "channel_id", "request", "model", "not_before", "task_id", "attempts", "audio_retried",
        "hold_result", "credits_charged", "result_path", "last_frame_path", "result_meta",
        "delivery_ref", "error_kind", "error_message", "context", "started_at", "finished_at",
        "moderator_id",
    }
)
LedgerKind = Literal["commit", "release"]


def _encode(column: str, value: Any) -> Any:
    if isinstance(value, GenerationRequest):
        return value.model_dump_json()
    if column in _JSON_COLUMNS:
        return json.dumps(list(value) if isinstance(value, tuple) else value)
    if isinstance(value, bool):
        return int(value)
    return value


def _job(row: sqlite3.Row) -> JobView:
    return JobView(
        id=row["id"],
        guild_id=row["guild_id"],
        channel_id=row["channel_id"],
        user_id=row["user_id"],
        role_ids=tuple(json.loads(row["role_ids"])),
        request=GenerationRequest.model_validate_json(row["request"]),
        provider=row["provider"],
        model=row["model"],
        state=JobState(row["state"]),
        seq=row["seq"],
        not_before=row["not_before"],
        task_id=row["task_id"],
        attempts=row["attempts"],
        audio_retried=bool(row["audio_retried"]),
        hold_result=bool(row["hold_result"]),
        credits_estimate=row["credits_estimate"],
        credits_charged=row["credits_charged"],
        result_path=row["result_path"],
        last_frame_path=row["last_frame_path"],
        result_meta=json.loads(row["result_meta"]),
        delivery_ref=row["delivery_ref"],
        error_kind=row["error_kind"],
        error_message=row["error_message"],
        context=json.loads(row["context"]),
        event_id=row["event_id"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        started_at=row["started_at"],
        finished_at=row["finished_at"],
        moderator_id=row["moderator_id"],
        forgotten=bool(row["forgotten"]),
    )


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


def split_statements(script: str) -> list[str]:
    """Cut a migration into statements (executescript would commit our transaction early)."""
    statements, current = [], ""
    for line in script.splitlines(keepends=True):
        current += line
        if sqlite3.complete_statement(current):
            if current.strip():
                statements.append(current.strip())
            current = ""
    if current.strip() and not all(
        ln.strip().startswith("--") or not ln.strip() for ln in current.splitlines()
    ):
        raise ValueError("a migration ends with an incomplete statement")
    return statements


def migrations() -> list[tuple[int, str, str]]:
    """(version, name, sql) for every bot/store/migrations/NNNN_name.sql, in order."""
    found = []
    for path in sorted(MIGRATIONS_DIR.glob("[0-9][0-9][0-9][0-9]_*.sql")):
        found.append((int(path.name[:4]), path.stem[5:], path.read_text("utf-8")))
    return found


class Store(ModerationStore, LeaseStore):
    """Durable state of the bot. Open with `await Store.open(path)`; close with `close()`."""

    _job_from_row = staticmethod(_job)

    def __init__(self, conn: aiosqlite.Connection, path: Path) -> None:
        self._conn = conn
        self.path = path
        self._lock = asyncio.Lock()

    @classmethod
    async def open(cls, path: Path | str) -> Store:
        path = Path(path)
        if str(path) != ":memory:":
            path.parent.mkdir(parents=True, exist_ok=True)
        conn = await aiosqlite.connect(str(path), isolation_level=None)
        conn.row_factory = aiosqlite.Row
        await conn.execute("PRAGMA busy_timeout = 30000")
        await _enable_wal(conn)
        await conn.execute("PRAGMA synchronous = NORMAL")
        await conn.execute("PRAGMA foreign_keys = ON")
        store = cls(conn, path)
        await store._migrate()
        return store

    async def close(self) -> None:
        async with self._lock:
            await self._conn.close()

    # ---- plumbing -------------------------------------------------------------------------
    async def _atomic(self, body: Callable[[aiosqlite.Connection], Awaitable[T]]) -> T:
        """Run `body` in one BEGIN IMMEDIATE transaction; cancellation waits for it to end."""

        async def run() -> T:
            async with self._lock:
                await self._conn.execute("BEGIN IMMEDIATE")
                try:
                    result = await body(self._conn)
                except BaseException:
                    await self._conn.execute("ROLLBACK")
                    raise
                await self._conn.execute("COMMIT")
                return result

        return await asyncio.shield(run())

    async def _read(self, sql: str, params: Sequence[Any] = ()) -> list[aiosqlite.Row]:
        async with self._lock, self._conn.execute(sql, params) as cur:
            return list(await cur.fetchall())

    async def _migrate(self) -> None:
        await self._conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            "version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at REAL NOT NULL)"
        )
        for version, name, sql in migrations():

            async def apply(
                conn: aiosqlite.Connection, version: int = version, name: str = name,
                sql: str = sql,
            ) -> None:
                async with conn.execute(
                    "SELECT 1 FROM schema_migrations WHERE version = ?", (version,)
                ) as cur:
                    if await cur.fetchone():
                        return  # another process got here first
                for statement in split_statements(sql):
                    await conn.execute(statement)
                await conn.execute(
                    "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)",
                    (version, name, time.time()),
                )

            await self._atomic(apply)

    async def schema_version(self) -> int:
        rows = await self._read("SELECT COALESCE(MAX(version), 0) AS v FROM schema_migrations")
        return int(rows[0]["v"])

    # ---- jobs -----------------------------------------------------------------------------
    async def create_job(
        self, job: NewJob, checks: Sequence[UsageCheck], *, now: float,
        admission: Admission | None = None,
    ) -> CheckResult | AdmissionRefused | None:
        """Write the job and reserve its credits, unless a quota check or an admission cap
        would be broken.

        Returns the first guard that fails (and writes nothing), else None: the quota checks in
        order, then `admission`'s guild queued cap, the member's queued cap and the member's
        per-minute rate (jobs created in this guild since `now - 60`). Guards, insert and
        reservation share one IMMEDIATE transaction, so concurrent enqueues (from any process)
        can never overspend a limit nor overfill a queue.
        """

        async def body(conn: aiosqlite.Connection) -> CheckResult | AdmissionRefused | None:
            for check in checks:
                if check.limit < 0:
                    continue
                used = await _usage(conn, check)
                if used + job.credits_estimate > check.limit:
                    return CheckResult(check, used)
            if admission is not None:
                refused = await _admit(conn, job, admission, now)
                if refused is not None:
                    return refused
            async with conn.execute("SELECT COALESCE(MAX(seq), 0) + 1 FROM jobs") as cur:
                row = await cur.fetchone()
                seq = int(row[0]) if row else 1
            await conn.execute(
                "INSERT INTO jobs (id, guild_id, channel_id, user_id, role_ids, request,"
                " provider, model, state, seq, credits_estimate, context, event_id, hold_result,"
                " created_at, updated_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (
                    job.id, job.guild_id, job.channel_id, job.user_id,
                    json.dumps(list(job.role_ids)), job.request.model_dump_json(), job.provider,
                    job.model, job.state.value, seq, job.credits_estimate,
                    json.dumps(job.context), job.event_id, int(job.hold_result), now, now,
                ),
            )
            await conn.execute(
                "INSERT INTO job_transitions (job_id, from_state, to_state, at, detail)"
                " VALUES (?, NULL, ?, ?, ?)",
                (job.id, job.state.value, now, f"reserved {job.credits_estimate} credits"),
            )
            await conn.execute(
                "INSERT INTO ledger (job_id, user_id, guild_id, event_id, kind, credits, at,"
                " reserved_at) VALUES (?, ?, ?, ?, 'reserve', ?, ?, ?)",
                (job.id, job.user_id, job.guild_id, job.event_id, job.credits_estimate, now, now),
            )
            return None

        return await self._atomic(body)

    async def get_job(self, job_id: str) -> JobView | None:
        rows = await self._read("SELECT * FROM jobs WHERE id = ?", (job_id,))
        return _job(rows[0]) if rows else None

    async def jobs(
        self,
        states: Iterable[JobState] | None = None,
        *,
        guild_id: str | None = None,
        user_id: str | None = None,
    ) -> list[JobView]:
        """Jobs in queue order (seq), optionally filtered by states, guild and user."""
        where, params = [], []
        if states is not None:
            wanted = [s.value for s in states]
            where.append(f"state IN ({','.join('?' * len(wanted))})")
            params.extend(wanted)
        if guild_id is not None:
            where.append("guild_id = ?")
            params.append(guild_id)
        if user_id is not None:
            where.append("user_id = ?")
            params.append(user_id)
        sql = "SELECT * FROM jobs" + (f" WHERE {' AND '.join(where)}" if where else "")
        return [_job(r) for r in await self._read(sql + " ORDER BY seq", params)]

    async def transition(
        self,
        job_id: str,
        to_state: JobState,
        *,
        now: float,
        from_states: Iterable[JobState] | None = None,
        detail: str = "",
        ledger: LedgerKind | None = None,
        **fields: Any,
    ) -> JobView | None:
        """Move a job to `to_state` (if it is in one of `from_states`), set `fields`, settle.

        Returns the job as written, or None when the job was not in an expected state (someone
        else moved it first). `ledger` settles the reservation in the same transaction:
        `commit` charges it, `release` returns it; each happens at most once per job.
        """
        bad = set(fields) - _WRITABLE
        if bad:
            raise ValueError(f"not writable: {sorted(bad)}")

        async def body(conn: aiosqlite.Connection) -> JobView | None:
            async with conn.execute("SELECT state FROM jobs WHERE id = ?", (job_id,)) as cur:
                row = await cur.fetchone()
            if row is None:
                return None
            current = row["state"]
            if from_states is not None and current not in {s.value for s in from_states}:
                return None
            sets = ["state = ?", "updated_at = ?"]
            params: list[Any] = [to_state.value, now]
            for column, value in fields.items():
                sets.append(f"{column} = ?")
                params.append(_encode(column, value))
            await conn.execute(
                f"UPDATE jobs SET {', '.join(sets)} WHERE id = ?", [*params, job_id]
            )
            await conn.execute(
                "INSERT INTO job_transitions (job_id, from_state, to_state, at, detail)"
                " VALUES (?, ?, ?, ?, ?)",
                (job_id, current, to_state.value, now, detail),
            )
            if ledger is not None:
                await _settle(conn, job_id, ledger, now)
            async with conn.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)) as cur:
                updated = await cur.fetchone()
            return _job(updated) if updated else None

        return await self._atomic(body)

    async def update_job(self, job_id: str, *, now: float, **fields: Any) -> None:
        """Change columns without a state change (fresh result URLs, the delivery context)."""
        bad = set(fields) - _WRITABLE
        if bad:
            raise ValueError(f"not writable: {sorted(bad)}")
        if not fields:
            return
        sets = [f"{c} = ?" for c in fields]
        params = [_encode(c, v) for c, v in fields.items()]

        async def body(conn: aiosqlite.Connection) -> None:
            await conn.execute(
                f"UPDATE jobs SET {', '.join(sets)}, updated_at = ? WHERE id = ?",
                [*params, now, job_id],
            )

        await self._atomic(body)

    async def transitions(self, job_id: str) -> list[Transition]:
        rows = await self._read(
            "SELECT * FROM job_transitions WHERE job_id = ? ORDER BY id", (job_id,)
        )
        return [
            Transition(r["job_id"], r["from_state"], r["to_state"], r["at"], r["detail"])
            for r in rows
        ]

    async def finished_before(self, cutoff: float) -> list[JobView]:
        """Terminal jobs finished before `cutoff` whose files retention has not removed yet."""
        rows = await self._read(
            "SELECT * FROM jobs WHERE finished_at IS NOT NULL AND finished_at < ?"
            " AND cleaned_at IS NULL"
            " AND state IN ('delivered', 'failed', 'cancelled', 'rejected') ORDER BY seq",
            (cutoff,),
        )
        return [_job(r) for r in rows]

    async def mark_cleaned(self, job_id: str, *, now: float) -> None:
        """Retention removed the job's files: it no longer points at them."""

        async def body(conn: aiosqlite.Connection) -> None:
            await conn.execute(
                "UPDATE jobs SET cleaned_at = ?, result_path = NULL, last_frame_path = NULL"
                " WHERE id = ?", (now, job_id))

        await self._atomic(body)

    async def requests_kept(self, cutoff: float) -> list[GenerationRequest]:
        """The requests of jobs unfinished or finished since `cutoff`: their input files are
        still needed (a job to run, a Reroll or Extend button to press)."""
        rows = await self._read(
            "SELECT request FROM jobs WHERE finished_at IS NULL OR finished_at >= ?", (cutoff,))
        return [GenerationRequest.model_validate_json(r["request"]) for r in rows]

    # ---- ledger ---------------------------------------------------------------------------
    async def ledger(self, job_id: str | None = None) -> list[LedgerLine]:
        sql = "SELECT * FROM ledger"
        params: tuple[Any, ...] = ()
        if job_id is not None:
            sql += " WHERE job_id = ?"
            params = (job_id,)
        rows = await self._read(sql + " ORDER BY id", params)
        return [
            LedgerLine(
                r["job_id"], r["user_id"], r["guild_id"], r["event_id"], r["kind"], r["credits"],
                r["at"], r["reserved_at"],
            )
            for r in rows
        ]

    async def usage(self, check: UsageCheck) -> int:
        async with self._lock:
            return await _usage(self._conn, check)

    # ---- quota limits ---------------------------------------------------------------------
    async def quota_limits(self, guild_id: str) -> list[QuotaLimitRow]:
        rows = await self._read(
            "SELECT * FROM quota_limits WHERE guild_id = ? ORDER BY scope, subject_id",
            (guild_id,),
        )
        return [
            QuotaLimitRow(r["scope"], r["guild_id"], r["subject_id"], r["credits"], r["window"])
            for r in rows
        ]

    async def set_quota_limit(self, limit: QuotaLimitRow, *, now: float) -> None:
        async def body(conn: aiosqlite.Connection) -> None:
            await conn.execute(
                "INSERT INTO quota_limits (scope, guild_id, subject_id, credits, window,"
                " updated_at) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (scope, guild_id,"
                " subject_id) DO UPDATE SET credits = excluded.credits,"
                " window = excluded.window, updated_at = excluded.updated_at",
                (limit.scope, limit.guild_id, limit.subject_id, limit.credits, limit.window, now),
            )

        await self._atomic(body)

    async def delete_quota_limit(self, scope: str, guild_id: str, subject_id: str = "") -> bool:
        async def body(conn: aiosqlite.Connection) -> bool:
            cur = await conn.execute(
                "DELETE FROM quota_limits WHERE scope = ? AND guild_id = ? AND subject_id = ?",
                (scope, guild_id, subject_id),
            )
            return cur.rowcount > 0

        return await self._atomic(body)

    # ---- guild settings -------------------------------------------------------------------
    async def guild_settings(self, guild_id: str) -> GuildSettings:
        rows = await self._read(
            "SELECT settings FROM guild_settings WHERE guild_id = ?", (guild_id,)
        )
        if not rows:
            return GuildSettings()
        return GuildSettings.from_stored(json.loads(rows[0]["settings"]), guild_id=guild_id)

    async def all_guild_settings(self) -> dict[str, GuildSettings]:
        """Every server that set anything (for sweeps over, e.g., servers with an audit log)."""
        rows = await self._read("SELECT guild_id, settings FROM guild_settings ORDER BY guild_id")
        return {r["guild_id"]: GuildSettings.from_stored(json.loads(r["settings"]),
                                                         guild_id=r["guild_id"]) for r in rows}

    async def update_guild_settings(
        self, guild_id: str, change: Callable[[GuildSettings], GuildSettings], *,
        now: float | None = None,
    ) -> GuildSettings:
        """Read, change and write a server's settings in one transaction (two admins at once
        each see the other's change); `change` raises ValueError to refuse and write nothing."""
        stamp = time.time() if now is None else now

        async def body(conn: aiosqlite.Connection) -> GuildSettings:
            async with conn.execute(
                "SELECT settings FROM guild_settings WHERE guild_id = ?", (guild_id,)
            ) as cur:
                row = await cur.fetchone()
            current = (GuildSettings.from_stored(json.loads(row[0]), guild_id=guild_id)
                       if row else GuildSettings())
            new = change(current)
            await conn.execute(
                "INSERT INTO guild_settings (guild_id, settings, updated_at) VALUES (?, ?, ?)"
                " ON CONFLICT (guild_id) DO UPDATE SET settings = excluded.settings,"
                " updated_at = excluded.updated_at",
                (guild_id, json.dumps(new.stored()), stamp),
            )
            return new

        return await self._atomic(body)

    # ---- durations for ETAs ---------------------------------------------------------------
    async def record_duration(
        self, provider: str, resolution: str, duration: int, seconds: float, *, now: float
    ) -> None:
        async def body(conn: aiosqlite.Connection) -> None:
            await conn.execute(
                "INSERT INTO gateway_durations (provider, resolution, duration, seconds, at)"
                " VALUES (?, ?, ?, ?, ?)",
                (provider, resolution, duration, seconds, now),
            )

        await self._atomic(body)

    async def recent_durations(
        self, provider: str, resolution: str, duration: int, *, limit: int = 20
    ) -> list[float]:
        rows = await self._read(
            "SELECT seconds FROM gateway_durations WHERE provider = ? AND resolution = ?"
            " AND duration = ? ORDER BY id DESC LIMIT ?",
            (provider, resolution, duration, limit),
        )
        return [float(r["seconds"]) for r in rows]


async def _usage(conn: aiosqlite.Connection, check: UsageCheck) -> int:
    sql = (
        "SELECT COALESCE(SUM(CASE kind WHEN 'reserve' THEN credits"
        " WHEN 'release' THEN -credits ELSE 0 END), 0) FROM ledger"
        " WHERE guild_id = ? AND reserved_at >= ?"
    )
    params: list[Any] = [check.guild_id, check.since]
    if check.user_id is not None:
        sql += " AND user_id = ?"
        params.append(check.user_id)
    if check.event_id is not None:
        sql += " AND event_id = ?"
        params.append(check.event_id)
    elif check.outside_events:
        sql += " AND event_id IS NULL"
    async with conn.execute(sql, params) as cur:
        row = await cur.fetchone()
    return int(row[0]) if row else 0


async def _admit(
    conn: aiosqlite.Connection, job: NewJob, admission: Admission, now: float
) -> AdmissionRefused | None:
    """The first admission cap `job` would break (see `Store.create_job`), else None."""
    waiting = "state IN ('awaiting_approval', 'queued')"
    guards = (
        ("guild_queued", admission.guild_queued,
         f"SELECT COUNT(*) FROM jobs WHERE guild_id = ? AND {waiting}", (job.guild_id,)),
        ("user_queued", admission.user_queued,
         f"SELECT COUNT(*) FROM jobs WHERE guild_id = ? AND user_id = ? AND {waiting}",
         (job.guild_id, job.user_id)),
        ("per_minute", admission.per_minute,
         "SELECT COUNT(*) FROM jobs WHERE guild_id = ? AND user_id = ? AND created_at > ?",
         (job.guild_id, job.user_id, now - 60.0)),
    )
    for cap, limit, sql, params in guards:
        if not limit:
            continue
        async with conn.execute(sql, params) as cur:
            row = await cur.fetchone()
        count = int(row[0]) if row else 0
        if count >= limit:
            return AdmissionRefused(cap, limit, count)
    return None


async def _settle(conn: aiosqlite.Connection, job_id: str, kind: LedgerKind, now: float) -> None:
    """Commit or release a job's reservation once; a second settlement is ignored."""
    await conn.execute(
        "INSERT OR IGNORE INTO ledger (job_id, user_id, guild_id, event_id, kind, credits, at,"
        " reserved_at) SELECT job_id, user_id, guild_id, event_id, ?, credits, ?, at"
        " FROM ledger WHERE job_id = ? AND kind = 'reserve'",
        (kind, now, job_id),
    )
    if kind == "commit":
        await conn.execute(
            "UPDATE jobs SET credits_charged = (SELECT credits FROM ledger WHERE job_id = ?"
            " AND kind = 'commit') WHERE id = ? AND EXISTS (SELECT 1 FROM ledger"
            " WHERE job_id = ? AND kind = 'commit')",
            (job_id, job_id, job_id),
        )
