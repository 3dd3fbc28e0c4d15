"""A gateway's result URL is untrusted: whatever a callback (real or forged) or a poll names,
only a real video from a public address — or the embedded provider's own task folder — is ever
copied, kept and posted.

Each case runs the real engine, the real Runware client and the real callback receiver against
the fake Runware on loopback; callbacks are POSTed to the job's real callback URL, as a
gateway (or anyone who learned the URL) would.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import httpx
import pytest

from bot.config import Settings
from bot.engine import Engine, EngineLimits, JobState, JobView
from bot.models import GenerationRequest, ProviderResult
from bot.providers.base import Capabilities
from bot.providers.runware import build
from bot.store import Store
from bot.webhooks import CallbackReceiver
from tests.fakes.common import FakeGateway, sample_image, sample_video
from tests.fakes.runware import FakeRunware
from tests.test_engine_fakes import FakeClock, FakeDelivery, FakeProvider, Outcome, request


@dataclass
class Rig:
    settings: Settings
    fake: FakeRunware
    store: Store
    engine: Engine
    receiver: CallbackReceiver
    delivery: FakeDelivery

    async def enqueue(self) -> JobView:
        req = GenerationRequest(prompt="a lighthouse in a storm", provider="runware",
                                resolution="480p", duration=5, ratio="16:9")
        return await self.engine.enqueue(req, guild_id="g", channel_id="c", user_id="u")

    async def generating(self, job_id: str) -> JobView:
        for _ in range(20_000):
            job = await self.store.get_job(job_id)
            if job is not None and job.state is JobState.GENERATING:
                return job
            await _tick()
        raise AssertionError("the job never reached generating")

    async def forge(self, job_id: str, task_id: str, url: str) -> list[int]:
        """POST a success callback naming `url` to the job's real callback URL, twice."""
        body = {"taskType": "videoInference", "taskUUID": task_id, "status": "success",
                "videoUUID": "forged", "videoURL": url, "seed": 7}
        return await self.fake.send_callback(self.receiver.url_for("runware", job_id), body)

    async def ledger(self, job_id: str) -> list[str]:
        return [line.kind for line in await self.store.ledger(job_id)]


async def _tick() -> None:
    await asyncio.sleep(0.001)


def rig_factory(data_dir: Path) -> Callable[..., Any]:
    @asynccontextmanager
    async def make(*, private_hosts: str = "127.0.0.1") -> AsyncIterator[Rig]:
        fake = FakeRunware()
        async with fake, httpx.AsyncClient() as http:
            settings = Settings(_env_file=None, seedance_data_dir=data_dir,
                                runware_api_key=fake.api_key, runware_base_url=fake.base_url,
                                seedance_private_hosts=private_hosts,
                                seedance_user_daily_credits=1000)
            store = await Store.open(settings.database_path)
            provider = build(settings, client=http)
            clock = FakeClock()
            clock.block_from = 30.0  # polls wait: callbacks drive these jobs
            engine: Engine
            receiver = CallbackReceiver({"runware": provider},
                                        lambda job_id, state: engine.on_callback(job_id, state),
                                        base_url="http://placeholder", secret="s" * 32,
                                        host="127.0.0.1", port=0)
            await receiver.start()
            receiver.base_url = f"http://127.0.0.1:{receiver.bound_port}"
            delivery = FakeDelivery()
            engine = Engine(settings, store, delivery=delivery, providers={"runware": provider},
                            http=http, clock=clock.now, sleep=clock.sleep, callbacks=receiver,
                            limits=EngineLimits(retry_base=1.0))
            fake.polls_to_finish = 10**6  # the gateway's own answer: still processing
            try:
                await engine.start()
                yield Rig(settings, fake, store, engine, receiver, delivery)
            finally:
                await engine.stop()
                await receiver.stop()
                await provider.aclose()
                await store.close()

    return make


@pytest.fixture
def rigs(data_dir: Path) -> Callable[..., Any]:
    return rig_factory(data_dir)


@pytest.mark.parametrize("target", ["jobs/other-job/video.mp4", "seedance.sqlite3",
                                    "webhook_secret"])
async def test_a_forged_file_url_callback_reads_nothing_and_the_real_video_is_posted(
    rigs: Callable[..., Any], data_dir: Path, target: str
) -> None:
    """The hole: `videoURL=file://<data dir>/…` on a job's callback URL delivered that file."""
    other = data_dir / "jobs" / "other-job" / "video.mp4"
    other.parent.mkdir(parents=True)
    other.write_bytes(sample_video(864, 496, 2.0, audio=False))  # someone else's video
    (data_dir / "webhook_secret").write_text("do-not-post-me\n")
    async with rigs() as rig:
        job = await rig.generating((await rig.enqueue()).id)
        assert await rig.forge(job.id, job.task_id or "", (data_dir / target).as_uri()) == [
            200, 200]
        # The engine refused the file, asked the gateway itself, heard "processing", and
        # went back to following the task; the real result then arrives by callback.
        back = await rig.generating(job.id)
        assert back.result_meta == {}
        rig.fake.polls_to_finish = 0  # the gateway finishes: polls and its callback agree
        assert await rig.fake.deliver_webhooks(job.task_id or "")
        done = await rig.engine.wait(job.id)
        steps = [t.detail for t in await rig.store.transitions(job.id)]
        ledger = await rig.ledger(job.id)
    assert done.state is JobState.DELIVERED
    posted = rig.delivery.results[job.id].video_path.read_bytes()
    assert posted == sample_video() and posted != other.read_bytes()
    assert any("not confirmed by runware" in s for s in steps)
    assert ledger == ["reserve", "commit"]


