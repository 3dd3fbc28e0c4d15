"""SQL for event voting (migration 0015): one row per member per entry, so a double click is
one vote, and withdrawing deletes the row. A mixin of `Store` (one connection, one lock).

Every write reads the event's row first, locked against `close_event` on PostgreSQL (`FOR
SHARE`; SQLite's transaction holds the file's write lock): a vote is written while the event is
open, or not at all, and a summary read after the close sees every vote that was counted.
The rules (who may vote, on what) are bot/service/votes.py's.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from bot.store.database import Database, Tx


@dataclass(frozen=True)
class VoteWrite:
    """What a vote or a withdrawal did: `open` False when the event had closed (nothing was
    written), `changed` False when it was so already (a double click), and the entry's votes."""

    open: bool
    changed: bool
    votes: int


@dataclass(frozen=True)
class EntryVotes:
    """A posted entry of an event and its votes (the standings' raw rows)."""

    job_id: str
    author_id: str
    channel_id: str  # where /video was used; the post itself is in the gallery thread
    message_id: str | None  # the posted entry (`jobs.delivery_ref`)
    votes: int
    seq: int  # the order entries were asked for: the tie-break


@dataclass(frozen=True)
class VoteRow:
    """One stored vote (for the export)."""

    job_id: str
    voter_id: str
    event_id: str
    at: float


class VotesStore:
    """Votes. `Store` provides `db`, `_read` and `_atomic`."""

    db: Database
    _read: Callable[..., Awaitable[list[Any]]]
    _atomic: Callable[..., Awaitable[Any]]

    async def _event_open(self, tx: Tx, event_id: str, now: float) -> bool:
        sql = "SELECT state, ends_at FROM events WHERE id = ?"
        if self.db.dialect == "postgres":
            sql += " FOR SHARE"  # a close waits for this vote, and a vote after it sees it
        row = await tx.fetchrow(sql, (event_id,))
        return row is not None and row["state"] == "open" and float(row["ends_at"]) > now

    @staticmethod
    async def _count(tx: Tx, job_id: str) -> int:
        return int(await tx.fetchval("SELECT COUNT(*) FROM votes WHERE job_id = ?", (job_id,)))

    async def add_vote(self, job_id: str, voter_id: str, *, event_id: str,
                       now: float) -> VoteWrite:
        """Count `voter_id`'s vote for the entry, once, while the event is open."""

        async def body(tx: Tx) -> VoteWrite:
            if not await self._event_open(tx, event_id, now):
                return VoteWrite(False, False, await self._count(tx, job_id))
            added = await tx.execute(
                "INSERT INTO votes (job_id, voter_id, event_id, at) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (job_id, voter_id) DO NOTHING", (job_id, voter_id, event_id, now))
            return VoteWrite(True, added > 0, await self._count(tx, job_id))

        result: VoteWrite = await self._atomic(body)
        return result

    async def remove_vote(self, job_id: str, voter_id: str, *, event_id: str,
                          now: float) -> VoteWrite:
        """Withdraw `voter_id`'s vote for the entry while the event is open."""

        async def body(tx: Tx) -> VoteWrite:
            if not await self._event_open(tx, event_id, now):
                return VoteWrite(False, False, await self._count(tx, job_id))
            removed = await tx.execute(
                "DELETE FROM votes WHERE job_id = ? AND voter_id = ?", (job_id, voter_id))
            return VoteWrite(True, removed > 0, await self._count(tx, job_id))

        result: VoteWrite = await self._atomic(body)
        return result

    async def vote_count(self, job_id: str) -> int:
        rows = await self._read("SELECT COUNT(*) AS n FROM votes WHERE job_id = ?", (job_id,))
        return int(rows[0]["n"])

    async def entry_votes(self, event_id: str) -> list[EntryVotes]:
        """Every posted entry of the event whose author kept their data, with its votes, most
        voted first, then in the order they were asked for."""
        rows = await self._read(
            "SELECT j.id, j.user_id, j.channel_id, j.delivery_ref, j.seq,"
            " (SELECT COUNT(*) FROM votes v WHERE v.job_id = j.id) AS votes"
            " FROM jobs j WHERE j.event_id = ? AND j.state = 'delivered' AND j.forgotten = 0"
            " ORDER BY votes DESC, j.seq", (event_id,))
        return [EntryVotes(r["id"], r["user_id"], r["channel_id"], r["delivery_ref"],
                           int(r["votes"]), int(r["seq"])) for r in rows]

    async def event_votes(self, event_id: str) -> list[VoteRow]:
        """Every vote of the event, oldest first (the export)."""
        rows = await self._read(
            "SELECT job_id, voter_id, event_id, at FROM votes WHERE event_id = ?"
            " ORDER BY at, job_id, voter_id", (event_id,))
        return [VoteRow(r["job_id"], r["voter_id"], r["event_id"], float(r["at"]))
                for r in rows]

    async def votes_in(self, guild_id: str, since: float, until: float) -> list[VoteRow]:
        """Every vote for the guild's entries asked for in [since, until) (the CSV export)."""
        rows = await self._read(
            "SELECT v.job_id, v.voter_id, v.event_id, v.at FROM votes v JOIN jobs j"
            " ON j.id = v.job_id WHERE j.guild_id = ? AND j.created_at >= ?"
            " AND j.created_at < ? ORDER BY v.at, v.job_id, v.voter_id",
            (guild_id, since, until))
        return [VoteRow(r["job_id"], r["voter_id"], r["event_id"], float(r["at"]))
                for r in rows]

    async def votes_by(self, voter_id: str) -> int:
        rows = await self._read("SELECT COUNT(*) AS n FROM votes WHERE voter_id = ?",
                                (voter_id,))
        return int(rows[0]["n"])

    async def forget_votes(self, voter_id: str) -> int:
        """Delete every vote the member cast ("delete my data"); how many there were."""

        async def body(tx: Tx) -> int:
            return await tx.execute("DELETE FROM votes WHERE voter_id = ?", (voter_id,))

        removed: int = await self._atomic(body)
        return removed
