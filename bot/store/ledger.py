"""The credits ledger's SQL inside a job's transactions: usage of a quota window (from the day
rows kept beside the ledger), the admission guards (queued caps, the per-minute rate) and
settling a reservation exactly once."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Literal

from bot.store.database import Tx
from bot.store.premium import PAID_JOBS
from bot.store.records import Admission, AdmissionRefused, NewJob, UsageCheck

LedgerKind = Literal["commit", "release"]


#: A UTC day, in seconds: the grain of `usage_days` (every quota window starts at a midnight).
DAY = 86400.0
#: `usage_days.user_id` of a whole server's row.
EVERYONE = "*"


def day_of(moment: float) -> float:
    """The start of the UTC day `moment` falls in."""
    return math.floor(moment / DAY) * DAY


def by_day(check: UsageCheck) -> bool:
    """Is `check`'s window counted from the day rows? (It starts at a UTC midnight, as every
    quota window does; else the ledger itself is summed.)"""
    return check.since % DAY == 0


def usage_query(check: UsageCheck) -> tuple[str, list[Any]]:
    """The SELECT of the credits in use in `check`'s window: reserved minus released, by
    reservation time.

    From `usage_days` (a few rows per day) when the window starts at a UTC midnight, as every
    quota window does (`by_day`); summed from the ledger itself otherwise."""
    if not by_day(check):
        return _ledger_query(check)
    sql = "SELECT COALESCE(SUM(credits), 0) FROM usage_days WHERE guild_id = ? AND user_id = ?" \
          " AND day >= ?"
    params: list[Any] = [check.guild_id, check.user_id or EVERYONE, check.since]
    return _event_filter(sql, params, check, outside="event_id = ''")


async def usage_of(tx: Tx, check: UsageCheck) -> int:
    sql, params = usage_query(check)
    return int(await tx.fetchval(sql, params) or 0)


def _ledger_query(check: UsageCheck) -> tuple[str, list[Any]]:
    sql = (
        "SELECT COALESCE(SUM(CASE kind WHEN 'reserve' THEN credits"
        " WHEN 'release' THEN -credits ELSE 0 END), 0) FROM ledger"
        f" WHERE guild_id = ? AND reserved_at >= ? AND job_id NOT IN ({PAID_JOBS})"
    )
    params: list[Any] = [check.guild_id, check.since]
    if check.user_id is not None:
        sql += " AND user_id = ?"
        params.append(check.user_id)
    return _event_filter(sql, params, check, outside="event_id IS NULL")


def _event_filter(sql: str, params: list[Any], check: UsageCheck, *,
                  outside: str) -> tuple[str, list[Any]]:
    """One event's credits, or those outside every event (`outside`: how each table says
    "no event": '' in usage_days' key, NULL in the ledger)."""
    if check.event_id is not None:
        return sql + " AND event_id = ?", [*params, check.event_id]
    if check.outside_events:
        return sql + f" AND {outside}", params
    return sql, params


async def _usage_from_ledger(tx: Tx, check: UsageCheck) -> int:
    sql, params = _ledger_query(check)
    return int(await tx.fetchval(sql, params) or 0)


async def add_usage(tx: Tx, *, guild_id: str, user_id: str, event_id: str | None,
                    reserved_at: float, credits: int) -> None:
    """Count `credits` (negative: given back) in the member's and the server's day rows."""
    day = day_of(reserved_at)
    for who in (user_id, EVERYONE):
        await tx.execute(
            "INSERT INTO usage_days (guild_id, user_id, event_id, day, credits)"
            " VALUES (?, ?, ?, ?, ?) ON CONFLICT (guild_id, user_id, event_id, day)"
            " DO UPDATE SET credits = usage_days.credits + excluded.credits",
            (guild_id, who, event_id or "", day, credits))


async def recount_usage(tx: Tx, user_ids: Sequence[str]) -> None:
    """Rebuild these members' day rows from the ledger (after their lines changed hands)."""
    for user_id in user_ids:
        await tx.execute("DELETE FROM usage_days WHERE user_id = ?", (user_id,))
        rows = await tx.fetch(
            "SELECT guild_id, event_id, kind, credits, reserved_at FROM ledger WHERE user_id = ?"
            f" AND kind IN ('reserve', 'release') AND job_id NOT IN ({PAID_JOBS})", (user_id,))
        totals: dict[tuple[str, str, float], int] = {}
        for r in rows:
            key = (r["guild_id"], r["event_id"] or "", day_of(r["reserved_at"]))
            sign = 1 if r["kind"] == "reserve" else -1
            totals[key] = totals.get(key, 0) + sign * int(r["credits"])
        for (guild_id, event_id, day), credits in totals.items():
            await tx.execute(
                "INSERT INTO usage_days (guild_id, user_id, event_id, day, credits)"
                " VALUES (?, ?, ?, ?, ?)", (guild_id, user_id, event_id, day, credits))