async def test_a_loopback_result_is_never_fetched_by_default(rigs: Callable[..., Any]) -> None:
    """The hole: `http://127.0.0.1:…/x.png` was delivered as "the video". With no
    SEEDANCE_PRIVATE_HOSTS, the gateway's own (loopback) answer is refused too: the job fails,
    nothing is posted, the credits come back."""
    async with rigs(private_hosts="") as rig:
        rig.fake.polls_to_finish = 0
        png = rig.fake.add_file("x.png", sample_image())
        job = await rig.generating((await rig.enqueue()).id)
        await rig.forge(job.id, job.task_id or "", png)
        done = await rig.engine.wait(job.id)
        assert done.state is JobState.FAILED and done.error_kind == "bad_result"
        assert "only https" in (done.error_message or "")
        assert "bills for it" in (done.error_message or "")
        assert "secret-signature" not in (done.error_message or "")
        assert rig.delivery.post_count[job.id] == 0
        assert await rig.ledger(job.id) == ["reserve", "release"]
        assert not (rig.settings.data_dir / "jobs" / job.id).exists()


async def test_a_result_that_is_not_a_video_fails_the_job_and_refunds(
    rigs: Callable[..., Any],
) -> None:
    """A gateway (here the fake itself, on an allowed host) serving a PNG as the video: proven
    by its bytes before anything moves on, never posted."""
    async with rigs() as rig:
        rig.fake.polls_to_finish = 0
        rig.fake.result_bytes = sample_image()
        job = await rig.generating((await rig.enqueue()).id)
        await rig.fake.deliver_webhooks(job.task_id or "")
        done = await rig.engine.wait(job.id)
        assert done.state is JobState.FAILED and done.error_kind == "bad_result"
        assert "not a real video" in (done.error_message or "")
        assert "PNG image" in (done.error_message or "")
        assert rig.delivery.post_count[job.id] == 0
        assert await rig.ledger(job.id) == ["reserve", "release"]


async def test_a_garbage_callback_is_replaced_by_the_gateways_real_result(
    rigs: Callable[..., Any],
) -> None:
    """A callback naming a PNG, while the gateway's own answer has the real video: the job
    takes the gateway's answer."""
    async with rigs() as rig:
        png = rig.fake.add_file("x.png", sample_image())
        job = await rig.generating((await rig.enqueue()).id)
        rig.fake.polls_to_finish = 0  # the gateway has finished meanwhile
        await rig.forge(job.id, job.task_id or "", png)
        done = await rig.engine.wait(job.id)
    assert done.state is JobState.DELIVERED
    assert rig.delivery.results[job.id].video_path.read_bytes() == sample_video()
    assert rig.delivery.results[job.id].video_path.read_bytes() != sample_image()


# ---- file:// only for the embedded provider, only inside its task folder --------------------
@dataclass
class FileResults(FakeProvider):
    """A provider whose results are `file://` URLs, with or without a declared folder."""

    url: str = ""
    folder: Path | None = None

    def capabilities(self, model: str | None = None) -> Capabilities:
        return replace(super().capabilities(model), result_files=self.folder)

    def result_for(self, task: Any) -> ProviderResult:
        return ProviderResult(video_urls=[self.url], seed=1)


async def file_job(data_dir: Path, provider: FileResults) -> tuple[JobView, list[str]]:
    settings = Settings(_env_file=None, seedance_data_dir=data_dir)
    store = await Store.open(settings.database_path)
    clock = FakeClock()
    async with httpx.AsyncClient() as http:
        engine = Engine(settings, store, delivery=FakeDelivery(), providers={"fake": provider},
                        http=http, clock=clock.now, sleep=clock.sleep)
        try:
            await engine.start()
            job = await engine.enqueue(request(), guild_id="g", channel_id="c", user_id="u")
            done = await engine.wait(job.id)
            ledger = [line.kind for line in await store.ledger(job.id)]
        finally:
            await engine.stop()
            await store.close()
    return done, ledger


@pytest.mark.parametrize("declared", [False, True])
async def test_file_urls_only_inside_the_providers_own_task_folder(
    data_dir: Path, declared: bool
) -> None:
    tasks = data_dir / "local_tasks"
    tasks.mkdir()
    secret = data_dir / "seedance.sqlite3"
    async with FakeGateway() as files:
        provider = FileResults(files, url=(tasks / ".." / "seedance.sqlite3").as_uri(),
                               folder=tasks if declared else None,
                               script=lambda _r: Outcome(polls=0))
        done, ledger = await file_job(data_dir, provider)
    assert secret.exists()
    assert done.state is JobState.FAILED and done.error_kind == "bad_result"
    reason = "outside the allowed folder" if declared else "file URLs are not allowed"
    assert reason in (done.error_message or "")
    assert ledger == ["reserve", "release"]


async def test_the_embedded_providers_own_results_still_arrive(data_dir: Path) -> None:
    tasks = data_dir / "local_tasks"
    tasks.mkdir()
    video = tasks / "local-x.mp4"
    video.write_bytes(sample_video(864, 496, 2.0, audio=False))
    async with FakeGateway() as files:
        provider = FileResults(files, url=video.as_uri(), folder=tasks,
                               script=lambda _r: Outcome(polls=0))
        done, ledger = await file_job(data_dir, provider)
    assert done.state is JobState.DELIVERED and ledger == ["reserve", "commit"]
