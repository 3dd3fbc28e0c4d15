"""Result sets and Runware's output options, through the real use case (`VideoService.make`),
the real engine and the real Runware client against the fake Runware, on both store backends.

- a set is charged per video: 4 asked, 4 came → 4×; 2 of 4 came → 2 charged, 2 released, in
  one settlement;
- `count` is refused before anything is spent or sent where the gateway returns one video;
- outputQuality is sent, chosen from the upload limit, and learned from past result sizes;
- the server's safety mode reaches Runware's field, and a result it flags is never delivered:
  held for the moderators where there are some, else refused and refunded.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import httpx
import pytest

from bot.config import Settings
from bot.engine import Engine, JobState, JobView
from bot.engine.results import VIDEO_FILES, job_result
from bot.engine.sizing import pick_quality
from bot.errors import InvalidInput
from bot.intake import RequestOptions
from bot.models import GenerationRequest, Resolution, SafetyCheck
from bot.providers import ProviderRegistry
from bot.providers.runware import CAPS as RUNWARE
from bot.service import Requester, Services
from bot.store import Store
from tests.fakes.magnific import FakeMagnific
from tests.fakes.runware import FakeRunware
from tests.test_engine_fakes import FakeClock, FakeDelivery

GUILD = "100"
ADMIN = Requester("1", GUILD, "10", admin=True, moderator=True)
MEMBER = Requester("2", GUILD, "10")
#: 4 s of 480p: 4 credits per video.
EACH = 4


@dataclass
class Rig:
    runware: FakeRunware
    magnific: FakeMagnific
    store: Store
    engine: Engine
    services: Services
    delivery: FakeDelivery

    async def make(self, *, count: int = 1, provider: str = "runware",
                   context: dict[str, Any] | None = None) -> JobView:
        options = RequestOptions(prompt="a fox in the snow", duration=4,
                                 resolution=Resolution.P480, provider=provider, count=count)
        made = await self.services.videos.make(MEMBER, [], options, context=context)
        return made.job

    async def until(self, job_id: str, *states: JobState) -> JobView:
        for _ in range(20_000):
            job = await self.store.get_job(job_id)
            if job is not None and job.state in states:
                return job
            await asyncio.sleep(0.001)
        raise AssertionError(f"job never reached {states}")

    async def ledger(self, job_id: str) -> dict[str, int]:
        return {line.kind: line.credits for line in await self.store.ledger(job_id)}

    def tasks(self) -> list[dict[str, Any]]:
        return [task.body for task in self.runware.tasks.values()]


@asynccontextmanager
async def rig(data_dir: Path, store_url: str) -> AsyncIterator[Rig]:
    runware, magnific = FakeRunware(), FakeMagnific()
    runware.polls_to_finish = 0
    async with runware, magnific, httpx.AsyncClient() as http:
        settings = Settings(_env_file=None, seedance_data_dir=data_dir,
                            runware_api_key=runware.api_key, runware_base_url=runware.base_url,
                            magnific_api_key=magnific.api_key,
                            magnific_base_url=magnific.base_url,
                            seedance_private_hosts="127.0.0.1",
                            seedance_user_daily_credits=1000)
        store = await Store.open(store_url)
        clock = FakeClock()
        delivery = FakeDelivery()
        engine = Engine(settings, store, delivery=delivery,
                        providers=ProviderRegistry(settings, client=http), http=http,
                        clock=clock.now, sleep=clock.sleep)
        services = Services.build(settings, store, engine, engine.provider, http)
        try:
            await engine.start()
            yield Rig(runware, magnific, store, engine, services, delivery)
        finally:
            await engine.stop()
            await store.close()


# ---- sets ------------------------------------------------------------------------------------
async def test_a_four_video_set_is_delivered_together_and_charged_four_times(
        data_dir: Path, store_url: str) -> None:
    async with rig(data_dir, store_url) as r:
        job = await r.make(count=4)
        assert job.credits_estimate == 4 * EACH  # the quote before anything is spent
        done = await r.engine.wait(job.id)
        assert done.state is JobState.DELIVERED, done.error_message
        [task] = r.tasks()
        assert task["numberResults"] == 4
        result = r.delivery.results[job.id]
        assert len(result.video_paths) == 4 and all(p.exists() for p in result.video_paths)
        assert r.delivery.post_count[job.id] == 1  # one post for the whole set
        assert await r.ledger(job.id) == {"reserve": 16, "commit": 16}
        assert done.credits_charged == 16


async def test_the_row_names_a_sets_files_so_finding_them_lists_no_folder(
        data_dir: Path, store_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """READY writes the files' names to the row: the runner and /my-videos find them without
    listing the job's folder on the event loop. A row from before that lists it."""
    async with rig(data_dir, store_url) as r:
        job = await r.make(count=4)
        done = await r.engine.wait(job.id)
        assert done.state is JobState.DELIVERED, done.error_message
        names = ["video.mp4", "video_2.mp4", "video_3.mp4", "video_4.mp4"]
        assert done.result_meta[VIDEO_FILES] == names
        posted = r.delivery.results[job.id].video_paths
        assert [p.name for p in posted] == names
        settings = r.engine.settings

        def no_listing(self: Path, pattern: str) -> Any:
            raise AssertionError(f"{self} was listed")

        with monkeypatch.context() as m:
            m.setattr(Path, "glob", no_listing)
            assert job_result(settings, done).video_paths == posted
            # Only names of a job's own videos count, whatever the row says.
            forged = replace(done, result_meta={**done.result_meta,
                                                VIDEO_FILES: ["../../bot.db", "video_2.mp4"]})
            assert [p.name for p in job_result(settings, forged).video_paths] == ["video_2.mp4"]
        older = replace(done, result_meta={k: v for k, v in done.result_meta.items()
                                           if k != VIDEO_FILES})
        assert job_result(settings, older).video_paths == posted


