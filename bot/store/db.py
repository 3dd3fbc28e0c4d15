"""The only home of SQL: jobs, their audit trail, the credits ledger, limits, guild settings.

One `Database` (bot/store/database.py) behind every method: SQLite in SEEDANCE_DATA_DIR by
default, PostgreSQL when SEEDANCE_DATABASE_URL names one; numbered migrations per dialect are
applied at open (bot/store/schema.py). Every write runs in its own transaction, and a
check-then-write (a quota reservation, a conditional state change) is atomic against other
coroutines *and* other processes sharing the database. Writes are shielded from cancellation.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from bot.models import GenerationRequest
from bot.store.admission import admit_postgres, admit_sqlite
from bot.store.backends import open_database
from bot.store.claims import ClaimsStore
from bot.store.database import Database, Tx
from bot.store.fleet import FleetStore
from bot.store.installs import InstallsStore
from bot.store.ledger import (
    LedgerKind,
    usage_of,
)
from bot.store.library import LibraryStore
from bot.store.moderation import ModerationStore
from bot.store.premium import PremiumStore
from bot.store.records import (
    Admission,
    AdmissionRefused,
    CheckResult,
    JobState,
    JobView,
    LedgerLine,
    NewJob,
    Timing,
    Transition,
    UsageCheck,
)
from bot.store.rows import WRITABLE, chunks, encode, job_from_row
from bot.store.schema import migrate, schema_version
from bot.store.settings import SettingsStore
from bot.store.sqlite import SqliteDatabase
from bot.store.transitions import QUEUE_CHANNEL, Move
from bot.store.votes import VotesStore
from bot.store.watch import WatchStore

T = TypeVar("T")


class Store(ClaimsStore, FleetStore, WatchStore, ModerationStore, SettingsStore, LibraryStore,
            VotesStore, PremiumStore, InstallsStore):
    """Durable state of the bot. Open with `await Store.open(url_or_path)`; `close()` it."""

    _job_from_row = staticmethod(job_from_row)

    def __init__(self, db: Database) -> None:
        self.db = db
        # Names this store's own notifications, which its process has acted on already.
        self.origin = uuid.uuid4().hex

    @classmethod
    async def open(cls, url_or_path: Path | str) -> Store:
        """A SQLite file's path, or a `postgresql://` URL; migrated before it is returned.

        Raises `DatabaseUnavailable` (one line, password masked) when PostgreSQL can't be
        reached."""
        db = await open_database(url_or_path)
        store = cls(db)
        if isinstance(db, SqliteDatabase):
            db.on_open = migrate
            await db.connection()
        else:
            await migrate(db)
        return store

    @classmethod
    def deferred(cls, path: Path | str) -> Store:
        """A SQLite store that creates and opens its file at first use: a run refused before
        anything is written (the CLI's invalid input) leaves no database behind."""
        db = SqliteDatabase(Path(path))
        store = cls(db)
        db.on_open = migrate
        return store

    @property
    def dialect(self) -> str:
        return self.db.dialect

    async def close(self) -> None:
        await self.db.close()

    # ---- plumbing -------------------------------------------------------------------------
    async def _atomic(self, body: Callable[[Tx], Awaitable[T]], *,
                      lock: str | None = None) -> T:
        """Run `body` in one transaction; cancellation waits for it to end."""
        return await self.db.atomic(body, lock=lock)

    async def _read(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        return await self.db.fetch(sql, params)

    async def _write(self, sql: str, params: Sequence[Any] = ()) -> int:
        """One statement that is a whole transaction by itself."""
        return await self.db.execute(sql, params)

    async def schema_version(self) -> int:
        return await schema_version(self.db)

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

        # A queued job is news: every process may start it.
        notify = (QUEUE_CHANNEL, self.origin) if job.state is JobState.QUEUED else None
        if self.db.dialect == "postgres":  # the lock, guards and writes in one call
            return await admit_postgres(self.db, job, checks, admission, now, notify)

        async def body(tx: Tx) -> CheckResult | AdmissionRefused | None:
            return await admit_sqlite(tx, job, checks, admission, now, notify)

        # One server's admissions take turns (its credits, caps and rate are one check).
        return await self._atomic(body, lock=f"seedance:admit:{job.guild_id}")

    async def get_job(self, job_id: str) -> JobView | None:
        rows = await self._read("SELECT * FROM jobs WHERE id = ?", (job_id,))
        return job_from_row(rows[0]) if rows else None

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
        return [job_from_row(r) for r in await self._read(sql + " ORDER BY seq", params)]

    async def transition(
        self,
        job_id: str,
        to_state: JobState,
        *,
        now: float,
        from_states: Iterable[JobState] | None = None,
        detail: str = "",
        ledger: LedgerKind | None = None,
        charge: int | None = None,
        owner: str | None = None,
        ttl: float = 0.0,
        timing: Timing | None = None,
        **fields: Any,
    ) -> JobView | None:
        """Move a job to `to_state` (if it is in one of `from_states`), set `fields`, settle,
        and keep `timing` (a finished task's duration, for ETAs) with the change.

        Returns the job as written, or None when the job was not in an expected state (someone
        else moved it first). `ledger` settles the reservation in the same transaction:
        `commit` charges it (only `charge` credits of it when given, the rest released in the
        same settlement), `release` returns it; a job is settled at most once.

        `owner` is the process making the change: an active job another process drives is
        not changed (None: that process took it over), and a job entering an active state is
        claimed by `owner` for `ttl` seconds of the database's clock. A job leaving the active
        states is nobody's. Any change makes its next queue place news again.
        """
        bad = set(fields) - WRITABLE
        if bad:
            raise ValueError(f"not writable: {sorted(bad)}")
        move = Move(job_id, to_state, now, self.db.now_sql, self.origin, from_states,
                    detail=detail, ledger=ledger, charge=charge, owner=owner, ttl=ttl,
                    fields=fields, timing=timing)
        single = move.one_statement() if self.db.dialect == "postgres" else None
        if single is not None:
            rows = await self.db.write_returning(*single)
            return job_from_row(rows[0]) if rows else None
        lock_row = self._lock_row("")

        async def body(tx: Tx) -> JobView | None:
            row = await move.run(tx, lock_row=lock_row)
            return job_from_row(row) if row is not None else None

        return await self._atomic(body)

    async def update_job(self, job_id: str, *, now: float, **fields: Any) -> None:
        """Change columns without a state change (fresh result URLs, the delivery context)."""
        bad = set(fields) - WRITABLE
        if bad:
            raise ValueError(f"not writable: {sorted(bad)}")
        if not fields:
            return
        sets = [f"{c} = ?" for c in fields]
        params = [encode(c, v) for c, v in fields.items()]
        await self._write(f"UPDATE jobs SET {', '.join(sets)}, updated_at = ? WHERE id = ?",
                          [*params, now, job_id])

    async def update_result_meta(self, metas: Mapping[str, Mapping[str, Any]], *,
                                 now: float) -> None:
        """Write several jobs' `result_meta` at once, one statement per chunk: the task-list
        snapshots of creates that share one list (bot/engine/recovery.py) are written
        together before any of those creates is sent."""
        items = [(job_id, encode("result_meta", meta)) for job_id, meta in metas.items()]
        for chunk in chunks(items):
            values = ", ".join("(?, ?)" for _ in chunk)
            await self._write(
                f"WITH v (id, meta) AS (VALUES {values})"
                " UPDATE jobs SET result_meta = v.meta, updated_at = ? FROM v"
                " WHERE jobs.id = v.id", (*(x for pair in chunk for x in pair), now))

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
        return [job_from_row(r) for r in rows]

    async def mark_cleaned(self, job_id: str, *, now: float) -> None:
        """Retention removed the job's files: it no longer points at them."""

        async def body(tx: Tx) -> None:
            await tx.execute(
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
        return await self._atomic(lambda tx: usage_of(tx, check))

    def _lock_row(self, sql: str) -> str:
        """`sql` reading a row this transaction will change: locked on PostgreSQL, so a
        conditional change by two processes at once is made by one (SQLite's transaction
        already holds the file's write lock)."""
        return sql + " FOR UPDATE" if self.db.dialect == "postgres" else sql
