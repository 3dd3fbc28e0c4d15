"""Fleet chaos (issue 14): three gateways fail and recover at random while 100 jobs run.

The real Engine drives the real HiAPI, Runware and Anyfast modules against their aiohttp fakes
(tests/fleet_helpers.py). A seeded plan (`FLEET_CHAOS_SEED=<n>` replays it) takes gateways down
— 503 bursts, 429 storms, an exhausted balance, the odd 500 or unreadable answer to a create —
and brings them back, and cancels a few jobs. Whatever the timing: every job ends once, with
exactly one settlement of its credits; a delivered job was posted once and charged; and no job
has a task at any gateway but the one it ended on (no task abandoned at a gateway while another
ran the job), nor more than one task anywhere.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
from collections import Counter
from pathlib import Path

import pytest

from bot.engine import JobState, JobView, NotAllowed
from bot.engine.fleet import FleetPolicy
from tests.chaos.faults_helpers import GATEWAYS
from tests.fleet_helpers import TAG, FleetRig, fleet_rig

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(120)]

JOBS = 100
NAMES = ("hiapi", "runware", "anyfast")
SEED = int(os.environ.get("FLEET_CHAOS_SEED", "1414"))
#: Circuits open after 3 failures and cool down within a fifth of a second (database clock);
#: a job with every gateway down waits, looking again every (fake) second.
POLICY = FleetPolicy(failures=3, cooldown=0.2, probe_ttl=5.0, wait=10**6, recheck=1.0,
                     spacing=0.05)
#: The gateways' answers are read for this long; a late one comes after it.
READ_TIMEOUT = 1.0
LATE = 1.5
BALANCE = {
    "hiapi": (402, {"code": 402, "message": "insufficient balance", "data": None,
                    "error_code": "INSUFFICIENT_BALANCE"}),
    "runware": (402, {"errors": [{"code": "insufficientCredits",
                                  "message": "Not enough credits."}]}),
    "anyfast": (403, {"code": "insufficient_user_quota", "message": "quota exhausted",
                      "data": None}),
}
SERVER_ERROR = {
    "hiapi": {"code": 500, "message": "internal", "data": None, "error_code": "INTERNAL"},
    "runware": {"errors": [{"code": "internalError", "message": "boom"}]},
    "anyfast": {"code": "internal_error", "message": "boom", "data": None},
}


def take_down(r: FleetRig, name: str, rng: random.Random) -> str:
    """Script the gateway's next creates to fail as a down gateway does; what was chosen."""
    gw, fake = GATEWAYS[name], r.fakes[name]
    how = rng.choices(["503", "429", "balance", "500", "garbage", "late"],
                      weights=[6, 3, 2, 1, 1, 1])[0]
    if how == "503":
        fake.fail_next(503, gw.unavailable, times=rng.randint(3, 40), **gw.create)
    elif how == "429":
        fake.fail_next(429, gw.rate_limited, times=rng.randint(1, 10), **gw.create)
    elif how == "balance":
        status, body = BALANCE[name]
        fake.fail_next(status, body, times=rng.randint(1, 30), **gw.create)
    elif how == "500":  # the task may exist: the job must not move
        fake.fail_next(500, SERVER_ERROR[name], **gw.create)
    elif how == "garbage":  # a 2xx nobody can read: the task may exist too
        fake.fail_next(200, "{not json", **gw.create)
    else:  # the task is made, its answer comes too late: it exists, the job must not move
        fake.answer_late(LATE, **gw.create)
    return how


def bring_up(r: FleetRig, name: str) -> None:
    fake = r.fakes[name]
    for fault in list(fake.faults):
        fake.faults.remove(fault)


async def chaos(r: FleetRig, rng: random.Random, rounds: int, log: Counter[str]) -> None:
    for _ in range(rounds):
        await asyncio.sleep(rng.uniform(0.01, 0.08))
        name = rng.choice(NAMES)
        if rng.random() < 0.55:
            log[take_down(r, name, rng)] += 1
        else:
            bring_up(r, name)
            log["recovered"] += 1


async def cancel_one(r: FleetRig, rng: random.Random, jobs: list[JobView]) -> None:
    """A member presses Cancel on one of the jobs so far, whatever state it is in."""
    job = rng.choice(jobs)
    with contextlib.suppress(NotAllowed):  # it ended already
        await r.engine.cancel(job.id, job.user_id)


async def test_gateways_failing_at_random_never_double_charge_nor_abandon_a_task(
        tmp_path: Path, store_url: str) -> None:
    print(f"FLEET_CHAOS_SEED={SEED}")
    rng = random.Random(SEED)
    log: Counter[str] = Counter()
    async with fleet_rig(tmp_path, NAMES, store_url=store_url, policy=POLICY,
                         read_timeout=READ_TIMEOUT,
                         concurrency="hiapi=6,runware=6,anyfast=6") as r:
        driver = asyncio.create_task(chaos(r, rng, 60, log))
        jobs = []
        for n in range(JOBS):
            order = list(NAMES)
            rng.shuffle(order)
            jobs.append(await r.enqueue(n, gateways=order))
            if rng.random() < 0.06:
                await cancel_one(r, rng, jobs)
            if n % 10 == 9:
                await asyncio.sleep(rng.uniform(0.0, 0.05))
        await driver
        for name in NAMES:  # the storm passes; everything left must finish
            bring_up(r, name)
        async with asyncio.timeout(90):  # a hang guard, not a timing assertion
            ended = [await r.engine.wait(job.id) for job in jobs]

        states = Counter(job.state for job in ended)
        print(f"chaos: {dict(log)}; endings: {dict(states)}")
        made = r.tasks_by_job()
        moved = 0
        for job in ended:
            assert job.terminal
            tag = TAG.search(job.request.prompt)
            assert tag is not None
            kinds = [line.kind for line in await r.store.ledger(job.id)]
            assert kinds[0] == "reserve" and len(kinds) == 2, (job.id, kinds)
            at = {name: made[name][tag.group()] for name in NAMES if made[name][tag.group()]}
            # One task at most, and only at the gateway the job ended on.
            steps = [t.detail for t in await r.store.transitions(job.id)]
            assert sum(at.values()) <= 1, (job.id, at, steps)
            assert set(at) <= {job.provider}, (job.id, job.provider, at, steps)
            if job.state is JobState.DELIVERED:
                assert kinds[1] == "commit"
                assert job.credits_charged == job.credits_estimate
                assert r.delivery.post_count[job.id] == 1
                assert at == {job.provider: 1}
            elif job.state is JobState.FAILED:
                assert kinds[1] == "release", (job.id, job.error_message)
                assert job.error_message
            else:
                assert job.state is JobState.CANCELLED
            moved += len(job.fleet.get("moves", []))
        assert sum(r.delivery.post_count.values()) == states[JobState.DELIVERED]
        # The storm did reach the jobs: some moved, most still made their video.
        assert moved > 0
        assert any(job.provider != job.fleet["order"][0] and job.state is JobState.DELIVERED
                   for job in ended)
        assert states[JobState.DELIVERED] >= JOBS // 2
