"""Crash and restart: the engine is stopped abruptly at each state (its tasks cancelled with no
cleanup, its store left open, as if the process died), then a new store and engine take over
the same database. Every job must finish, be posted once and be charged once.
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from bot.config import Settings
from bot.engine import Engine, EngineLimits, JobState
from bot.store import Store
from tests.fakes.common import FakeGateway
from tests.test_engine_fakes import (
    FakeClock,
    FakeDelivery,
    FakeProvider,
    Outcome,
    job_dir,
    request,
    wait_for_state,
)


class World:
    """What outlives a crash: the database file, the gateway, the channel (delivery)."""

    def __init__(self, settings: Settings, files: FakeGateway, http: httpx.AsyncClient,
                 target: str) -> None:
        self.settings, self.files, self.http, self.target = settings, files, http, target
        self.provider = FakeProvider(files, idempotent_submit=True)
        self.delivery = FakeDelivery()
        self.clock = FakeClock()
        self.stores: list[Store] = []
        self.engines: list[Engine] = []

    async def boot(self, **kw: Any) -> tuple[Store, Engine]:
        store = await Store.open(self.target)
        kw.setdefault("limits", EngineLimits(retry_base=1.0))
        engine = Engine(self.settings, store, delivery=self.delivery,
                        providers={"fake": self.provider}, http=self.http,
                        clock=self.clock.now, sleep=self.clock.sleep, **kw)
        self.stores.append(store)
        self.engines.append(engine)
        await engine.start()
        return store, engine

    async def crash(self, engine: Engine, job_id: str | None = None,
                    state: str | None = None) -> None:
        """Kill the engine's work where it stands: no stop(), no awaiting, no store close.

        With `state`, first check that the job really is in that state at the moment of death.
        """
        if job_id is not None and state is not None:
            job = await engine.store.get_job(job_id)
            assert job is not None and job.state.value == state
        tasks = list(engine._runners.values())
        # The keeper too: a dead process renews no lease, so the next engine takes over.
        tasks.extend(t for t in (engine._scheduler, engine._keeper_task) if t is not None)
        for task in tasks:
            task.cancel()

    async def check_settled(self, store: Store, job_ids: list[str]) -> None:
        for job_id in job_ids:
            job = await store.get_job(job_id)
            assert job is not None and job.state is JobState.DELIVERED, job and job.state
            assert self.delivery.post_count[job_id] == 1
            kinds = [ln.kind for ln in await store.ledger(job_id)]
            assert kinds == ["reserve", "commit"]
            assert (job_dir(self.settings.data_dir, job_id) / "video.mp4").exists()


@pytest.fixture
async def world(data_dir: Path, store_url: str) -> AsyncIterator[World]:
    """On both backends: what outlives a crash is the database, whichever it is."""
    settings = Settings(seedance_data_dir=data_dir, seedance_user_daily_credits=1000,
                        seedance_private_hosts="127.0.0.1")
    async with FakeGateway() as files, httpx.AsyncClient() as http:
        w = World(settings, files, http, store_url)
        yield w
        for engine in w.engines:
            await engine.stop()
        for store in w.stores:
            await store.close()


async def add(engine: Engine, user: str = "u1") -> str:
    job = await engine.enqueue(request(return_last_frame=True), guild_id="g1", channel_id="c",
                               user_id=user)
    return job.id


async def test_crash_while_submitting_resubmits_only_with_an_idempotent_provider(
    world: World,
) -> None:
    world.provider.created_gate = asyncio.Event()  # the task exists; its id never comes back
    store, engine = await world.boot()
    job_id = await add(engine)
    await wait_for_state(store, job_id, "submitting")
    while not world.provider.tasks:
        await world.provider.submit_entered.wait()
        await asyncio.sleep(0)
    await world.crash(engine, job_id, "submitting")
    world.provider.created_gate = None

    store2, engine2 = await world.boot()
    job = await engine2.wait(job_id)
    assert len(world.provider.tasks) == 1  # the repeat create found the same task
    assert [k for k, _r, _c in world.provider.submits] == [job_id, job_id]
    await world.check_settled(store2, [job_id])
    assert job.attempts == 1


async def test_crash_while_submitting_fails_safely_without_idempotency(world: World) -> None:
    world.provider.idempotent_submit = False
    world.provider.created_gate = asyncio.Event()
    store, engine = await world.boot()
    job_id = await add(engine)
    await world.provider.submit_entered.wait()
    await wait_for_state(store, job_id, "submitting")
    await world.crash(engine, job_id, "submitting")

    store2, engine2 = await world.boot()
    job = await engine2.wait(job_id)
    assert job.state is JobState.FAILED and job.error_kind == "uncertain_submit"
    assert "not retried to avoid double billing" in (job.error_message or "")
    assert len(world.provider.submits) == 1
    assert [ln.kind for ln in await store2.ledger(job_id)] == ["reserve", "release"]


async def test_crash_while_generating_polls_the_stored_task(world: World) -> None:
    world.provider.poll_gate = asyncio.Event()
    store, engine = await world.boot()
    job_id = await add(engine)
    generating = await wait_for_state(store, job_id, "generating")
    await world.crash(engine, job_id, "generating")
    world.provider.poll_gate.set()

    store2, _engine2 = await world.boot()
    await _engine2.wait(job_id)
    assert len(world.provider.submits) == 1  # never re-created
    assert world.provider.tasks[generating.task_id or ""].polls >= 1
    await world.check_settled(store2, [job_id])


@pytest.mark.parametrize("expired", [False, True])
async def test_crash_while_downloading_downloads_again(world: World, expired: bool) -> None:
    world.files.fail_next(500, delay=1.0, path_prefix="/files/")  # the first fetch hangs
    store, engine = await world.boot()
    job_id = await add(engine)
    await wait_for_state(store, job_id, "downloading")
    for _ in range(50):  # let the hanging request reach the server
        if not world.files.faults:
            break
        await asyncio.sleep(0.002)
    await world.crash(engine, job_id, "downloading")
    if expired:
        world.files.expire_files()  # the stored URL no longer works: ask the gateway again

    store2, engine2 = await world.boot()
    await engine2.wait(job_id)
    task_id = (await store2.get_job(job_id)).task_id  # type: ignore[union-attr]
    assert world.provider.tasks[task_id or ""].polls == (2 if expired else 1)
    await world.check_settled(store2, [job_id])
    assert not list(job_dir(world.settings.data_dir, job_id).glob("*.part"))


@pytest.mark.parametrize("posted", [False, True])
async def test_crash_around_posting_never_posts_twice(world: World, posted: bool) -> None:
    if posted:
        world.delivery.hang_after_post = True  # posted, but the reference is never recorded
    else:
        world.delivery.gate = asyncio.Event()  # about to post
    store, engine = await world.boot()
    job_id = await add(engine)
    await wait_for_state(store, job_id, "ready")
    await (world.delivery.posted if posted else world.delivery.entered).wait()
    await world.crash(engine, job_id, "ready")
    world.delivery.hang_after_post = False
    world.delivery.gate = None

    store2, engine2 = await world.boot()
    await engine2.wait(job_id)
    assert world.delivery.deliver_calls[job_id] == 2
    await world.check_settled(store2, [job_id])


async def test_a_ready_job_whose_files_are_on_another_host_fetches_them_again(
    world: World,
) -> None:
    """A process on another host fetched the video and died before posting: the process that
    takes the job over has no files, so it fetches them again; still posted and charged once."""
    world.delivery.gate = asyncio.Event()  # about to post
    store, engine = await world.boot()
    job_id = await add(engine)
    await wait_for_state(store, job_id, "ready")
    await world.delivery.entered.wait()
    await world.crash(engine, job_id, "ready")
    shutil.rmtree(job_dir(world.settings.data_dir, job_id))  # the other host's disk
    world.delivery.gate = None
    store2, engine2 = await world.boot()
    await engine2.wait(job_id)
    states = [t.to_state for t in await store2.transitions(job_id)]
    assert states.count("downloading") == 2 and states[-1] == "delivered"
    await world.check_settled(store2, [job_id])


async def test_delivered_jobs_stay_delivered(world: World) -> None:
    _store, engine = await world.boot()
    job_id = await add(engine)
    await engine.wait(job_id)
    await world.crash(engine, job_id, "delivered")
    store2, engine2 = await world.boot()
    for _ in range(20):
        await asyncio.sleep(0.002)
    assert world.delivery.deliver_calls[job_id] == 1
    await world.check_settled(store2, [job_id])
    assert engine2._runners == {}


async def test_queued_jobs_resume_in_order_after_a_crash(world: World) -> None:
    world.provider.poll_gate = asyncio.Event()
    limits = EngineLimits(retry_base=1.0, gateway_in_flight=1)
    store, engine = await world.boot(limits=limits)
    ids = [await add(engine, user=f"u{i}") for i in range(4)]
    await wait_for_state(store, ids[0], "generating")
    await world.crash(engine)
    started_before = len([e for _j, e in world.delivery.events if e.kind.value == "started"])
    world.provider.poll_gate.set()

    store2, engine2 = await world.boot(limits=limits)
    for job_id in ids:
        await engine2.wait(job_id)
    started = [j for j, e in world.delivery.events if e.kind.value == "started"]
    assert started[started_before:] == ids[1:]
    await world.check_settled(store2, ids)


async def test_repeated_crashes_at_random_points_settle_every_job(world: World) -> None:
    """Crash many times while several jobs run; at the end all are delivered exactly once."""
    world.provider.script = lambda _r: Outcome(polls=2)
    ids: list[str] = []
    store, engine = await world.boot()
    ids = [await add(engine, user=f"u{i}") for i in range(6)]
    for round_ in range(6):
        for _ in range(3 + round_ * 2):
            await asyncio.sleep(0.002)
        await world.crash(engine)
        store, engine = await world.boot()
    for job_id in ids:
        job = await engine.wait(job_id)
        assert job.state is JobState.DELIVERED
    await world.check_settled(store, ids)
