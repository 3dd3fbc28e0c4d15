"""Event voting (bot/store/votes.py, bot/service/votes.py) on both backends: one vote per member
per entry however often they press or however many processes take the presses, an explicit
withdraw, refusals (bots, own entries, after the end, entries not posted or forgotten), the
ranking with ties, and votes that outlive the process and the voter's "delete my data"."""

from __future__ import annotations

import asyncio
import csv
import io
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from bot.errors import Refusal
from bot.models import GenerationRequest
from bot.service import NotAllowed, NothingThere, Requester, VoteService, VotingClosed
from bot.service.votes import rank
from bot.store import EventRow, JobState, NewJob, Store
from bot.store.copy import copy_database
from bot.store.votes import EntryVotes
from cogs.utils.texts import MAX_WINNER_LINES, forgotten_text, vote_label, winners_block
from tests.test_service import build

GUILD = "100"
T0 = 1_000.0
ENDS = T0 + 3600


def member(user: str, *, bot: bool = False) -> Requester:
    return Requester(user, GUILD, "10", bot=bot)


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[Store]:
    s = await Store.open(store_url)
    yield s
    await s.close()


async def an_event(store: Store, event_id: str = "ev1", *, ends_at: float = ENDS,
                   guild: str = GUILD, channel: str = "10") -> EventRow:
    made = await store.create_event(EventRow(
        id=event_id, guild_id=guild, name="Spring Jam", channel_id=channel, ends_at=ends_at,
        credits_per_user=10, moderation="off", created_at=T0))
    assert made is not None
    await store.set_event_refs(event_id, thread_id=f"thread-{event_id}")
    return await store.get_event(event_id) or made


async def an_entry(store: Store, author: str, *, event: str | None = "ev1",
                   state: JobState = JobState.DELIVERED, guild: str = GUILD,
                   message: str = "") -> str:
    job_id = str(uuid.uuid4())
    await store.create_job(NewJob(
        id=job_id, guild_id=guild, channel_id="10", user_id=author, role_ids=(),
        request=GenerationRequest(prompt=f"an entry by {author}"), provider="local",
        model=None, state=JobState.QUEUED, credits_estimate=4, event_id=event), [], now=T0)
    if state is not JobState.QUEUED:
        fields = {"delivery_ref": message or f"m-{job_id[:6]}"} if state is \
            JobState.DELIVERED else {}
        await store.transition(job_id, state, now=T0 + 1, **fields)
    return job_id


# ---- the store ---------------------------------------------------------------------------------
async def test_a_vote_is_one_row_per_member_and_entry(store: Store) -> None:
    await an_event(store)
    job = await an_entry(store, "alice")
    first = await store.add_vote(job, "bob", event_id="ev1", now=T0 + 5)
    again = await store.add_vote(job, "bob", event_id="ev1", now=T0 + 6)
    assert (first.open, first.changed, first.votes) == (True, True, 1)
    assert (again.open, again.changed, again.votes) == (True, False, 1)
    assert (await store.add_vote(job, "carol", event_id="ev1", now=T0 + 7)).votes == 2
    gone = await store.remove_vote(job, "bob", event_id="ev1", now=T0 + 8)
    twice = await store.remove_vote(job, "bob", event_id="ev1", now=T0 + 9)
    assert (gone.changed, gone.votes) == (True, 1) and (twice.changed, twice.votes) == (False, 1)
    assert [(v.job_id, v.voter_id, v.at) for v in await store.event_votes("ev1")] == [
        (job, "carol", T0 + 7)]


async def test_no_vote_is_written_once_the_event_is_closed_or_past_its_end(store: Store) -> None:
    await an_event(store)
    job = await an_entry(store, "alice")
    await store.add_vote(job, "bob", event_id="ev1", now=T0 + 5)
    late = await store.add_vote(job, "carol", event_id="ev1", now=ENDS)
    assert (late.open, late.changed, late.votes) == (False, False, 1)
    assert not (await store.remove_vote(job, "bob", event_id="ev1", now=ENDS)).open
    await store.close_event("ev1", now=T0 + 10)
    shut = await store.add_vote(job, "carol", event_id="ev1", now=T0 + 11)
    assert not shut.open and await store.vote_count(job) == 1