Guard = tuple[str, int, str, tuple[Any, ...]]  # cap, limit, the SELECT counting, its params


def admission_guards(job: NewJob, admission: Admission, now: float) -> list[Guard]:
    """The admission caps that apply to `job`, in the order they are checked."""
    waiting = "state IN ('awaiting_approval', 'queued')"
    guards: list[Guard] = [
        ("guild_queued", admission.guild_queued or 0,
         f"SELECT COUNT(*) FROM jobs WHERE guild_id = ? AND {waiting}", (job.guild_id,)),
        ("user_queued", admission.user_queued or 0,
         f"SELECT COUNT(*) FROM jobs WHERE guild_id = ? AND user_id = ? AND {waiting}",
         (job.guild_id, job.user_id)),
        ("per_minute", admission.per_minute or 0,
         "SELECT COUNT(*) FROM jobs WHERE guild_id = ? AND user_id = ? AND created_at > ?",
         (job.guild_id, job.user_id, now - 60.0)),
    ]
    return [g for g in guards if g[1]]


async def admit(
    tx: Tx, job: NewJob, admission: Admission, now: float
) -> AdmissionRefused | None:
    """The first admission cap `job` would break (see `Store.create_job`), else None."""
    for cap, limit, sql, params in admission_guards(job, admission, now):
        count = int(await tx.fetchval(sql, params) or 0)
        if count >= limit:
            return AdmissionRefused(cap, limit, count)
    return None


#: Whether reservation `r` has its settlement (a job is settled once).
_SETTLED = ("EXISTS (SELECT 1 FROM ledger s WHERE s.job_id = r.job_id"
            " AND s.kind IN ('commit', 'release'))")
#: A job's reservation while it has no settlement (one parameter: the job's id).
UNSETTLED = ("SELECT r.user_id, r.guild_id, r.event_id, r.credits, r.at FROM ledger r"
             f" WHERE r.job_id = ? AND r.kind = 'reserve' AND NOT {_SETTLED}")


async def settle(tx: Tx, job_id: str, kind: LedgerKind, now: float,
                 charge: int | None = None) -> int | None:
    """Commit or release a job's reservation once; a second settlement is ignored (the job has
    one already: the partial indexes of migration 0011 and the EXISTS below).

    `charge` (with `commit`): charge only that many of the reserved credits and release the
    rest in the same settlement, two lines written together (a result set that came back
    short, bot/engine/sets.py). None, or at least the reservation: charge it all.
    Returns the credits charged (written to the job's `credits_charged`) when this call
    committed, else None.
    """
    reserved = await tx.fetchrow(
        f"SELECT r.user_id, r.guild_id, r.event_id, r.credits, r.at, {_SETTLED} AS settled,"
        " EXISTS (SELECT 1 FROM purchased_credits p WHERE p.ref = r.job_id AND p.kind = 'spend')"
        " AS paid"
        " FROM ledger r WHERE r.job_id = ? AND r.kind = 'reserve'", (job_id,))
    if reserved is None or reserved["settled"]:
        return None
    charged: int | None = None
    total = int(reserved["credits"])
    lines: list[tuple[LedgerKind, int]] = [(kind, total)]
    if kind == "commit" and charge is not None and 0 <= charge < total:
        lines = [("commit", charge), ("release", total - charge)]
    for line_kind, credits in lines:
        await tx.execute(
            "INSERT INTO ledger (job_id, user_id, guild_id, event_id, kind, credits, at,"
            " reserved_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (job_id, reserved["user_id"], reserved["guild_id"], reserved["event_id"],
             line_kind, credits, now, reserved["at"]))
        if line_kind == "release" and not reserved["paid"]:  # a paid job has no day rows
            await add_usage(tx, guild_id=reserved["guild_id"], user_id=reserved["user_id"],
                            event_id=reserved["event_id"], reserved_at=reserved["at"],
                            credits=-credits)
        else:
            await tx.execute("UPDATE jobs SET credits_charged = ? WHERE id = ?",
                             (credits, job_id))
            charged = credits
    return charged