async def test_a_partial_set_charges_what_came_and_releases_the_rest_once(
        data_dir: Path, store_url: str) -> None:
    async with rig(data_dir, store_url) as r:
        r.runware.outcome, r.runware.made = "mixed", 2
        job = await r.make(count=4)
        done = await r.engine.wait(job.id)
        assert done.state is JobState.DELIVERED, done.error_message
        assert len(r.delivery.results[job.id].video_paths) == 2
        lines = await r.store.ledger(job.id)
        assert sorted((ln.kind, ln.credits) for ln in lines) == [
            ("commit", 2 * EACH), ("release", 2 * EACH), ("reserve", 4 * EACH)]
        assert done.credits_charged == 2 * EACH
        # What the member has used of their quota counts only what was charged.
        status = await r.services.videos.quota(MEMBER)
        [mine] = [w for w in status.windows if w.name == "user"]
        assert mine.used == 2 * EACH


async def test_count_is_refused_before_spending_where_the_gateway_returns_one_video(
        data_dir: Path, store_url: str) -> None:
    async with rig(data_dir, store_url) as r:
        with pytest.raises(InvalidInput) as refused:
            await r.make(count=2, provider="magnific")
        [problem] = [p for p in refused.value.problems if p.subject == "count"]
        assert "returns one video per request" in problem.message
        assert "set count to 1" in problem.message
        assert await r.store.jobs() == [] and await r.store.ledger() == []
        assert r.magnific.received() == []  # no gateway request was made