async def test_presses_racing_in_two_processes_count_once(store_url: str) -> None:
    first, second = await Store.open(store_url), await Store.open(store_url)
    try:
        await an_event(first)
        job = await an_entry(first, "alice")
        writes = await asyncio.gather(*(
            s.add_vote(job, "bob", event_id="ev1", now=T0 + 5)
            for s in (first, second, first, second)))
        assert sorted(w.changed for w in writes) == [False, False, False, True]
        assert await second.vote_count(job) == 1
    finally:
        await first.close()
        await second.close()


async def test_votes_survive_a_restart_and_rank_posted_entries(store_url: str) -> None:
    store = await Store.open(store_url)
    await an_event(store)
    a = await an_entry(store, "alice")
    b = await an_entry(store, "bob")
    pending = await an_entry(store, "carol", state=JobState.QUEUED)
    for voter in ("carol", "dave"):
        await store.add_vote(b, voter, event_id="ev1", now=T0 + 5)
    await store.add_vote(a, "dave", event_id="ev1", now=T0 + 6)
    await store.close()
    store = await Store.open(store_url)  # a restart: the votes are rows
    try:
        ranked = await store.entry_votes("ev1")
        assert [(e.job_id, e.author_id, e.votes) for e in ranked] == [
            (b, "bob", 2), (a, "alice", 1)]
        assert pending not in {e.job_id for e in ranked}
        assert ranked[0].message_id and ranked[0].message_id.startswith("m-")
    finally:
        await store.close()


async def test_forgetting_a_voter_deletes_their_votes_only(store: Store) -> None:
    await an_event(store)
    a = await an_entry(store, "alice")
    b = await an_entry(store, "bob")
    for job, voter in ((a, "carol"), (b, "carol"), (a, "dave")):
        await store.add_vote(job, voter, event_id="ev1", now=T0 + 5)
    assert await store.votes_by("carol") == 2
    assert await store.forget_votes("carol") == 2
    assert await store.votes_by("carol") == 0
    assert [(v.job_id, v.voter_id) for v in await store.event_votes("ev1")] == [(a, "dave")]


async def test_the_export_reads_a_guilds_votes_in_its_range(store: Store) -> None:
    await an_event(store)
    await an_event(store, "ev2", guild="other", channel="20")
    mine = await an_entry(store, "alice")
    theirs = await an_entry(store, "zed", event="ev2", guild="other")
    await store.add_vote(mine, "bob", event_id="ev1", now=T0 + 5)
    await store.add_vote(theirs, "bob", event_id="ev2", now=T0 + 5)
    assert [(v.job_id, v.voter_id) for v in await store.votes_in(GUILD, 0, T0 + 10)] == [
        (mine, "bob")]
    assert await store.votes_in(GUILD, T0 + 10, T0 + 20) == []


# ---- the rules ---------------------------------------------------------------------------------
async def test_who_may_vote_and_when(store: Store) -> None:
    votes = VoteService(store)
    await an_event(store)
    entry = await an_entry(store, "alice")
    queued = await an_entry(store, "alice", state=JobState.QUEUED)
    outside = await an_entry(store, "alice", event=None)
    now = T0 + 10

    async def refused(job: str, who: Requester, when: float = now) -> Refusal:
        with pytest.raises(Refusal) as caught:
            await votes.vote(job, who, now=when)
        return caught.value

    assert isinstance(await refused(entry, member("bot", bot=True)), NotAllowed)
    own = await refused(entry, member("alice"))
    assert isinstance(own, NotAllowed) and "your own entry" in str(own)
    late = await refused(entry, member("bob"), when=ENDS)
    assert isinstance(late, VotingClosed) and "Spring Jam" in str(late)
    assert isinstance(await refused(queued, member("bob")), NothingThere)
    assert isinstance(await refused(outside, member("bob")), NothingThere)
    elsewhere = Requester("bob", "another-guild", "10")
    assert isinstance(await refused(entry, elsewhere), NothingThere)
    with pytest.raises(VotingClosed):
        await votes.withdraw(entry, member("bob"), now=ENDS)
    assert await store.vote_count(entry) == 0  # nothing refused was written

    ballot = await votes.vote(entry, member("bob"), now=now)
    assert (ballot.voted, ballot.changed, ballot.votes) == (True, True, 1)
    posted = await store.get_job(entry)
    assert posted is not None
    assert (ballot.channel_id, ballot.message_id) == ("thread-ev1", posted.delivery_ref)
    await store.close_event("ev1", now=now + 1)  # ended by hand, before its end time
    assert isinstance(await refused(entry, member("carol"), when=now + 2), VotingClosed)
    assert await store.vote_count(entry) == 1


