"""A job's state change (`Store.transition`, bot/store/db.py): the row, its history line, the
news for other processes, the settlement and the task's timing, all or nothing.

A change is guarded by the state the caller read the job in: when that is one state (every
change the engine makes, bot/engine/machine.py), the guard is the `UPDATE`'s own `WHERE`, so
no read comes first; with several possible states (or none given) the row is read first,
under a row lock on PostgreSQL. On PostgreSQL a change that settles nothing is one statement
(a data-modifying `WITH`), so it needs no BEGIN and no COMMIT either: one round trip instead
of four or five. See docs/ARCHITECTURE.md for the states and who settles what.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from bot.store.database import Tx
from bot.store.ledger import UNSETTLED, LedgerKind, settle
from bot.store.records import ACTIVE_STATES, JobState, Timing
from bot.store.rows import encode

#: PostgreSQL's notification channel for "the queue changed": a job to start or a slot freed,
#: so every process's scheduler looks at once (SQLite: its keeper wakes it every second).
QUEUE_CHANNEL = "seedance_queue"
_ACTIVE = frozenset(s.value for s in ACTIVE_STATES)
_HISTORY = ("INSERT INTO job_transitions (job_id, from_state, to_state, at, detail)")
#: A task time for ETAs (`Timing`; `Store.record_duration` writes one on its own).
TIMED = "INSERT INTO gateway_durations (provider, resolution, duration, seconds, at)"


@dataclass(frozen=True)
class Move:
    """One change of one job, as `Store.transition` was asked for it."""

    job_id: str
    to_state: JobState
    now: float
    now_sql: str
    origin: str
    from_states: Iterable[JobState] | None
    detail: str = ""
    ledger: LedgerKind | None = None
    charge: int | None = None
    owner: str | None = None
    ttl: float = 0.0
    fields: Mapping[str, Any] = field(default_factory=dict)
    timing: Timing | None = None

    @property
    def known_state(self) -> str | None:
        """The one state the job must be in, when the caller named exactly one."""
        froms = None if self.from_states is None else {s.value for s in self.from_states}
        return next(iter(froms)) if froms is not None and len(froms) == 1 else None

    def _update(self, current: str, *extra: str) -> tuple[str, list[Any]]:
        """The guarded `UPDATE … RETURNING *` from `current` (also setting the parameterless
        `extra` assignments), and its parameters."""
        sets = ["state = ?", "updated_at = ?", "told_position = NULL", *extra]
        params: list[Any] = [self.to_state.value, self.now]
        if self.to_state.value not in _ACTIVE:
            sets.append("owner = NULL, lease_until = NULL, cancel_requested = NULL")
        elif self.owner is not None:
            sets.append(f"owner = ?, lease_until = {self.now_sql} + ?")
            params.extend((self.owner, self.ttl))
        for column, value in self.fields.items():
            sets.append(f"{column} = ?")
            params.append(encode(column, value))
        where = "id = ? AND state = ?"
        params.extend((self.job_id, current))
        if self.owner is not None and current in _ACTIVE:
            # An active job another process drives is not this one's to change.
            where += " AND (owner IS NULL OR owner = ?)"
            params.append(self.owner)
        return f"UPDATE jobs SET {', '.join(sets)} WHERE {where} RETURNING *", params

    def _timed(self) -> tuple[str, str, int, float, float]:
        t = self.timing
        assert t is not None
        return (t.provider, t.resolution, t.duration, t.seconds, self.now)

    def _leaves_active(self) -> bool:
        return self.to_state.value not in _ACTIVE

    def _news(self, current: str) -> bool:
        """A job to start, or a slot freed: other processes' schedulers should look."""
        return self.to_state is JobState.QUEUED or (
            current in _ACTIVE and self.to_state.value not in _ACTIVE)

    def one_statement(self) -> tuple[str, list[Any]] | None:
        """PostgreSQL: the whole change as one statement (None when it must read the row
        first, or settles other than by charging the whole reservation). It returns the row
        as written, or nothing."""
        current = self.known_state
        whole_charge = (self.ledger == "commit" and self.charge is None
                        and "credits_charged" not in self.fields)
        if current is None or (self.ledger is not None and not whole_charge):
            return None
        sql = "WITH "
        params: list[Any] = []
        charged: tuple[str, ...] = ()
        if whole_charge:
            # The reservation, unless settled already (a job is settled once: `settle`,
            # bot/store/ledger.py); its credits are what the row is charged.
            sql += f"reserved AS ({UNSETTLED}), "
            params.append(self.job_id)
            charged = ("credits_charged = COALESCE((SELECT credits FROM reserved),"
                       " credits_charged)",)
        update, update_params = self._update(current, *charged)
        params.extend(update_params)
        sql += (f"moved AS ({update}), history AS ({_HISTORY}"
               " SELECT id, CAST(? AS TEXT), CAST(? AS TEXT), CAST(? AS DOUBLE PRECISION),"
               " CAST(? AS TEXT) FROM moved)")
        params.extend((current, self.to_state.value, self.now, self.detail))
        if self._leaves_active():
            sql += ", updates AS (DELETE FROM job_updates WHERE job_id IN (SELECT id FROM moved))"
        if self.timing is not None:
            sql += (f", timed AS ({TIMED} SELECT CAST(? AS TEXT), CAST(? AS TEXT),"
                    " CAST(? AS INTEGER), CAST(? AS DOUBLE PRECISION),"
                    " CAST(? AS DOUBLE PRECISION) FROM moved)")
            params.extend(self._timed())
        if whole_charge:
            sql += (", charge AS (INSERT INTO ledger (job_id, user_id, guild_id, event_id, kind,"
                    " credits, at, reserved_at) SELECT moved.id, r.user_id, r.guild_id,"
                    " r.event_id, 'commit', r.credits, CAST(? AS DOUBLE PRECISION), r.at"
                    " FROM moved, reserved r)")
            params.append(self.now)
        sql += " SELECT moved.*"
        if self._news(current):
            sql += ", pg_notify(?, ?) AS notified"
            params.extend((QUEUE_CHANNEL, self.origin))
        return sql + " FROM moved", params

    async def run(self, tx: Tx, *, lock_row: str) -> Mapping[str, Any] | None:
        """The change in transaction `tx`: the row as written, or None when the job was not
        in an expected state or another process drives it (nothing written). `lock_row` is
        appended to the read of the row when there is one (" FOR UPDATE" on PostgreSQL)."""
        current = self.known_state
        if current is None:
            row = await tx.fetchrow("SELECT state, owner FROM jobs WHERE id = ?" + lock_row,
                                    (self.job_id,))
            if row is None or (self.from_states is not None and row["state"] not in
                               {s.value for s in self.from_states}):
                return None
            current = str(row["state"])
        update, params = self._update(current)
        updated = await tx.fetchrow(update, params)
        if updated is None:
            return None
        await tx.execute(f"{_HISTORY} VALUES (?, ?, ?, ?, ?)",
                         (self.job_id, current, self.to_state.value, self.now, self.detail))
        if self._leaves_active():
            await tx.execute("DELETE FROM job_updates WHERE job_id = ?", (self.job_id,))
        if self.timing is not None:
            await tx.execute(f"{TIMED} VALUES (?, ?, ?, ?, ?)", self._timed())
        if self._news(current):
            await tx.notify(QUEUE_CHANNEL, self.origin)
        if self.ledger is not None:
            charged = await settle(tx, self.job_id, self.ledger, self.now, self.charge)
            if charged is not None:  # settle wrote credits_charged after the UPDATE above
                return {**dict(updated), "credits_charged": charged}
        return updated


__all__ = ["QUEUE_CHANNEL", "TIMED", "Move"]
