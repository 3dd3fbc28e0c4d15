"""Event voting: who may vote for which entry, the standings and the winners.

- An entry is a job of the event that was posted (`delivered`). Members vote with the button on
  the post; one vote per member per entry (the key of `votes`, migration 0015), for as many
  entries as they like.
- Not a toggle: the button on the entry only ever *adds* the member's vote, so a double click,
  or a press Discord delivers twice, is one vote and never "voted then withdrawn". Changing one's
  mind is a separate, explicit "withdraw" (offered privately after voting); it too is idempotent.
- Refused, privately and with the reason: bots, the entry's author, and anyone once the event
  has ended (votes close with its entries, `intake_closed_at`; the store checks the event is
  still open in the vote's own transaction, so a vote racing the close is either counted before
  the summary or refused). An entry whose author deleted their data is out of the running.
- Ranking: most votes first; entries with equal votes share a rank ("=2") and are listed in the
  order they were asked for, so the same votes always give the same words. Winners are the
  entries with at least one vote ranked within `WINNERS`: a tie at the edge takes everyone in it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from bot.store import EventRow, JobState, JobView, Store
from bot.store.votes import EntryVotes

from .events import intake_closed_at
from .people import Requester
from .refusals import NotAllowed, NothingThere, VotingClosed

#: How many places the closing summary names.
WINNERS = 3
#: How many entries `/event status` shows.
SHOWN = 5


@dataclass(frozen=True)
class Ballot:
    """A member's vote for one entry after their press."""

    job_id: str
    event: EventRow
    voted: bool  # their vote stands now
    changed: bool  # False: it stood (or not) already — a double click changes nothing
    votes: int  # the entry's votes now
    channel_id: str  # where the entry is posted (the gallery thread, else the channel)
    message_id: str | None  # the posted entry


@dataclass(frozen=True)
class Standing:
    """One entry's place: `rank` counts the entries with more votes (1 + that); `tied` when
    another entry has the same votes."""

    rank: int
    tied: bool
    entry: EntryVotes

    @property
    def votes(self) -> int:
        return self.entry.votes


def rank(entries: list[EntryVotes]) -> list[Standing]:
    """Standard competition ranking (1, 2, 2, 4) in a fixed order: votes, then asking order."""
    ordered = sorted(entries, key=lambda e: (-e.votes, e.seq))
    counts: dict[int, int] = {}
    for e in ordered:
        counts[e.votes] = counts.get(e.votes, 0) + 1
    out, place = [], 0
    for i, e in enumerate(ordered):
        if i == 0 or e.votes != ordered[i - 1].votes:
            place = i + 1
        out.append(Standing(place, counts[e.votes] > 1, e))
    return out


def posted_in(job: JobView, event: EventRow) -> str:
    """Where an entry is posted: the event's gallery thread, else its channel (as
    cogs/utils/messaging.py result_channel posts it)."""
    return event.thread_id or job.channel_id


class VoteService:
    def __init__(self, store: Store) -> None:
        self.store = store

    async def _entry(self, job_id: str, who: Requester, now: float) -> tuple[JobView, EventRow]:
        """The entry and its event, or the reason this member may not vote on it now."""
        if who.bot:
            raise NotAllowed(key="errors.vote.bot")
        job = await self.store.get_job(job_id)
        event = await self.store.get_event(job.event_id) if job and job.event_id else None
        if job is None or event is None or job.guild_id != who.guild_id:
            raise NothingThere(key="errors.vote.not_an_entry")
        if not event.open or now >= intake_closed_at(event):
            raise VotingClosed(event.name)
        if job.user_id == who.user_id:
            raise NotAllowed(key="errors.vote.own_entry")
        if job.forgotten:
            raise NotAllowed(key="errors.vote.forgotten")
        if job.state is not JobState.DELIVERED:
            raise NothingThere(key="errors.vote.not_posted")
        return job, event

    async def vote(self, job_id: str, who: Requester, *, now: float | None = None) -> Ballot:
        """Count the member's vote for the entry (once, however often they press)."""
        now = time.time() if now is None else now
        job, event = await self._entry(job_id, who, now)
        write = await self.store.add_vote(job.id, who.user_id, event_id=event.id, now=now)
        if not write.open:  # the event closed between the check and the write
            raise VotingClosed(event.name)
        return Ballot(job.id, event, True, write.changed, write.votes, posted_in(job, event),
                      job.delivery_ref)

    async def withdraw(self, job_id: str, who: Requester, *,
                       now: float | None = None) -> Ballot:
        """Take the member's vote for the entry back, while the event is open."""
        now = time.time() if now is None else now
        job, event = await self._entry(job_id, who, now)
        write = await self.store.remove_vote(job.id, who.user_id, event_id=event.id, now=now)
        if not write.open:
            raise VotingClosed(event.name)
        return Ballot(job.id, event, False, write.changed, write.votes, posted_in(job, event),
                      job.delivery_ref)

    async def count(self, job_id: str) -> int:
        return await self.store.vote_count(job_id)

    async def standings(self, event: EventRow) -> list[Standing]:
        """Every posted entry in order, with its place (entries without votes last)."""
        return rank(await self.store.entry_votes(event.id))

    async def top(self, event: EventRow, limit: int = SHOWN) -> list[Standing]:
        """The leading entries with votes (for `/event status`)."""
        return [s for s in await self.standings(event) if s.votes > 0][:limit]

    async def winners(self, event: EventRow, places: int = WINNERS) -> list[Standing]:
        """Entries with votes ranked within `places`; a tie at the edge keeps everyone in it."""
        return [s for s in await self.standings(event) if s.votes > 0 and s.rank <= places]