async def test_pressing_twice_is_one_vote_and_withdrawing_is_explicit(store: Store) -> None:
    votes = VoteService(store)
    await an_event(store)
    entry = await an_entry(store, "alice")
    bob = member("bob")
    presses = await asyncio.gather(*(votes.vote(entry, bob, now=T0 + 5) for _ in range(3)))
    assert [p.changed for p in presses].count(True) == 1
    assert all(p.voted and p.votes == 1 for p in presses)
    back = await votes.withdraw(entry, bob, now=T0 + 6)
    assert (back.voted, back.changed, back.votes) == (False, True, 0)
    assert not (await votes.withdraw(entry, bob, now=T0 + 7)).changed
    again = await votes.vote(entry, bob, now=T0 + 8)  # changeable until the end
    assert (again.changed, again.votes) == (True, 1)
    other = await an_entry(store, "carol")
    assert (await votes.vote(other, bob, now=T0 + 9)).votes == 1  # several entries: fine


async def test_forgotten_entries_are_out_of_the_running(store: Store) -> None:
    votes = VoteService(store)
    await an_event(store)
    kept = await an_entry(store, "alice")
    gone = await an_entry(store, "bob")
    await votes.vote(gone, member("carol"), now=T0 + 5)
    await votes.vote(gone, member("dave"), now=T0 + 5)
    await votes.vote(kept, member("carol"), now=T0 + 5)
    await store.forget_user("bob", pseudonym="forgotten-x", now=T0 + 6,
                            states=[JobState.DELIVERED])
    with pytest.raises(NotAllowed, match="deleted their data"):
        await votes.vote(gone, member("erin"), now=T0 + 7)
    event = await store.get_event("ev1")
    assert event is not None
    assert [s.entry.job_id for s in await votes.winners(event)] == [kept]


def entry(name: str, votes: int, seq: int) -> EntryVotes:
    return EntryVotes(name, f"author-{name}", "10", f"m-{name}", votes, seq)


def test_ranks_share_places_on_ties_in_a_fixed_order() -> None:
    entries = [entry("late", 3, 9), entry("d", 1, 4), entry("early", 3, 2), entry("b", 5, 7),
               entry("none", 0, 1)]
    ranked = rank(entries)
    assert [(s.entry.job_id, s.rank, s.tied) for s in ranked] == [
        ("b", 1, False), ("early", 2, True), ("late", 2, True), ("d", 4, False),
        ("none", 5, False)]
    assert rank(list(reversed(entries))) == ranked  # the same votes, the same words


async def test_winners_keep_a_tie_at_the_edge_and_never_an_entry_without_votes(
        store: Store) -> None:
    votes = VoteService(store)
    event = await an_event(store)
    jobs = [await an_entry(store, f"author{i}") for i in range(5)]
    tally = {0: 1, 1: 3, 2: 2, 3: 2}  # entry 4 gets nothing
    for index, count in tally.items():
        for n in range(count):
            await votes.vote(jobs[index], member(f"voter{n}"), now=T0 + 5)
    winners = await votes.winners(event)
    assert [(s.entry.job_id, s.rank, s.tied) for s in winners] == [
        (jobs[1], 1, False), (jobs[2], 2, True), (jobs[3], 2, True)]
    assert [s.entry.job_id for s in await votes.winners(event, places=4)] == [
        jobs[1], jobs[2], jobs[3], jobs[0]]
    assert [s.votes for s in await votes.top(event, limit=2)] == [3, 2]
    fresh = await an_event(store, "ev-empty", channel="30")
    assert await votes.winners(fresh) == []


async def test_delete_my_data_deletes_the_members_votes(data_dir: Path) -> None:
    async with httpx.AsyncClient() as http:
        world = await build(data_dir, http)
        try:
            store = world.store
            await an_event(store)
            entry_id = await an_entry(store, "alice")
            await world.services.votes.vote(entry_id, member("bob"), now=T0 + 5)
            await world.services.votes.vote(entry_id, member("carol"), now=T0 + 5)
            privacy = world.services.privacy
            assert (await privacy.holdings("bob")).votes == 1
            done = await privacy.forget("bob", member("bob"))
            assert done.votes == 1 and (await privacy.holdings("bob")).votes == 0
            assert [v.voter_id for v in await store.event_votes("ev1")] == ["carol"]
            assert "The **1** vote you cast in events was deleted." in forgotten_text(done)
        finally:
            await world.engine.stop()
            await store.close()


