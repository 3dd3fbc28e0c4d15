"""SQL for moderation and events: blocklists, user blocks, events, per-job messages, export and
a user's "delete my data". A mixin of `Store`, so one connection and one lock serve everything.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any, TypeVar

from bot.store.database import Tx
from bot.store.ledger import recount_usage
from bot.store.records import (
    BlockRule,
    EventRow,
    EventStats,
    JobMessage,
    JobState,
    JobView,
)

T = TypeVar("T")

#: A quota window never reaches further back than a month, so older ledger lines of a user who
#: deletes their data can lose the user id without changing anyone's remaining credits.
LEDGER_KEEP_SECONDS = 32 * 86400


def _rule(r: Any) -> BlockRule:
    return BlockRule(r["id"], r["guild_id"], r["kind"], r["pattern"], r["added_by"],
                     r["created_at"])


def _event(r: Any) -> EventRow:
    return EventRow(
        id=r["id"], guild_id=r["guild_id"], name=r["name"], channel_id=r["channel_id"],
        ends_at=r["ends_at"], credits_per_user=r["credits_per_user"], moderation=r["moderation"],
        thread_id=r["thread_id"], state=r["state"], created_by=r["created_by"],
        created_at=r["created_at"], closed_at=r["closed_at"], summary_ref=r["summary_ref"],
        fixed=json.loads(r["fixed"] or "{}"),
    )


class ModerationStore:
    """Moderation tables. `Store` provides `_read`, `_atomic` and `_job_from_row`."""

    _read: Callable[..., Awaitable[list[Any]]]
    _atomic: Callable[..., Awaitable[Any]]
    _job_from_row: Callable[[Any], JobView]

    # ---- blocklist ------------------------------------------------------------------------
    async def block_rules(self, guild_id: str) -> list[BlockRule]:
        rows = await self._read("SELECT * FROM blocklist WHERE guild_id = ? ORDER BY id",
                                (guild_id,))
        return [_rule(r) for r in rows]

    async def add_block_rule(self, guild_id: str, kind: str, pattern: str, *, added_by: str,
                             now: float) -> BlockRule | None:
        """The new rule, or None when the same rule exists already."""

        async def body(tx: Tx) -> BlockRule | None:
            new_id = await tx.fetchval(
                "INSERT INTO blocklist (guild_id, kind, pattern, added_by, created_at)"
                " VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING RETURNING id",
                (guild_id, kind, pattern, added_by, now))
            if new_id is None:
                return None
            return BlockRule(int(new_id), guild_id, kind, pattern, added_by, now)

        result: BlockRule | None = await self._atomic(body)
        return result

    async def remove_block_rule(self, guild_id: str, rule_id: int) -> BlockRule | None:
        async def body(tx: Tx) -> BlockRule | None:
            row = await tx.fetchrow("SELECT * FROM blocklist WHERE guild_id = ? AND id = ?",
                                    (guild_id, rule_id))
            if row is None:
                return None
            await tx.execute("DELETE FROM blocklist WHERE id = ?", (rule_id,))
            return _rule(row)

        result: BlockRule | None = await self._atomic(body)
        return result

    # ---- per-user blocks and rate ---------------------------------------------------------
    async def user_block(self, guild_id: str, user_id: str) -> tuple[str, str, float] | None:
        """(reason, blocked_by, at) when the user may not make videos in the guild."""
        rows = await self._read(
            "SELECT reason, blocked_by, at FROM user_blocks WHERE guild_id = ? AND user_id = ?",
            (guild_id, user_id))
        return (rows[0]["reason"], rows[0]["blocked_by"], rows[0]["at"]) if rows else None

    async def user_blocks(self, guild_id: str) -> list[tuple[str, str]]:
        """(user id, reason) of every blocked user of the guild."""
        rows = await self._read(
            "SELECT user_id, reason FROM user_blocks WHERE guild_id = ? ORDER BY at", (guild_id,))
        return [(r["user_id"], r["reason"]) for r in rows]

    async def set_user_block(self, guild_id: str, user_id: str, reason: str, *, blocked_by: str,
                             now: float) -> None:
        async def body(tx: Tx) -> None:
            await tx.execute(
                "INSERT INTO user_blocks (guild_id, user_id, reason, blocked_by, at)"
                " VALUES (?, ?, ?, ?, ?) ON CONFLICT (guild_id, user_id) DO UPDATE SET"
                " reason = excluded.reason, blocked_by = excluded.blocked_by, at = excluded.at",
                (guild_id, user_id, reason, blocked_by, now))

        await self._atomic(body)

    async def remove_user_block(self, guild_id: str, user_id: str) -> bool:
        async def body(tx: Tx) -> bool:
            changed_rows = await tx.execute(
                "DELETE FROM user_blocks WHERE guild_id = ? AND user_id = ?", (guild_id, user_id))
            return changed_rows > 0

        removed: bool = await self._atomic(body)
        return removed

    async def jobs_since(self, guild_id: str, user_id: str, since: float) -> int:
        """How many jobs the user asked for in the guild since `since` (for the rate limit)."""
        rows = await self._read(
            "SELECT COUNT(*) AS n FROM jobs WHERE guild_id = ? AND user_id = ? AND created_at >= ?",
            (guild_id, user_id, since))
        return int(rows[0]["n"])

    async def claim_launch(self, guild_id: str, user_id: str, *, per_minute: int,
                           now: float, launch_id: str) -> bool:
        """Hold a place in the member's per-minute rate for a request being prepared: False
        when their jobs and launches of the last minute already reach `per_minute`."""

        async def body(tx: Tx) -> bool:
            since = now - 60.0
            row = await tx.fetchrow(
                "SELECT (SELECT COUNT(*) FROM jobs WHERE guild_id = ? AND user_id = ?"
                " AND created_at >= ?) + (SELECT COUNT(*) FROM launches WHERE guild_id = ?"
                " AND user_id = ? AND at >= ?)",
                (guild_id, user_id, since, guild_id, user_id, since))
            if row is not None and int(row[0]) >= per_minute:
                return False
            await tx.execute("DELETE FROM launches WHERE at < ?", (since,))
            await tx.execute(
                "INSERT INTO launches (id, guild_id, user_id, at) VALUES (?, ?, ?, ?)",
                (launch_id, guild_id, user_id, now))
            return True

        # A member's launches take turns with their server's admissions (bot/store/db.py).
        claimed: bool = await self._atomic(body, lock=f"seedance:admit:{guild_id}")
        return claimed

    async def drop_launch(self, launch_id: str) -> None:
        async def body(tx: Tx) -> None:
            await tx.execute("DELETE FROM launches WHERE id = ?", (launch_id,))

        await self._atomic(body)

    # ---- events ---------------------------------------------------------------------------
    async def create_event(self, event: EventRow) -> EventRow | None:
        """Write the event and its per-user credit limit; None if the channel has an open one."""

        async def body(tx: Tx) -> EventRow | None:
            if await tx.fetchrow(
                "SELECT 1 FROM events WHERE guild_id = ? AND state = 'open'"
                " AND (channel_id = ? OR thread_id = ?)",
                (event.guild_id, event.channel_id, event.channel_id)):
                return None
            await tx.execute(
                "INSERT INTO events (id, guild_id, name, channel_id, thread_id, ends_at,"
                " credits_per_user, moderation, state, created_by, created_at, fixed)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'open', ?, ?, ?)",
                (event.id, event.guild_id, event.name, event.channel_id, event.thread_id,
                 event.ends_at, event.credits_per_user, event.moderation, event.created_by,
                 event.created_at, json.dumps(dict(event.fixed), sort_keys=True)))
            await tx.execute(
                "INSERT INTO quota_limits (scope, guild_id, subject_id, credits, \"window\","
                " updated_at) VALUES ('event', ?, ?, ?, 'event', ?)",
                (event.guild_id, event.id, event.credits_per_user, event.created_at))
            return event

        result: EventRow | None = await self._atomic(body)
        return result

    async def get_event(self, event_id: str) -> EventRow | None:
        rows = await self._read("SELECT * FROM events WHERE id = ?", (event_id,))
        return _event(rows[0]) if rows else None

    async def events(self, guild_id: str, *, open_only: bool = False) -> list[EventRow]:
        sql = "SELECT * FROM events WHERE guild_id = ?"
        if open_only:
            sql += " AND state = 'open'"
        rows = await self._read(sql + " ORDER BY created_at DESC", (guild_id,))
        return [_event(r) for r in rows]

    async def open_event_in(self, guild_id: str, channel_ids: Iterable[str]) -> EventRow | None:
        """The open event whose channel (or gallery thread) is one of `channel_ids`."""
        ids = [c for c in channel_ids if c]
        if not ids:
            return None
        marks = ",".join("?" * len(ids))
        rows = await self._read(
            f"SELECT * FROM events WHERE guild_id = ? AND state = 'open' AND (channel_id IN"
            f" ({marks}) OR thread_id IN ({marks})) ORDER BY created_at DESC LIMIT 1",
            (guild_id, *ids, *ids))
        return _event(rows[0]) if rows else None

    async def events_due(self, now: float) -> list[EventRow]:
        """Open events past their end time, and closed ones whose summary is not posted yet."""
        rows = await self._read(
            "SELECT * FROM events WHERE (state = 'open' AND ends_at <= ?)"
            " OR (state = 'closed' AND summary_ref IS NULL) ORDER BY ends_at", (now,))
        return [_event(r) for r in rows]

    async def close_event(self, event_id: str, *, now: float) -> EventRow | None:
        """Close intake once; None when it was closed already."""

        async def body(tx: Tx) -> EventRow | None:
            row = await tx.fetchrow(
                "UPDATE events SET state = 'closed', closed_at = ? WHERE id = ? AND state = 'open'"
                " RETURNING *", (now, event_id))
            return _event(row) if row else None

        result: EventRow | None = await self._atomic(body)
        return result

    async def set_event_refs(self, event_id: str, *, thread_id: str | None = None,
                             summary_ref: str | None = None) -> None:
        sets, params = [], []
        if thread_id is not None:
            sets.append("thread_id = ?")
            params.append(thread_id)
        if summary_ref is not None:
            sets.append("summary_ref = ?")
            params.append(summary_ref)
        if not sets:
            return

        async def body(tx: Tx) -> None:
            await tx.execute(f"UPDATE events SET {', '.join(sets)} WHERE id = ?",
                               (*params, event_id))

        await self._atomic(body)

    async def event_stats(self, event_id: str) -> EventStats:
        rows = await self._read(
            "SELECT COUNT(*) AS entries,"
            " COALESCE(SUM(CASE WHEN state = 'delivered' THEN 1 ELSE 0 END), 0) AS posted,"
            " COALESCE(SUM(CASE WHEN state = 'rejected' THEN 1 ELSE 0 END), 0) AS rejected,"
            " COUNT(DISTINCT user_id) AS participants FROM jobs WHERE event_id = ?", (event_id,))
        spent = await self._read(
            "SELECT COALESCE(SUM(credits), 0) AS used FROM ledger WHERE event_id = ?"
            " AND kind = 'commit'", (event_id,))
        r = rows[0]
        return EventStats(int(r["entries"]), int(r["posted"]), int(r["rejected"]),
                          int(r["participants"]), int(spent[0]["used"]))

    # ---- messages kept per job ------------------------------------------------------------
    async def job_message(self, job_id: str, kind: str) -> JobMessage | None:
        rows = await self._read(
            "SELECT * FROM job_messages WHERE job_id = ? AND kind = ?", (job_id, kind))
        if not rows:
            return None
        r = rows[0]
        return JobMessage(r["job_id"], r["kind"], r["channel_id"], r["message_id"])

    async def set_job_message(self, message: JobMessage, *, now: float) -> None:
        async def body(tx: Tx) -> None:
            await tx.execute(
                "INSERT INTO job_messages (job_id, kind, channel_id, message_id, at)"
                " VALUES (?, ?, ?, ?, ?) ON CONFLICT (job_id, kind) DO UPDATE SET"
                " channel_id = excluded.channel_id, message_id = excluded.message_id,"
                " at = excluded.at",
                (message.job_id, message.kind, message.channel_id, message.message_id, now))

        await self._atomic(body)

    async def jobs_without_message(self, kind: str, states: Iterable[JobState], *,
                                   updated_since: float = 0.0,
                                   guild_id: str | None = None) -> list[JobView]:
        """Jobs in `states` that have no `kind` message yet (what a restart must still post)."""
        wanted = [s.value for s in states]
        where = "" if guild_id is None else " AND guild_id = ?"
        rows = await self._read(
            f"SELECT * FROM jobs WHERE state IN ({','.join('?' * len(wanted))})"
            f" AND updated_at >= ?{where} AND NOT EXISTS (SELECT 1 FROM job_messages m"
            " WHERE m.job_id = jobs.id AND m.kind = ?) ORDER BY seq",
            (*wanted, updated_since, *([] if guild_id is None else [guild_id]), kind))
        return [self._job_from_row(r) for r in rows]

    # ---- export and forgetting ------------------------------------------------------------
    async def jobs_between(self, guild_id: str, since: float, until: float) -> list[JobView]:
        """The guild's jobs asked for in [since, until), oldest first (the CSV export)."""
        rows = await self._read(
            "SELECT * FROM jobs WHERE guild_id = ? AND created_at >= ? AND created_at < ?"
            " ORDER BY created_at, seq", (guild_id, since, until))
        return [self._job_from_row(r) for r in rows]

    async def forget_user(self, user_id: str, *, pseudonym: str, now: float,
                          states: Sequence[JobState]) -> list[JobView]:
        """Strip a user's prompts, inputs and files from their finished jobs (in `states`).

        Returns the jobs as they were, so the caller can delete their files. Each job keeps an
        accounting row under `pseudonym` (provider, model, duration, credits). Ledger lines keep
        the user id for a month, as quotas need it; older ones take the pseudonym too.
        """
        wanted = [s.value for s in states]

        async def body(tx: Tx) -> list[JobView]:
            before = [self._job_from_row(r) for r in await tx.fetch(
                f"SELECT * FROM jobs WHERE user_id = ? AND state IN"
                f" ({','.join('?' * len(wanted))}) ORDER BY seq", (user_id, *wanted))]
            for job in before:
                request = job.request.model_copy(update={"prompt": "", "references": []})
                meta = {k: v for k, v in job.result_meta.items() if k in ("seed", "cost")}
                await tx.execute(
                    "UPDATE jobs SET user_id = ?, role_ids = '[]', request = ?, context = '{}',"
                    " result_path = NULL, last_frame_path = NULL, result_meta = ?,"
                    " forgotten = 1, updated_at = ? WHERE id = ?",
                    (pseudonym, request.model_dump_json(), json.dumps(meta), now, job.id))
                await tx.execute(
                    "INSERT INTO job_transitions (job_id, from_state, to_state, at, detail)"
                    " VALUES (?, ?, ?, ?, 'the requester deleted their data')",
                    (job.id, job.state.value, job.state.value, now))
            if await tx.execute(
                    "UPDATE ledger SET user_id = ? WHERE user_id = ? AND reserved_at < ?",
                    (pseudonym, user_id, now - LEDGER_KEEP_SECONDS)):
                await recount_usage(tx, [user_id, pseudonym])  # the day rows follow
            await tx.execute(
                "INSERT INTO forget_requests (user_id, pseudonym, requested_at) VALUES (?, ?, ?)"
                " ON CONFLICT (user_id) DO UPDATE SET requested_at = excluded.requested_at",
                (user_id, pseudonym, now))
            return before

        result: list[JobView] = await self._atomic(body)
        return result

    async def finish_forgetting(self, *, now: float) -> int:
        """Give the pseudonym to ledger lines that aged out of every quota window; forget the
        request once none can be left. Run daily. Returns how many lines changed."""

        async def body(tx: Tx) -> int:
            changed = 0
            for r in await tx.fetch("SELECT * FROM forget_requests"):
                moved = await tx.execute(
                    "UPDATE ledger SET user_id = ? WHERE user_id = ? AND reserved_at < ?"
                    " AND reserved_at <= ?",
                    (r["pseudonym"], r["user_id"], now - LEDGER_KEEP_SECONDS,
                     r["requested_at"]))
                if moved:  # the day rows follow the lines they sum
                    await recount_usage(tx, [r["user_id"], r["pseudonym"]])
                changed += moved
                if r["requested_at"] < now - LEDGER_KEEP_SECONDS:
                    await tx.execute("DELETE FROM forget_requests WHERE user_id = ?",
                                       (r["user_id"],))
            return changed

        result: int = await self._atomic(body)
        return result
