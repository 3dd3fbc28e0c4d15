"""Admitting a new job (`Store.create_job`, bot/store/db.py): its guards (the credit windows,
then the queue caps and the per-minute rate), then its row, first transition, reservation and
the day rows' share, all in the transaction that holds the server's admission lock.

- SQLite: each guard read, then each row written, one statement at a time (inline statements
  cost microseconds: bot/store/sqlite.py).
- PostgreSQL: one statement reads every guard and, only when all pass, writes every row (a
  data-modifying WITH whose inserts run from a row that exists only if the guards hold), so
  the admission lock is held over one round trip and the COMMIT instead of two. The lock is
  taken by the statement before (BEGIN's trip), so the guards read a snapshot taken after it:
  no admission committed meanwhile is missed. The values come back either way, and the
  refusal is worked out from them as on SQLite.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from bot.store.database import Tx
from bot.store.ledger import EVERYONE, add_usage, admission_guards, day_of, usage_query
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
#: PostgreSQL types of the job's values, in `_values` order (a SELECT's parameters are not
#: typed by the columns they go to, as VALUES' are). `seq` comes from the sequence.
_JOB_TYPES = ("TEXT",) * 9 + ("INTEGER", "TEXT", "TEXT", "INTEGER", "DOUBLE PRECISION",
                              "DOUBLE PRECISION", "TEXT")


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


async def admit_sqlite(tx: Tx, job: NewJob, checks: Sequence[UsageCheck],
                       admission: Admission | None, now: float) -> Refusal | None:
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
    return None


async def admit_postgres(tx: Tx, job: NewJob, checks: Sequence[UsageCheck],
                         admission: Admission | None, now: float) -> Refusal | None:
    active, caps, queries = _guards(job, checks, admission, now)
    params: list[Any] = []
    reads = []
    for i, (sql, query_params) in enumerate(queries):
        reads.append(f"({sql}) AS g{i}")
        params.extend(query_params)
    conditions = []
    for i, check in enumerate(active):
        conditions.append(f"COALESCE(g{i}, 0) + CAST(? AS BIGINT) <= CAST(? AS BIGINT)")
        params.extend((job.credits_estimate, check.limit))
    for i, (_cap, limit) in enumerate(caps, len(active)):
        conditions.append(f"COALESCE(g{i}, 0) < CAST(? AS BIGINT)")
        params.append(limit)
    row = _values(job, now)
    typed = [f"CAST(? AS {t})" for t in _JOB_TYPES]
    selected = ", ".join([*typed[:9], "nextval('jobs_seq')", *typed[9:]])
    params.extend(row)
    text, double, integer = "CAST(? AS TEXT)", "CAST(? AS DOUBLE PRECISION)", "CAST(? AS INTEGER)"
    params.extend((job.state.value, now, f"reserved {job.credits_estimate} credits"))
    params.extend((job.user_id, job.guild_id, job.event_id, job.credits_estimate, now, now))
    day = day_of(now)
    paid = PAID_KEY in job.context  # paid from purchased credits: no window counts it
    for who in () if paid else (job.user_id, EVERYONE):
        params.extend((job.guild_id, who, job.event_id or "", day, job.credits_estimate))
    day_row = f"({text}, {text}, {text}, {double}, {integer})"
    usage = "" if paid else (
        " u AS (INSERT INTO usage_days (guild_id, user_id, event_id, day, credits)"
        f" SELECT v.* FROM j, (VALUES {day_row}, {day_row}) AS v (guild_id, user_id, event_id,"
        " day, credits) ON CONFLICT (guild_id, user_id, event_id, day)"
        " DO UPDATE SET credits = usage_days.credits + excluded.credits)")
    sql = (
        f"WITH g AS (SELECT {', '.join(reads) or '1 AS g0'}),"
        f" ok AS (SELECT 1 FROM g WHERE {' AND '.join(conditions) or 'TRUE'}),"
        f" j AS (INSERT INTO jobs ({_JOB_COLUMNS}) SELECT {selected} FROM ok RETURNING id),"
        " t AS (INSERT INTO job_transitions (job_id, from_state, to_state, at, detail)"
        f" SELECT id, NULL, {text}, {double}, {text} FROM j),"
        " l AS (INSERT INTO ledger (job_id, user_id, guild_id, event_id, kind, credits, at,"
        f" reserved_at) SELECT id, {text}, {text}, {text}, 'reserve', {integer}, {double},"
        f" {double} FROM j){',' if usage else ''}{usage}"
        " SELECT g.*, (SELECT COUNT(*) FROM j) AS written FROM g")
    answer = await tx.fetchrow(sql, params)
    assert answer is not None
    if answer["written"]:
        return None
    values = [int(answer[f"g{i}"] or 0) for i in range(len(queries))]
    refused = _refusal(job, active, caps, values)
    assert refused is not None, "the guards held in Python but not in SQL"
    return refused


__all__ = ["admit_postgres", "admit_sqlite"]