async def test_the_csv_export_carries_each_entrys_votes_and_voters(data_dir: Path) -> None:
    async with httpx.AsyncClient() as http:
        world = await build(data_dir, http)
        try:
            store = world.store
            await an_event(store)
            voted = await an_entry(store, "alice")
            unvoted = await an_entry(store, "bob")
            plain = await an_entry(store, "carol", event=None)
            for voter in ("dave", "erin"):
                await world.services.votes.vote(voted, member(voter), now=T0 + 5)
            admin = Requester("1", GUILD, "10", admin=True)
            export = await world.services.admin.export(admin, "1970-01-01", "1970-01-02")
            rows = {r["job_id"]: r for r in csv.DictReader(io.StringIO(export.data.decode()))}
            assert (rows[voted]["votes"], rows[voted]["voters"]) == ("2", "dave; erin")
            assert (rows[unvoted]["votes"], rows[unvoted]["voters"]) == ("0", "")
            assert (rows[plain]["votes"], rows[plain]["voters"]) == ("", "")  # not an entry
        finally:
            await world.engine.stop()
            await store.close()


async def test_migrate_db_copies_the_votes(tmp_path: Path, postgres_url: str) -> None:
    source = await Store.open(tmp_path / "old.sqlite3")
    target = await Store.open(postgres_url)
    try:
        await an_event(source)
        a, b = await an_entry(source, "alice"), await an_entry(source, "bob")
        for job, voter in ((a, "carol"), (b, "carol"), (b, "dave")):
            await source.add_vote(job, voter, event_id="ev1", now=T0 + 5)
        copied = await copy_database(source, target)
        assert copied["votes"] == 3
        assert await target.event_votes("ev1") == await source.event_votes("ev1")
        assert await target.entry_votes("ev1") == await source.entry_votes("ev1")
        # The key holds on the copy: a second press there is still one vote.
        assert not (await target.add_vote(b, "dave", event_id="ev1", now=T0 + 6)).changed
    finally:
        await source.close()
        await target.close()


def test_the_summary_says_ties_and_stays_one_message_for_a_wide_tie() -> None:
    event = EventRow(id="ev1", guild_id=GUILD, name="Jam", channel_id="10", ends_at=ENDS,
                     credits_per_user=1, moderation="off", created_at=T0, thread_id="77")
    clear = rank([entry("a", 4, 1), entry("b", 2, 2)])
    text = winners_block(event, clear)
    assert "1. <@author-a> — **4** votes · [entry](https://discord.com/channels/100/77/m-a)" \
        in text
    assert "2. <@author-b> — **2** votes" in text and "tied" not in text
    wide = rank([entry("top", 9, 0)] + [entry(f"e{i}", 1, i + 1) for i in range(40)])
    text = winners_block(event, wide)
    assert "=2. <@author-e0> — **1** vote (tied)" in text and "share their place" in text
    assert text.count("\n") == MAX_WINNER_LINES + 1
    assert text.endswith("…and 31 more entries tied at =2 with **1** vote each.")
    assert winners_block(event, []).startswith("• Votes: no entry got a vote")
    assert [vote_label(n) for n in (0, 1, 12)] == ["▲ Vote", "▲ 1", "▲ 12"]


async def test_a_vote_racing_the_close_waits_for_it_and_is_refused(postgres_url: str) -> None:
    """The close is mid-transaction when the vote reads the event: the vote waits for the
    close's row lock (seen in pg_locks, not timed) and then finds the event closed, so a summary
    read after the close can never miss a vote that was counted."""
    closer, voter = await Store.open(postgres_url), await Store.open(postgres_url)
    try:
        await an_event(closer)
        job = await an_entry(closer, "alice")
        async with closer.db.transaction() as tx:
            await tx.execute("UPDATE events SET state = 'closed', closed_at = ? WHERE id = ?",
                             (T0 + 5, "ev1"))
            vote = asyncio.create_task(voter.add_vote(job, "bob", event_id="ev1", now=T0 + 4))
            for _ in range(10_000):
                if vote.done() or await voter.db.fetchval(
                        "SELECT COUNT(*) FROM pg_locks WHERE NOT granted"):
                    break
                await asyncio.sleep(0.001)
            assert not vote.done(), "the vote did not wait for the close"
        write = await vote
        assert (write.open, write.changed) == (False, False)
        assert await voter.vote_count(job) == 0
    finally:
        await closer.close()
        await voter.close()
