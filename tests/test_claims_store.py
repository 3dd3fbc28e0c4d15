"""bot/store/claims.py on both backends: who drives each active job (claims, leases by the
database's clock, orphans, release), news for a job's driver, cancel requests, and the fair
queue's memory. Expired leases are made with a negative ttl, so nothing here waits for a clock.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest

from bot.models import GenerationRequest
from bot.store import JobState, NewJob, Store
from bot.store.records import QueuedRow, RunningCounts, Served
from bot.store.rows import CHUNK

HOUR = 3600.0
EXPIRED = -60.0  # a lease that ran out a minute ago


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[Store]:
    s = await Store.open(store_url)
    yield s
    await s.close()


async def add_job(store: Store, state: JobState = JobState.SUBMITTING) -> str:
    """A job in `state` (written queued, then moved there, as the engine does)."""
    job = NewJob(id=str(uuid.uuid4()), guild_id="g1", channel_id="c", user_id="u1", role_ids=(),
                 request=GenerationRequest(prompt="a fox", duration=5), provider="local",
                 model=None, state=JobState.QUEUED, credits_estimate=5)
    assert await store.create_job(job, [], now=1.0) is None
    if state is not JobState.QUEUED:
        assert await store.transition(job.id, state, now=2.0) is not None
    return job.id


async def test_an_active_job_nobody_drives_is_an_orphan_until_claimed(store: Store) -> None:
    active = await add_job(store)
    await add_job(store, JobState.QUEUED)  # waiting jobs are the scheduler's, never orphans
    assert [j.id for j in await store.orphans()] == [active]

    taken = await store.claim(active, "p1", HOUR)
    assert taken is not None and taken.owner == "p1"
    assert taken.lease_until is not None and taken.lease_until > await store.db_now() + HOUR / 2
    assert await store.orphans() == []
    assert await store.owners() == {"p1": 1}
    assert await store.claim(active, "p2", HOUR) is None  # held: not p2's to take
    again = await store.claim(active, "p1", HOUR)  # the owner may claim its own job again
    assert again is not None and again.owner == "p1"


async def test_an_expired_lease_is_taken_over(store: Store) -> None:
    job = await add_job(store)
    assert await store.claim(job, "p1", EXPIRED) is not None
    assert [j.id for j in await store.orphans()] == [job]
    taken = await store.claim(job, "p2", HOUR)
    assert taken is not None and taken.owner == "p2"
    assert await store.claim(job, "p3", HOUR) is None
    # A caller that proved p2 dead (bot/lease.py) may take its jobs before the lease runs out.
    replaced = await store.claim(job, "p3", HOUR, replacing="p2")
    assert replaced is not None and replaced.owner == "p3"


async def test_only_active_jobs_can_be_claimed(store: Store) -> None:
    queued = await add_job(store, JobState.QUEUED)
    done = await add_job(store, JobState.DELIVERED)
    for job in (queued, done, "no-such-job"):
        assert await store.claim(job, "p1", HOUR) is None
    assert await store.owners() == {}


async def test_renew_extends_the_owners_active_leases_only(store: Store) -> None:
    mine = [await add_job(store), await add_job(store)]
    theirs = await add_job(store)
    finished = await add_job(store)
    for job in mine:
        await store.claim(job, "p1", EXPIRED)
    await store.claim(theirs, "p2", EXPIRED)
    await store.claim(finished, "p1", EXPIRED)
    await store.transition(finished, JobState.DELIVERED, now=3.0)

    assert await store.renew("p1", HOUR) == 2  # the delivered job is no longer driven
    assert [j.id for j in await store.orphans()] == [theirs]
    assert await store.renew("nobody", HOUR) == 0
    assert await store.owners() == {"p1": 2, "p2": 1}


async def test_release_hands_the_jobs_over_at_once(store: Store) -> None:
    jobs = [await add_job(store), await add_job(store)]
    for job in jobs:
        await store.claim(job, "p1", HOUR)
    assert await store.release("p1") == 2
    assert [j.id for j in await store.orphans()] == jobs  # in queue order
    taken = await store.claim(jobs[0], "p2", HOUR)
    assert taken is not None and taken.owner == "p2"
    assert [j.id for j in await store.orphans(limit=5)] == [jobs[1]]


async def test_updates_reach_the_owner_in_order_until_dropped(store: Store) -> None:
    job, other = await add_job(store), await add_job(store)
    await store.claim(job, "p1", HOUR)
    await store.claim(other, "p2", HOUR)
    first = await store.record_update(job, '{"state": "running"}', now=5.0)
    second = await store.record_update(job, '{"state": "succeeded"}', now=6.0)
    await store.record_update(other, '{"state": "failed"}', now=6.0)
    assert second > first
    assert await store.updates_for("p1") == [(first, job, '{"state": "running"}'),
                                             (second, job, '{"state": "succeeded"}')]
    await store.drop_update(first)
    assert await store.updates_for("p1") == [(second, job, '{"state": "succeeded"}')]
    assert [u[1] for u in await store.updates_for("p2")] == [other]
    # A job that ends takes its unread news with it.
    await store.transition(job, JobState.CANCELLED, now=7.0)
    assert await store.updates_for("p1") == []


async def test_an_update_is_announced_on_postgres(store: Store) -> None:
    """PostgreSQL tells every listening process; SQLite says it can't (the caller polls)."""
    heard: asyncio.Queue[str] = asyncio.Queue()
    listening = await store.db.listen("seedance_updates", heard.put_nowait)
    assert listening is (store.dialect == "postgres")
    job = await add_job(store)
    await store.record_update(job, "{}", now=1.0)
    if listening:
        assert await asyncio.wait_for(heard.get(), timeout=30) == job


