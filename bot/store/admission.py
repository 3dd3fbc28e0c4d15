"""Admitting a new job (`Store.create_job`, bot/store/db.py): its guards (the credit windows,
then the queue caps and the per-minute rate), then its row, first transition, reservation and
the day rows' share, all while the server's admission lock is held.

- SQLite: each guard read, then each row written, one statement at a time, in the transaction
  that holds the file's write lock (inline statements cost microseconds: bot/store/sqlite.py).
- PostgreSQL: one autocommitted call of `seedance_admit` (migration 0017), which takes the
  lock, reads every guard and, only when all pass, writes every row and sends the news of a
  queued job: the lock is held for the server's own work, never across a round trip (it was
  held across two: bench/README.md). The guards' values come back either way, and the refusal
  is worked out from them as on SQLite.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from bot.store.database import Database, Tx
from bot.store.ledger import add_usage, admission_guards, by_day, usage_query
from bot.store.premium import PAID_KEY
from bot.store.records import (
    Admission,
    AdmissionRefused,
    CheckResult,
    NewJob,
    UsageCheck,
)

Refusal = CheckResult | AdmissionRefused

_JOB_COLUMNS = ("id, guild_id, channel_id, user_id, role_ids, request, provider, model, state,"
                " seq, credits_estimate, context, event_id, hold_result, created_at, updated_at,"
                " fleet")


def _values(job: NewJob, now: float) -> tuple[Any, ...]:
    """The job row's values, `seq` left out."""
    return (job.id, job.guild_id, job.channel_id, job.user_id, json.dumps(list(job.role_ids)),
            job.request.model_dump_json(), job.provider, job.model, job.state.value,
            job.credits_estimate, json.dumps(job.context), job.event_id, int(job.hold_result),
            now, now, json.dumps(job.fleet))


Query = tuple[str, list[Any]]


def _guards(job: NewJob, checks: Sequence[UsageCheck], admission: Admission | None,
            now: float) -> tuple[list[UsageCheck], list[tuple[str, int]], list[Query]]:
    """The credit checks that apply, the admission caps (cap, limit) and every guard's query."""
    active = [c for c in checks if c.limit >= 0]
    guards = admission_guards(job, admission, now) if admission is not None else []
    queries = [usage_query(c) for c in active] + [(g[2], list(g[3])) for g in guards]
    return active, [(g[0], g[1]) for g in guards], queries


def _refusal(job: NewJob, active: list[UsageCheck], caps: list[tuple[str, int]],
             values: Sequence[int]) -> Refusal | None:
    """The first guard the values break: the credit checks in order, then the caps."""
    for check, used in zip(active, values, strict=False):
        if used + job.credits_estimate > check.limit:
            return CheckResult(check, used)
    for (cap, limit), count in zip(caps, values[len(active):], strict=True):
        if count >= limit:
            return AdmissionRefused(cap, limit, count)
    return None


#: What an admitted job tells other processes: (channel, payload), or None.
News = tuple[str, str] | None


async def admit_sqlite(tx: Tx, job: NewJob, checks: Sequence[UsageCheck],
                       admission: Admission | None, now: float, notify: News) -> Refusal | None:
    active, caps, queries = _guards(job, checks, admission, now)
    values = [int(await tx.fetchval(sql, params) or 0) for sql, params in queries]
    refused = _refusal(job, active, caps, values)
    if refused is not None:
        return refused
    seq = int(await tx.fetchval("SELECT COALESCE(MAX(seq), 0) + 1 FROM jobs") or 1)
    row = _values(job, now)
    await tx.execute(f"INSERT INTO jobs ({_JOB_COLUMNS}) VALUES ({', '.join('?' * 17)})",
                     (*row[:9], seq, *row[9:]))
    await tx.execute(
        "INSERT INTO job_transitions (job_id, from_state, to_state, at, detail)"
        " VALUES (?, NULL, ?, ?, ?)",
        (job.id, job.state.value, now, f"reserved {job.credits_estimate} credits"))
    await tx.execute(
        "INSERT INTO ledger (job_id, user_id, guild_id, event_id, kind, credits, at,"
        " reserved_at) VALUES (?, ?, ?, ?, 'reserve', ?, ?, ?)",
        (job.id, job.user_id, job.guild_id, job.event_id, job.credits_estimate, now, now))
    if PAID_KEY not in job.context:  # paid from purchased credits: no window counts it
        await add_usage(tx, guild_id=job.guild_id, user_id=job.user_id, event_id=job.event_id,
                        reserved_at=now, credits=job.credits_estimate)
    if notify is not None:
        await tx.notify(*notify)
    return None


#: The call of migration 0017's function: one statement, autocommitted.
_ADMIT_CALL = ("SELECT guard_values, admitted FROM seedance_admit("
               + ", ".join(["?"] * 29) + ")")


async def admit_postgres(db: Database, job: NewJob, checks: Sequence[UsageCheck],
                         admission: Admission | None, now: float,
                         notify: News) -> Refusal | None:
    active = [c for c in checks if c.limit >= 0]
    caps = ([] if admission is None else
            [(g[0], g[1]) for g in admission_guards(job, admission, now)])
    limit_of = dict(caps)
    row = _values(job, now)
    params = (
        *row[:14], row[15], f"reserved {job.credits_estimate} credits", PAID_KEY in job.context,
        [c.guild_id for c in active], [c.user_id for c in active], [c.since for c in active],
        [c.event_id for c in active], [c.outside_events for c in active],
        [by_day(c) for c in active], [c.limit for c in active],
        limit_of.get("guild_queued", 0), limit_of.get("user_queued", 0),
        limit_of.get("per_minute", 0), *(notify or (None, None)))
    answer = (await db.write_returning(_ADMIT_CALL, params))[0]
    if answer["admitted"]:
        return None
    refused = _refusal(job, active, caps, [int(v) for v in answer["guard_values"]])
    assert refused is not None, "the guards held in Python but not in SQL"
    return refused


__all__ = ["admit_postgres", "admit_sqlite"]
