"""A job's state change, written in one transaction (`Store.transition`, bot/store/db.py).

A change is guarded by the state the caller read the job in: when that is one state (every
change the engine makes, bot/engine/machine.py), the guard is the `UPDATE`'s own `WHERE`, so
the change is one statement plus its history line; with several possible states (or none
given) the row is read first, under a row lock on PostgreSQL. See docs/ARCHITECTURE.md for the
states and who settles what.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from bot.store.database import Tx
from bot.store.ledger import LedgerKind, settle
from bot.store.records import ACTIVE_STATES, JobState
from bot.store.rows import encode

#: PostgreSQL's notification channel for "the queue changed": a job to start or a slot freed,
#: so every process's scheduler looks at once (SQLite: its keeper wakes it every second).
QUEUE_CHANNEL = "seedance_queue"
_ACTIVE = frozenset(s.value for s in ACTIVE_STATES)


async def move_job(
    tx: Tx,
    job_id: str,
    to_state: JobState,
    *,
    now: float,
    now_sql: str,
    lock_row: str,
    origin: str,
    from_states: Iterable[JobState] | None,
    detail: str,
    ledger: LedgerKind | None,
    charge: int | None,
    owner: str | None,
    ttl: float,
    fields: Mapping[str, Any],
) -> Mapping[str, Any] | None:
    """The row as written, or None when the job was not in an expected state or another
    process drives it (nothing written). `lock_row` is appended to the read of the row when
    there is one (" FOR UPDATE" on PostgreSQL)."""
    froms = None if from_states is None else {s.value for s in from_states}
    where: list[str] = ["id = ?"]
    args: list[Any] = [job_id]
    if froms is not None and len(froms) == 1:
        current = next(iter(froms))
        guard_owner = owner is not None and current in _ACTIVE
    else:
        row = await tx.fetchrow("SELECT state, owner FROM jobs WHERE id = ?" + lock_row,
                                (job_id,))
        if row is None or (froms is not None and row["state"] not in froms):
            return None
        current = row["state"]
        guard_owner = owner is not None and current in _ACTIVE
    where.append("state = ?")
    args.append(current)
    if guard_owner:  # an active job another process drives is not ours to change
        where.append("(owner IS NULL OR owner = ?)")
        args.append(owner)
    sets = ["state = ?", "updated_at = ?", "told_position = NULL"]
    params: list[Any] = [to_state.value, now]
    if to_state.value not in _ACTIVE:
        sets.append("owner = NULL, lease_until = NULL, cancel_requested = NULL")
    elif owner is not None:
        sets.append(f"owner = ?, lease_until = {now_sql} + ?")
        params.extend((owner, ttl))
    for column, value in fields.items():
        sets.append(f"{column} = ?")
        params.append(encode(column, value))
    updated = await tx.fetchrow(
        f"UPDATE jobs SET {', '.join(sets)} WHERE {' AND '.join(where)} RETURNING *",
        [*params, *args])
    if updated is None:
        return None
    await tx.execute(
        "INSERT INTO job_transitions (job_id, from_state, to_state, at, detail)"
        " VALUES (?, ?, ?, ?, ?)", (job_id, current, to_state.value, now, detail))
    if to_state.value not in _ACTIVE:
        await tx.execute("DELETE FROM job_updates WHERE job_id = ?", (job_id,))
    if to_state is JobState.QUEUED or (current in _ACTIVE and to_state.value not in _ACTIVE):
        await tx.notify(QUEUE_CHANNEL, origin)  # a job to start, or a slot freed
    if ledger is not None:
        charged = await settle(tx, job_id, ledger, now, charge)
        if charged is not None:  # settle wrote credits_charged after the UPDATE above
            return {**dict(updated), "credits_charged": charged}
    return updated


__all__ = ["QUEUE_CHANNEL", "move_job"]
