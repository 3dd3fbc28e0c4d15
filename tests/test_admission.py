"""Admitting a job (`Store.create_job`, bot/store/admission.py) decides alike on both backends:
SQLite reads each guard in its transaction, PostgreSQL calls `seedance_admit` (migration 0017)
once. Every answer is checked against a model built from the store's own public reads (the
usage of each window, the jobs waiting, the jobs of the last minute) taken just before."""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import AsyncIterator

import pytest

from bot.models import GenerationRequest
from bot.store import JobState, NewJob, Store, UsageCheck
from bot.store.ledger import DAY
from bot.store.premium import PAID_KEY
from bot.store.records import Admission, AdmissionRefused, CheckResult
from bot.store.transitions import QUEUE_CHANNEL

START = 1_780_000_000.0 // DAY * DAY + 3 * 3600  # 03:00 UTC
USERS, EVENTS = ("u1", "u2", "u3"), (None, "e1")
WAITING = (JobState.QUEUED, JobState.AWAITING_APPROVAL)


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[Store]:
    s = await Store.open(store_url)
    yield s
    await s.close()


def new_job(rng: random.Random, *, state: JobState | None = None,
            context: dict[str, str] | None = None) -> NewJob:
    return NewJob(
        id=str(uuid.uuid4()), guild_id="g1", channel_id="c", user_id=rng.choice(USERS),
        role_ids=("r1",), request=GenerationRequest(prompt="a fox", duration=4),
        provider="local", model=None, state=state or rng.choice(WAITING),
        credits_estimate=rng.randint(1, 9), event_id=rng.choice(EVENTS),
        context=context or {})


def some_checks(rng: random.Random, job: NewJob, now: float) -> list[UsageCheck]:
    """The shapes the engine makes (bot/engine/quota.py), and one whose window starts off
    midnight (summed from the ledger): limits small enough to refuse now and then."""
    midnight = now // DAY * DAY
    made = [
        UsageCheck("user daily", "g1", rng.randint(20, 90), midnight, user_id=job.user_id,
                   outside_events=True),
        UsageCheck("guild monthly", "g1", rng.randint(150, 400), midnight - 3 * DAY),
        UsageCheck("unlimited", "g1", -1, 0.0, user_id=job.user_id),
        UsageCheck("rolling hour", "g1", rng.randint(20, 80), now - 3600.0),
        UsageCheck("rolling, outside events", "g1", rng.randint(10, 50), now - 7200.0,
                   user_id=job.user_id, outside_events=True),
    ]
    if job.event_id is not None:
        made.append(UsageCheck("event", "g1", rng.randint(5, 30), 0.0, user_id=job.user_id,
                               event_id=job.event_id))
        made.append(UsageCheck("event, rolling", "g1", rng.randint(20, 60), now - 5000.0,
                               event_id=job.event_id))
    rng.shuffle(made)
    return made[:rng.randint(0, len(made))]


async def expected(store: Store, job: NewJob, checks: list[UsageCheck],
                   admission: Admission, now: float) -> CheckResult | AdmissionRefused | None:
    for check in checks:
        if check.limit < 0:
            continue
        used = await store.usage(check)
        if used + job.credits_estimate > check.limit:
            return CheckResult(check, used)
    jobs = await store.jobs(guild_id="g1")
    waiting = [j for j in jobs if j.state in WAITING]
    counts = {
        "guild_queued": len(waiting),
        "user_queued": sum(j.user_id == job.user_id for j in waiting),
        "per_minute": sum(j.user_id == job.user_id and j.created_at > now - 60 for j in jobs),
    }
    for cap in ("guild_queued", "user_queued", "per_minute"):
        limit = getattr(admission, cap)
        if limit and counts[cap] >= limit:
            return AdmissionRefused(cap, limit, counts[cap])
    return None