async def test_a_cancel_request_reaches_the_owner(store: Store) -> None:
    job = await add_job(store)
    queued = await add_job(store, JobState.QUEUED)
    await store.claim(job, "p1", HOUR)
    assert await store.request_cancel(job, "u1") is True
    assert await store.request_cancel(queued, "u1") is False  # not active: cancelled directly
    assert await store.request_cancel("no-such-job", "u1") is False
    asked = await store.cancel_requests("p1")
    assert [(j.id, j.cancel_requested) for j in asked] == [(job, "u1")]
    assert await store.cancel_requests("p2") == []


async def test_a_job_leaving_the_active_states_keeps_no_owner_and_no_cancel_request(
    store: Store,
) -> None:
    """The keeper's questions read only the owner index and the asked-to-cancel index (no
    active-state filter in `owners`): that holds because a move out of the active states
    clears both, whichever state it leaves from."""
    jobs = {state: await add_job(store, state) for state in
            (JobState.SUBMITTING, JobState.GENERATING, JobState.DOWNLOADING, JobState.READY)}
    for job in jobs.values():
        await store.claim(job, "p1", HOUR)
        assert await store.request_cancel(job, "u1") is True
    assert await store.owners() == {"p1": 4}
    assert len(await store.cancel_requests("p1")) == 4
    ends = (JobState.CANCELLED, JobState.FAILED, JobState.QUEUED, JobState.DELIVERED)
    for (state, job), end in zip(jobs.items(), ends, strict=True):
        assert await store.transition(job, end, now=3.0, from_states=[state],
                                      owner="p1") is not None
        left = await store.get_job(job)
        assert left is not None and left.owner is None and left.cancel_requested is None
    assert await store.owners() == {}
    assert await store.cancel_requests("p1") == []


async def test_the_fair_queue_remembers_who_was_served(store: Store) -> None:
    assert await store.db.atomic(store.served) == Served({}, {}, 0)

    async def save(served: Served, changed: Served) -> None:
        await store.db.atomic(lambda tx: store.save_served(tx, served, changed))

    await save(Served({}, {}, 3), Served({"g1": 3}, {("g1", "u1"): 3}, 3))
    await save(Served({}, {}, 5), Served({"g2": 5}, {("g1", "u1"): 5, ("g2", "u2"): 4}, 5))
    assert await store.db.atomic(store.served) == Served(
        {"g1": 3, "g2": 5}, {("g1", "u1"): 5, ("g2", "u2"): 4}, 5)


async def test_two_processes_claiming_one_orphan_give_it_to_one(store_url: str) -> None:
    """Every orphan is claimed by two stores at once (separate connections, as two processes
    would be): each goes to exactly one of them, and its row names that one."""
    first, second = await Store.open(store_url), await Store.open(store_url)
    try:
        jobs = [await add_job(first) for _ in range(20)]
        for job in jobs:
            await first.claim(job, "dead", EXPIRED)
        results = await asyncio.gather(*(
            store.claim(job, name, HOUR)
            for job in jobs for store, name in ((first, "a"), (second, "b"))))
        for index, job in enumerate(jobs):
            pair = results[2 * index:2 * index + 2]
            winners = [view for view in pair if view is not None]
            assert len(winners) == 1, (job, pair)
            row = await second.get_job(job)
            assert row is not None and row.owner == winners[0].owner
        assert await first.orphans() == []
    finally:
        await first.close()
        await second.close()


async def test_a_queue_place_is_news_once_whoever_tells_it(store: Store) -> None:
    first = await add_job(store, JobState.QUEUED)
    second = await add_job(store, JobState.QUEUED)
    running = await add_job(store)
    assert await store.tell_positions({first: 1, second: 2, running: 3}) == {first, second}
    assert await store.tell_positions({first: 1, second: 2}) == set()  # another process, same
    assert await store.tell_positions({first: 1, second: 1}) == {second}  # the queue moved
    many = {await add_job(store, JobState.QUEUED): n for n in range(3, 903)}
    assert await store.tell_positions(many) == set(many)  # in chunks


async def test_a_pass_starts_its_picks_in_their_order_with_one_history_line_each(
    store: Store,
) -> None:
    """A pass writes its picks a chunk of rows per statement: more picks than one chunk, one
    pick gone meanwhile (cancelled), all started in the picks' order (the fair order), each
    once, claimed, with its attempt counted and one history line."""
    ids = [await add_job(store, JobState.QUEUED) for _ in range(CHUNK + 3)]
    gone = ids[7]
    assert await store.transition(gone, JobState.CANCELLED, now=3.0) is not None
    order = ids[::-1]  # not the queue's order: the pass keeps the chooser's

    def choose(waiting: list[QueuedRow], _c: RunningCounts, _s: Served) -> list[QueuedRow]:
        by_id = {w.id: w for w in waiting}
        # The cancelled job is picked too, as if read before it went: it is skipped.
        return [by_id.get(i) or QueuedRow(i, "g1", "u1", "local", 0, 0.0, 0) for i in order]

    done = await store.schedule(choose, owner="p1", ttl=HOUR, now=4.0)
    expected = [i for i in order if i != gone]
    assert [j.id for j in done.started] == expected
    assert all(j.state is JobState.SUBMITTING and j.owner == "p1" and j.attempts == 1
               for j in done.started)
    assert await store.owners() == {"p1": len(expected)}
    for job_id in (expected[0], expected[CHUNK], expected[-1]):
        lines = [(t.from_state, t.to_state, t.detail) for t in await store.transitions(job_id)]
        assert lines[-1] == ("queued", "submitting", "attempt 1")
        assert [t for t in lines if t[1] == "submitting"] == [lines[-1]]
    left = await store.get_job(gone)
    assert left is not None and left.state is JobState.CANCELLED and left.attempts == 0
