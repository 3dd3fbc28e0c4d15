"""Quota usage read from the day rows (`usage_days`, bot/store/ledger.py) equals usage summed
from the ledger itself, whatever happened: reservations over several UTC days, in and out of
events, releases, commits, a member who deleted their data. On both backends."""

from __future__ import annotations

import random
import uuid
from collections.abc import AsyncIterator

import pytest

from bot.models import GenerationRequest
from bot.store import JobState, NewJob, Store, UsageCheck
from bot.store.database import Tx
from bot.store.ledger import DAY, _usage_from_ledger, usage_of
from bot.store.moderation import LEDGER_KEEP_SECONDS
from bot.store.schema import migrations, split_statements

START = 1_780_000_000.0 // DAY * DAY  # a UTC midnight
GUILDS, USERS, EVENTS = ("g1", "g2"), ("u1", "u2", "u3"), (None, "e1", "e2")


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[Store]:
    s = await Store.open(store_url)
    yield s
    await s.close()


def new_job(rng: random.Random) -> NewJob:
    return NewJob(
        id=str(uuid.uuid4()), guild_id=rng.choice(GUILDS), channel_id="c",
        user_id=rng.choice(USERS), role_ids=(), request=GenerationRequest(prompt="x"),
        provider="local", model=None, state=JobState.QUEUED,
        credits_estimate=rng.randint(1, 20), event_id=rng.choice(EVENTS))


def checks(now: float) -> list[UsageCheck]:
    made = []
    for guild in GUILDS:
        for since in (0.0, START, START + DAY, now // DAY * DAY):
            for user in (None, *USERS):
                made.append(UsageCheck("any", guild, 10**9, since, user_id=user))
                made.append(UsageCheck("outside", guild, 10**9, since, user_id=user,
                                       outside_events=True))
                for event in EVENTS[1:]:
                    made.append(UsageCheck("event", guild, 10**9, since, user_id=user,
                                           event_id=event))
    return made


async def assert_same(store: Store, now: float) -> None:
    async def both(check: UsageCheck) -> tuple[int, int]:
        async def body(tx: Tx) -> tuple[int, int]:
            return await usage_of(tx, check), await _usage_from_ledger(tx, check)
        return await store.db.atomic(body)

    for check in checks(now):
        days, ledger = await both(check)
        assert days == ledger, check


async def test_day_rows_sum_to_what_the_ledger_says(store: Store) -> None:
    rng = random.Random(1)
    jobs: list[str] = []
    now = START
    for step in range(120):
        now += rng.uniform(0, DAY / 20)  # about three UTC days in all
        action = rng.random()
        if action < 0.6 or not jobs:
            job = new_job(rng)
            assert await store.create_job(job, [], now=now) is None
            jobs.append(job.id)
        else:
            job_id = jobs.pop(rng.randrange(len(jobs)))
            end, ledger = rng.choice([(JobState.CANCELLED, "release"),
                                      (JobState.DELIVERED, "commit")])
            await store.transition(job_id, end, now=now, ledger=ledger)  # type: ignore[arg-type]
            if rng.random() < 0.3:  # settled twice: counted once
                await store.transition(job_id, end, now=now, ledger=ledger)  # type: ignore[arg-type]
        if step % 30 == 29:
            await assert_same(store, now)
    # A member deletes their data; later their old lines take the pseudonym.
    await store.forget_user("u2", pseudonym="gone-1", now=now,
                            states=[JobState.DELIVERED, JobState.CANCELLED])
    await assert_same(store, now)
    later = now + LEDGER_KEEP_SECONDS + DAY
    await store.finish_forgetting(now=later)
    await assert_same(store, later)


async def test_the_migration_counts_an_existing_ledger(store: Store) -> None:
    """0009 fills the day rows from the ledger a database already has (its INSERTs, run again
    on a ledger whose day rows were emptied, give the same usage as the ledger)."""
    rng = random.Random(2)
    now = START
    for _ in range(40):
        now += rng.uniform(0, DAY / 8)
        job = new_job(rng)
        assert await store.create_job(job, [], now=now) is None
        if rng.random() < 0.4:
            await store.transition(job.id, JobState.CANCELLED, now=now, ledger="release")
    (_version, _name, script), = [m for m in migrations(store.dialect) if m[0] == 9]
    inserts = [s for s in split_statements(script, store.dialect) if "INSERT" in s]
    assert len(inserts) == 2

    async def refill(tx: Tx) -> None:
        await tx.execute("DELETE FROM usage_days")
        for statement in inserts:
            await tx.execute(statement)

    await store.db.atomic(refill)
    await assert_same(store, now)