async def test_every_refusal_and_admission_matches_the_model(store: Store) -> None:
    rng = random.Random(13)
    now, outcomes = START, {"admitted": 0, "credits": 0, "cap": 0}
    for _ in range(160):
        now += rng.choice((2.0, 2.0, 9.0, 40.0, 1800.0))
        job = new_job(rng)
        checks = some_checks(rng, job, now)
        admission = Admission(guild_queued=rng.choice((None, 0, 8, 14)),
                              user_queued=rng.choice((None, 3, 5)),
                              per_minute=rng.choice((None, 2, 3)))
        want = await expected(store, job, checks, admission, now)
        got = await store.create_job(job, checks, now=now, admission=admission)
        assert got == want
        written = await store.get_job(job.id)
        if got is None:
            outcomes["admitted"] += 1
            assert written is not None and written.state is job.state
            assert written.role_ids == ("r1",) and written.request == job.request
            assert written.credits_estimate == job.credits_estimate
            assert written.created_at == now
        else:
            outcomes["credits" if isinstance(got, CheckResult) else "cap"] += 1
            assert written is None
        if rng.random() < 0.3:  # some leave the queue, so the caps go down as well as up
            waiting = [j for j in await store.jobs(WAITING, guild_id="g1")]
            if waiting:
                gone = rng.choice(waiting)
                await store.db.execute("UPDATE jobs SET state = 'delivered' WHERE id = ?",
                                       (gone.id,))
    # The run went through every branch.
    assert min(outcomes.values()) >= 10, outcomes
    lines = await store.ledger()
    assert len(lines) == outcomes["admitted"]
    assert {ln.kind for ln in lines} == {"reserve"}


async def test_a_job_paid_with_purchased_credits_is_in_no_window(store: Store) -> None:
    rng = random.Random(5)
    month = UsageCheck("guild monthly", "g1", 1000, START // DAY * DAY)
    before = await store.usage(month)
    paid = new_job(rng, context={PAID_KEY: "4"})
    assert await store.create_job(paid, [month], now=START) is None
    assert await store.usage(month) == before  # the day rows do not count it
    assert [ln.job_id for ln in await store.ledger()] == [paid.id]  # but it is reserved
    plain = new_job(rng)
    assert await store.create_job(plain, [month], now=START) is None
    assert await store.usage(month) == before + plain.credits_estimate


async def test_only_an_admitted_queued_job_is_news(store: Store) -> None:
    """PostgreSQL tells every process of a queued job (in the same call that writes it), and
    of nothing else; SQLite has no notifications (processes look at the rows)."""
    heard: asyncio.Queue[str] = asyncio.Queue()
    listening = await store.db.listen(QUEUE_CHANNEL, heard.put_nowait)
    assert listening == (store.dialect == "postgres")
    rng = random.Random(7)
    tight = UsageCheck("guild monthly", "g1", 9, 0.0)
    queued = new_job(rng, state=JobState.QUEUED)
    assert await store.create_job(queued, [tight], now=START) is None
    held = new_job(rng, state=JobState.AWAITING_APPROVAL)
    refused = new_job(rng, state=JobState.QUEUED)
    refused = NewJob(**{**refused.__dict__, "credits_estimate": 10})
    assert await store.create_job(held, [], now=START) is None
    assert isinstance(await store.create_job(refused, [tight], now=START), CheckResult)
    if not listening:
        return
    assert await asyncio.wait_for(heard.get(), 5) == store.origin
    await asyncio.sleep(0.3)  # a notification of the other two would have come by now
    assert heard.empty()


async def test_concurrent_admissions_from_two_stores_take_turns(store_url: str) -> None:
    """Two stores (two pools, as two processes) admitting at once: the caps and the credits
    hold exactly, whichever backend decides."""
    stores = [await Store.open(store_url) for _ in range(2)]
    try:
        rng = random.Random(11)
        check = UsageCheck("guild monthly", "g1", 150, 0.0)
        admission = Admission(guild_queued=25)
        jobs = [new_job(rng, state=JobState.QUEUED) for _ in range(120)]
        answers = await asyncio.gather(*(
            stores[i % 2].create_job(job, [check], now=START, admission=admission)
            for i, job in enumerate(jobs)))
        admitted = [j for j, a in zip(jobs, answers, strict=True) if a is None]
        assert len(admitted) <= 25
        assert sum(j.credits_estimate for j in admitted) <= 150
        assert len(admitted) == 25 or any(isinstance(a, CheckResult) for a in answers)
        assert await stores[0].usage(check) == sum(j.credits_estimate for j in admitted)
        assert len(await stores[1].jobs(guild_id="g1")) == len(admitted)
    finally:
        for s in stores:
            await s.close()


async def test_a_job_that_fills_a_window_exactly_is_admitted(store: Store) -> None:
    rng = random.Random(3)
    window = UsageCheck("user daily", "g1", 9, START // DAY * DAY, user_id="u1")
    first, second, third = (NewJob(**{**new_job(rng).__dict__, "user_id": "u1",
                                      "credits_estimate": c, "event_id": None})
                            for c in (4, 5, 1))
    assert await store.create_job(first, [window], now=START) is None
    assert await store.create_job(second, [window], now=START) is None  # 4 + 5 = 9: fits
    assert await store.create_job(third, [window], now=START) == CheckResult(window, 9)
