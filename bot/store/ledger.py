"""The credits ledger's SQL inside a job's transactions: usage of a quota window, the admission
guards (queued caps, the per-minute rate) and settling a reservation exactly once."""

from __future__ import annotations

from typing import Any, Literal

from bot.store.database import Tx
from bot.store.records import Admission, AdmissionRefused, NewJob, UsageCheck

LedgerKind = Literal["commit", "release"]


async def usage_of(tx: Tx, check: UsageCheck) -> int:
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
    return int(await tx.fetchval(sql, params) or 0)


async def admit(
    tx: Tx, job: NewJob, admission: Admission, now: float
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
        count = int(await tx.fetchval(sql, params) or 0)
        if count >= limit:
            return AdmissionRefused(cap, limit, count)
    return None


async def settle(tx: Tx, job_id: str, kind: LedgerKind, now: float) -> None:
    """Commit or release a job's reservation once; a second settlement is ignored (the ledger's
    unique index on a job's settlement)."""
    await tx.execute(
        "INSERT INTO ledger (job_id, user_id, guild_id, event_id, kind, credits, at,"
        " reserved_at) SELECT job_id, user_id, guild_id, event_id, ?, credits, ?, at"
        " FROM ledger WHERE job_id = ? AND kind = 'reserve' ON CONFLICT DO NOTHING",
        (kind, now, job_id),
    )
    if kind == "commit":
        await tx.execute(
            "UPDATE jobs SET credits_charged = (SELECT credits FROM ledger WHERE job_id = ?"
            " AND kind = 'commit') WHERE id = ? AND EXISTS (SELECT 1 FROM ledger"
            " WHERE job_id = ? AND kind = 'commit')",
            (job_id, job_id, job_id),
        )