# ---- Runware's output options ------------------------------------------------------------------
async def test_output_quality_is_chosen_to_fit_the_upload_limit_and_learned(
        data_dir: Path, store_url: str) -> None:
    async with rig(data_dir, store_url) as r:
        limit = 8 * 1024 * 1024
        request = GenerationRequest(prompt="x", duration=4, resolution=Resolution.P480,
                                    results=4)
        expected = pick_quality(request, RUNWARE, limit // 4, [])
        job = await r.make(count=4, context={"filesize_limit": limit})
        assert job.request.output_quality == expected
        await r.engine.wait(job.id)
        [task] = r.tasks()
        assert task["outputQuality"] == expected and task["outputFormat"] == "MP4"
        # The fake's results are far smaller than the prior assumes: what they weighed is
        # kept, and the next request of the same shape may ask for more quality.
        sizes = await r.store.recent_result_sizes("runware", "480p")
        assert len(sizes) == 4 and all(q == expected for q, _s, _b in sizes)
        again = await r.make(count=4, context={"filesize_limit": limit})
        assert again.request.output_quality is not None
        assert again.request.output_quality > expected
        # Without a known limit (the CLI writes files) the gateway's own quality stands.
        plain = await r.make()
        assert plain.request.output_quality is None


def test_the_quality_estimate_falls_as_the_budget_shrinks() -> None:
    request = GenerationRequest(prompt="x", duration=10, resolution=Resolution.P720)
    qualities = [pick_quality(request, RUNWARE, budget, [])
                 for budget in (100_000_000, 20_000_000, 8_000_000, 2_000_000, 10_000)]
    assert qualities == sorted(qualities, reverse=True) and qualities[0] == 95
    assert qualities[-1] == 20  # nothing fits: the lowest, and our transcode does the rest
    heavy = [(95, 10.0, 50_000_000)] * 5  # a gateway that makes far bigger files than assumed
    assert pick_quality(request, RUNWARE, 20_000_000, heavy) < qualities[1]


# ---- Runware's safety check --------------------------------------------------------------------
async def test_the_servers_safety_mode_reaches_runware(data_dir: Path, store_url: str) -> None:
    async with rig(data_dir, store_url) as r:
        await r.services.admin.set_safety(ADMIN, SafetyCheck.ALL_FRAMES)
        await r.engine.wait((await r.make()).id)
        await r.services.admin.set_safety(ADMIN, SafetyCheck.NONE)
        await r.engine.wait((await r.make()).id)
        first, second = r.tasks()
        assert first["safety"] == {"checkContent": True, "mode": "full"}
        assert second["safety"] == {"checkContent": False, "mode": "none"}


async def test_a_flagged_result_without_moderators_is_refused_and_refunded(
        data_dir: Path, store_url: str) -> None:
    async with rig(data_dir, store_url) as r:
        await r.services.admin.set_safety(ADMIN, SafetyCheck.KEY_FRAMES)
        r.runware.nsfw = {0}
        job = await r.make()
        done = await r.engine.wait(job.id)
        assert done.state is JobState.FAILED and done.error_kind == "flagged"
        assert "safety check flagged" in (done.error_message or "")
        assert job.id not in r.delivery.posts  # never posted
        assert await r.ledger(job.id) == {"reserve": EACH, "release": EACH}


async def test_a_flagged_video_of_a_set_is_dropped_and_refunded_the_rest_posted(
        data_dir: Path, store_url: str) -> None:
    async with rig(data_dir, store_url) as r:
        await r.services.admin.set_safety(ADMIN, SafetyCheck.KEY_FRAMES)
        r.runware.nsfw = {1, 3}
        job = await r.make(count=4)
        done = await r.engine.wait(job.id)
        assert done.state is JobState.DELIVERED
        assert len(r.delivery.results[job.id].video_paths) == 2
        assert done.result_meta["refused_flagged"] == 2
        assert await r.ledger(job.id) == {"reserve": 4 * EACH, "commit": 2 * EACH,
                                          "release": 2 * EACH}
        # Only the two clean results were kept to fetch, in their order.
        kept = [url.split("/files/")[1].split(".mp4")[0] for url in done.result_meta["video_urls"]]
        assert kept == _video_uuids(r, [0, 2])


async def test_a_flagged_result_goes_to_the_review_queue_where_there_is_one(
        data_dir: Path, store_url: str) -> None:
    async with rig(data_dir, store_url) as r:
        # Moderators have a channel, but results are not reviewed as a rule: only the flag
        # sends this one there. The safety mode is the default (Runware account's "fast").
        from bot.guild import ReviewMode

        await r.services.admin.set_moderation(ADMIN, ReviewMode.OFF, "555")
        r.runware.nsfw = {0}
        job = await r.make(count=2)
        held = await r.until(job.id, JobState.HELD, JobState.FAILED, JobState.DELIVERED)
        assert held.state is JobState.HELD
        assert job.id not in r.delivery.posts
        assert await r.ledger(job.id) == {"reserve": 2 * EACH}  # nothing settled yet
        reasons = [e.reason for jid, e in r.delivery.events if jid == job.id and e.reason]
        assert any("safety check flagged" in why for why in reasons)
        approved = await r.engine.approve(job.id, ADMIN.user_id)
        assert approved.state in (JobState.READY, JobState.DELIVERED)
        done = await r.engine.wait(job.id)
        assert done.state is JobState.DELIVERED
        assert await r.ledger(job.id) == {"reserve": 2 * EACH, "commit": 2 * EACH}


def _video_uuids(r: Rig, indexes: list[int]) -> list[str]:
    """The fake's videoUUIDs of the results at `indexes` of the one task."""
    import uuid

    [uid] = list(r.runware.tasks)
    return [str(uuid.uuid5(uuid.UUID(uid), str(i))) for i in indexes]


# ---- the ledger: a short set is settled once, as two lines ------------------------------------
async def test_a_partial_settlement_is_one_settlement(store_url: str) -> None:
    import uuid

    from bot.store import NewJob, UsageCheck

    store = await Store.open(store_url)
    try:
        job = NewJob(id=str(uuid.uuid4()), guild_id="g", channel_id="c", user_id="u",
                     role_ids=(), request=GenerationRequest(prompt="x", results=4),
                     provider="runware", model=None, state=JobState.QUEUED, credits_estimate=20)
        await store.create_job(job, [], now=1000.0)
        moved = await store.transition(job.id, JobState.FAILED, now=1001.0, ledger="commit",
                                       charge=5)
        assert moved is not None and moved.credits_charged == 5
        # A later settlement of either kind changes nothing: the job is settled.
        await store.transition(job.id, JobState.FAILED, now=1002.0, ledger="release")
        await store.transition(job.id, JobState.FAILED, now=1003.0, ledger="commit")
        lines = sorted((ln.kind, ln.credits) for ln in await store.ledger(job.id))
        assert lines == [("commit", 5), ("release", 15), ("reserve", 20)]
        # Usage counts reserved minus released, from the day rows and from the ledger alike.
        for since in (0.0, 999.5):  # a UTC midnight (day rows), and not (the ledger)
            check = UsageCheck("any", "g", 10**6, since, user_id="u")
            assert (await store.usage(check)) == 5
    finally:
        await store.close()
