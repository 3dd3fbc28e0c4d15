"""SQL for jobs asked through a user install (cogs/utils/installs.py): a durable count of the
interaction's follow-ups in the job's context, and a person's own jobs, newest first, for
`/my-videos`. A mixin of `Store`; no table of its own (the job's `context` column holds it).

Discord allows at most 5 follow-ups per interaction where the app is not in the server, and a
restart can happen between any two lines: each follow-up is claimed here, under its own key,
before it is sent, so a resumed job never sends one twice nor more than the limit.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from bot.store.database import Database, Tx
from bot.store.records import JobView
from bot.store.rows import job_from_row

#: The context key counting the follow-ups an interaction has sent for the job.
FOLLOWUPS_KEY = "followups"
#: The context key listing which follow-ups (by name) were claimed.
SENT_KEY = "followups_sent"
_ID_CHARS = frozenset("0123456789abcdef-")


def _lock(job_id: str) -> str:
    return f"seedance:job-context:{job_id}"


async def _context(tx: Tx, job_id: str) -> dict[str, Any] | None:
    raw = await tx.fetchval("SELECT context FROM jobs WHERE id = ?", (job_id,))
    if raw is None:
        return None
    value = json.loads(raw) if isinstance(raw, str) else raw
    return dict(value) if isinstance(value, dict) else {}


async def _write(tx: Tx, job_id: str, context: dict[str, Any], now: float) -> None:
    await tx.execute("UPDATE jobs SET context = ?, updated_at = ? WHERE id = ?",
                     (json.dumps(context), now, job_id))


class InstallsStore:
    """Follow-up claims and a person's jobs. `Store` provides `db`, `_read` and `_atomic`."""

    db: Database
    _read: Callable[..., Awaitable[list[Any]]]
    _atomic: Callable[..., Awaitable[Any]]

    async def claim_followup(self, job_id: str, name: str, *, limit: int, now: float) -> bool:
        """Take the next follow-up of the job's interaction for `name` (e.g. "result"), in
        the row, before sending it. False when `name` was claimed already (maybe sent before a
        restart) or `limit` follow-ups were claimed: then it must not be sent."""
        async def body(tx: Tx) -> bool:
            context = await _context(tx, job_id)
            if context is None:
                return False
            sent = list(context.get(SENT_KEY) or [])
            count = int(context.get(FOLLOWUPS_KEY) or 0)
            if name in sent or count >= limit:
                return False
            context[SENT_KEY] = [*sent, name]
            context[FOLLOWUPS_KEY] = count + 1
            await _write(tx, job_id, context, now)
            return True

        return bool(await self._atomic(body, lock=_lock(job_id)))

    async def merge_context(self, job_id: str, values: dict[str, Any], *, now: float) -> None:
        """Set keys of the job's context, keeping the others (read and written in one
        transaction, so a concurrent claim is not lost)."""
        async def body(tx: Tx) -> None:
            context = await _context(tx, job_id)
            if context is not None:
                await _write(tx, job_id, {**context, **values}, now)

        await self._atomic(body, lock=_lock(job_id))

    async def user_jobs(self, user_id: str, *, limit: int, offset: int = 0) -> list[JobView]:
        """A person's jobs, newest first, skipping those whose data they deleted."""
        rows = await self._read(
            "SELECT * FROM jobs WHERE user_id = ? AND forgotten = 0 ORDER BY seq DESC"
            " LIMIT ? OFFSET ?", (user_id, limit, offset))
        return [job_from_row(r) for r in rows]

    async def user_job(self, user_id: str, prefix: str) -> JobView | None:
        """The person's newest job whose id starts with `prefix` (ids are lowercase hex and
        dashes: anything else, a LIKE wildcard too, names no job)."""
        if not prefix or not set(prefix) <= _ID_CHARS:
            return None
        rows = await self._read(
            "SELECT * FROM jobs WHERE user_id = ? AND id LIKE ? ORDER BY seq DESC LIMIT 1",
            (user_id, prefix + "%"))
        return job_from_row(rows[0]) if rows else None
