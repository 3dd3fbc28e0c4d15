"""What operators read about the gateways (bot/service/fleet.py's `/seedance-admin status`,
bot/metrics.py's `/metrics`): counts of jobs, task times, the last failures, credits charged.

Every figure comes from the shared database, so any process answers for the whole fleet. The
reads that run often go through indexes (migrations/*/0012_ops.sql): active jobs by state, task
times since a moment, today's charges, failed jobs per gateway.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from bot.store.database import Database


@dataclass(frozen=True)
class JobCount:
    provider: str
    state: str
    count: int


@dataclass(frozen=True)
class TaskTime:
    """One finished gateway task (submitted → result ready), as the ETA history keeps it."""

    id: int
    provider: str
    seconds: float
    at: float


@dataclass(frozen=True)
class Charge:
    """Credits charged for one job, and what the gateway said that job cost (its own unit)."""

    provider: str
    credits: int
    cost: float | None


@dataclass(frozen=True)
class FailedJob:
    provider: str
    kind: str
    message: str
    at: float


@dataclass(frozen=True)
class FailureCount:
    provider: str
    kind: str
    count: int


class WatchStore:
    """The operators' reads; mixed into `Store` (bot/store/db.py)."""

    db: Database

    async def job_counts(self, states: tuple[str, ...] | None = None) -> list[JobCount]:
        """Jobs per gateway and state; only `states` when given (then through the state
        index: the active states are few rows even when the table is large)."""
        sql = "SELECT provider, state, COUNT(*) AS n FROM jobs"
        params: list[Any] = []
        if states is not None:
            sql += f" WHERE state IN ({','.join('?' * len(states))})"
            params.extend(states)
        rows = await self.db.fetch(sql + " GROUP BY provider, state", params)
        return [JobCount(r["provider"], r["state"], int(r["n"])) for r in rows]

    async def task_times(self, since: float) -> list[TaskTime]:
        """Gateway task times recorded at or after `since`, oldest first."""
        rows = await self.db.fetch(
            "SELECT id, provider, seconds, at FROM gateway_durations WHERE at >= ?"
            " ORDER BY at, id", (since,))
        return [TaskTime(int(r["id"]), r["provider"], float(r["seconds"]), float(r["at"]))
                for r in rows]

    async def charges_since(self, since: float) -> list[Charge]:
        """Every job charged at or after `since`: its gateway, credits and reported cost."""
        rows = await self.db.fetch(
            "SELECT j.provider, l.credits, j.result_meta FROM ledger l"
            " JOIN jobs j ON j.id = l.job_id WHERE l.kind = 'commit' AND l.at >= ?", (since,))
        return [Charge(r["provider"], int(r["credits"]), _cost(r["result_meta"])) for r in rows]

    async def last_failures(self, providers: tuple[str, ...]) -> dict[str, FailedJob]:
        """The most recently failed job of each gateway that has one."""
        found: dict[str, FailedJob] = {}
        for provider in providers:
            rows = await self.db.fetch(
                "SELECT error_kind, error_message, finished_at FROM jobs"
                " WHERE state = 'failed' AND provider = ? AND finished_at IS NOT NULL"
                " ORDER BY finished_at DESC LIMIT 1",
                (provider,))
            if rows:
                r = rows[0]
                found[provider] = FailedJob(provider, r["error_kind"] or "unknown",
                                            r["error_message"] or "", float(r["finished_at"] or 0))
        return found

    async def failure_counts(self) -> list[FailureCount]:
        """Failed jobs per gateway and error kind, all time."""
        rows = await self.db.fetch(
            "SELECT provider, error_kind, COUNT(*) AS n FROM jobs WHERE state = 'failed'"
            " GROUP BY provider, error_kind")
        return [FailureCount(r["provider"], r["error_kind"] or "unknown", int(r["n"]))
                for r in rows]


def _cost(meta: str | None) -> float | None:
    """The `cost` a gateway reported for the job's result (bot/engine/follow.py keeps it in
    `result_meta`), when it did."""
    try:
        value = json.loads(meta or "{}").get("cost")
    except (ValueError, AttributeError):
        return None
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None
