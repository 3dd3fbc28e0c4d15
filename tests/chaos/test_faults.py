"""Fault suite (issue 7, item 3): every gateway meets 429 storms with Retry-After, 503 bursts,
timeouts, malformed JSON, expired result URLs and moderation failures; the disk fills while
downloading; Discord answers 429 and 5xx to the upload. Each job must end delivered or failed
with a message a person understands, with exactly one commit or release, and without a second
create where a second create could bill twice.

The gateway cases drive the real Engine with each real provider module against its aiohttp fake
(tests/chaos/faults_helpers.py). Waits are recorded (the engine's fake clock, the transport's
sleep), so "Retry-After was honoured" is checked on the waits chosen, not on wall time.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Protocol, runtime_checkable

import pytest

from bot.engine import EngineLimits, JobState, JobView
from bot.providers.base import HttpGateway
from bot.providers.http import CREATE_ATTEMPTS
from tests.chaos.faults_helpers import GATEWAYS, LATE, LIMITS, Gateway, Rig, rig
from tests.e2e.harness import REPO, BotProcess
from tests.fakes.common import FakeGateway, sample_video
from tests.fakes.discord.server import FakeDiscord
from tests.fakes.discord.state import Message

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(120)]

ALL = pytest.mark.parametrize("gw", list(GATEWAYS.values()), ids=list(GATEWAYS))
WITH_AUDIO = pytest.mark.parametrize(
    "gw", [g for g in GATEWAYS.values() if g.has_audio], ids=[g.name for g in GATEWAYS.values()
                                                             if g.has_audio])
#: Polls each fake needs before it reports success (its default walk through the statuses).
BASE_POLLS = {"anyfast": 4, "runware": 3, "magnific": 2, "hiapi": 3}
#: What each result host answers once a link expired.
EXPIRED = {"anyfast": 403, "runware": 410, "magnific": 404, "hiapi": 403}


# ---- checks shared by every case ----------------------------------------------------------

def assert_delivered(r: Rig, job: JobView) -> None:
    assert job.state is JobState.DELIVERED, (job.state, job.error_message)
    assert r.delivery.post_count[job.id] == 1
    video = Path(job.result_path or "")
    assert video.read_bytes() == sample_video()
    assert not list(video.parent.glob("*.part"))


def assert_failed(job: JobView, *causes: str) -> str:
    """Failed with a sentence naming the cause: no traceback, no JSON, no secret."""
    assert job.state is JobState.FAILED, job.state
    message = job.error_message or ""
    assert any(c.lower() in message.lower() for c in causes), message
    for leak in ("Traceback", "{", "}", "test-key", "key-123456", "secret-signature",
                 "X-Amz-Signature="):
        assert leak not in message, message
    return message


async def assert_ledger(r: Rig, job: JobView, settled: str) -> None:
    assert await r.ledger(job.id) == ["reserve", settled]


def gaps_before_retries(steps: list[tuple[str, float]]) -> list[float]:
    """Clock time between each requeue after a refused create and the job's next start."""
    return [steps[i + 1][1] - at for i, (state, at) in enumerate(steps[:-1])
            if state == "queued" and i > 0 and steps[i + 1][0] == "submitting"]


def gap_before_retry(steps: list[tuple[str, float]]) -> float:
    """Clock time between the job's first requeue after a refused create and its next start."""
    gaps = gaps_before_retries(steps)
    assert gaps, f"no retry in {steps}"
    return gaps[0]


def max_attempts(r: Rig) -> int:
    """Tries the transport gives one poll."""
    assert isinstance(r.provider, HttpGateway)
    return r.provider.http.max_attempts


def create_attempts(r: Rig) -> int:
    """Tries the transport gives one create (one: the engine's requeue is its retry budget)."""
    assert isinstance(r.provider, HttpGateway)
    return CREATE_ATTEMPTS


# ---- control ------------------------------------------------------------------------------

@ALL
async def test_without_faults_one_create_one_commit(gw: Gateway, data_dir: Path) -> None:
    async with rig(gw, data_dir) as r:
        job = await r.run()
        assert_delivered(r, job)
        assert len(gw.creates(r.fake)) == 1 and gw.tasks(r.fake) == 1
        assert len(gw.polls(r.fake)) == BASE_POLLS[gw.name]
        await assert_ledger(r, job, "commit")
        assert r.sleeps.delays == []


# ---- 429 and 503 --------------------------------------------------------------------------

@ALL
async def test_429_storm_honours_retry_after_and_creates_once(gw: Gateway,
                                                              data_dir: Path) -> None:
    async with rig(gw, data_dir) as r:
        storm = create_attempts(r) + 1  # more than one submit's worth: the engine requeues
        r.fake.fail_next(429, gw.rate_limited, headers={"Retry-After": "7"}, times=storm,
                         **gw.create)
        job = await r.run()
        assert_delivered(r, job)
        assert len(gw.creates(r.fake)) == storm + 1 and gw.tasks(r.fake) == 1
        # The transport sent each create once; each of the engine's requeues waited the hint.
        assert r.sleeps.delays == []
        gaps = gaps_before_retries(await r.steps(job.id))
        assert len(gaps) == storm and all(g >= 7.0 for g in gaps), gaps
        await assert_ledger(r, job, "commit")


@ALL
async def test_503_bursts_on_create_and_poll_end_delivered(gw: Gateway, data_dir: Path) -> None:
    async with rig(gw, data_dir) as r:
        r.fake.fail_next(503, gw.unavailable, times=3, **gw.create)
        r.fake.fail_next(503, "<html><body>503 Service Temporarily Unavailable</body></html>",
                         times=3, **gw.poll)
        job = await r.run()
        assert_delivered(r, job)
        assert len(gw.creates(r.fake)) == 4 and gw.tasks(r.fake) == 1
        await assert_ledger(r, job, "commit")


@ALL
async def test_503_that_never_ends_fails_clearly_and_releases(gw: Gateway,
                                                              data_dir: Path) -> None:
    async with rig(gw, data_dir) as r:
        body = json.loads(json.dumps(gw.unavailable).replace(
            "busy", f"busy for key {r.fake.api_key}").replace(
            "unavailable", f"unavailable for key {r.fake.api_key}"))
        r.fake.fail_next(503, body, times=200, **gw.create)
        job = await r.run()
        assert_failed(job, "503")
        # Each submit tried as often as the transport allows a create, and the engine
        # resubmitted exactly as often as its limit says; never did the gateway take a task.
        sent = create_attempts(r) * (LIMITS.submit_retries + 1)
        assert len(gw.creates(r.fake)) == sent and gw.tasks(r.fake) == 0
        await assert_ledger(r, job, "release")


# ---- create retries: one try at the transport, the engine's requeue is the budget ----------
# (moved here from tests/test_provider_gateways.py and tests/test_provider_runware.py, where the
# transport itself used to retry creates)

@ALL
async def test_rate_limit_on_create_honours_retry_after_and_is_bounded(
    gw: Gateway, data_dir: Path
) -> None:
    limited = gw.rate_limited
    async with rig(gw, data_dir) as r:
        r.fake.fail_next(429, limited, headers={"Retry-After": "3"}, times=2, **gw.create)
        job = await r.run()
        assert_delivered(r, job)
        assert len(gw.creates(r.fake)) == 3 and gw.tasks(r.fake) == 1
        gaps = gaps_before_retries(await r.steps(job.id))
        assert len(gaps) == 2 and all(g >= 3.0 for g in gaps), gaps  # each wait as told
        assert r.sleeps.delays == []
    async with rig(gw, data_dir / "bounded") as r:
        r.fake.fail_next(429, limited, headers={"Retry-After": "4"}, times=50, **gw.create)
        job = await r.run()
        assert_failed(job, "429", "too many")
        assert job.error_kind == "rate_limited"
        gaps = gaps_before_retries(await r.steps(job.id))
        assert len(gaps) == LIMITS.submit_retries and all(g >= 4.0 for g in gaps), gaps
        assert len(gw.creates(r.fake)) == 1 + LIMITS.submit_retries and gw.tasks(r.fake) == 0
        await assert_ledger(r, job, "release")


@ALL
async def test_503_on_create_is_retried_then_succeeds(gw: Gateway, data_dir: Path) -> None:
    async with rig(gw, data_dir) as r:
        r.fake.fail_next(503, gw.unavailable, headers={"Retry-After": "2"}, **gw.create)
        job = await r.run()
        assert_delivered(r, job)
        assert gw.tasks(r.fake) == 1 and len(gw.creates(r.fake)) == 2
        assert gap_before_retry(await r.steps(job.id)) >= 2.0 and r.sleeps.delays == []
        await assert_ledger(r, job, "commit")


@pytest.mark.parametrize("status", [503, 504, 500])
async def test_runware_unavailable_create_is_resent_with_the_same_task_uuid(
    data_dir: Path, status: int
) -> None:
    gw = GATEWAYS["runware"]
    async with rig(gw, data_dir) as r:
        r.fake.fail_next(status, gw.unavailable, headers={"Retry-After": "1.5"}, **gw.create)
        job = await r.run()
        assert_delivered(r, job)
        assert gap_before_retry(await r.steps(job.id)) >= 1.5 and r.sleeps.delays == []
        sent = [c.body[0]["taskUUID"] for c in gw.creates(r.fake)]
        assert sent == [job.task_id, job.task_id] and list(r.fake.tasks) == [job.task_id]


async def test_runware_lost_create_answer_is_resent_with_the_same_uuid(data_dir: Path) -> None:
    gw = GATEWAYS["runware"]
    async with rig(gw, data_dir) as r:
        r.fake.create_delays = [LATE]  # the task is made, the answer comes too late
        job = await r.run()
        assert_delivered(r, job)
        sent = [c.body[0]["taskUUID"] for c in gw.creates(r.fake)]
        assert len(sent) == 2 and sent[0] == sent[1] == job.task_id
        assert len(r.fake.tasks) == 1 and r.fake.repeats == 1
        assert len(gaps_before_retries(await r.steps(job.id))) == 1 and r.sleeps.delays == []


@ALL
async def test_500_on_create_is_never_repeated_unless_idempotent(gw: Gateway,
                                                                  data_dir: Path) -> None:
    async with rig(gw, data_dir) as r:
        r.fake.fail_next(500, gw.unavailable, **gw.create)
        job = await r.run()
        if gw.idempotent:  # the same taskUUID: a repeat cannot start a second task
            assert_delivered(r, job)
            assert len(gw.creates(r.fake)) == 2
            await assert_ledger(r, job, "commit")
        else:  # a 500 may hide a created task: sending again could bill twice
            assert_failed(job, "500")
            assert len(gw.creates(r.fake)) == 1
            await assert_ledger(r, job, "release")
        assert gw.tasks(r.fake) == (1 if gw.idempotent else 0)


@ALL
async def test_503_on_every_poll_gives_up_after_the_limit(gw: Gateway, data_dir: Path) -> None:
    async with rig(gw, data_dir) as r:
        r.fake.fail_next(503, gw.unavailable, times=1000, **gw.poll)
        job = await r.run()
        assert_failed(job, "503")
        assert len(gw.creates(r.fake)) == 1 and gw.tasks(r.fake) == 1
        polls = max_attempts(r) * (LIMITS.poll_errors + 1)
        assert len(gw.polls(r.fake)) == polls
        assert len(await r.ledger(job.id)) == 2  # settled once, one way or the other


@ALL
async def test_503_on_every_poll_commits_because_the_task_runs_on(
    gw: Gateway, data_dir: Path
) -> None:
    async with rig(gw, data_dir) as r:
        r.fake.fail_next(503, gw.unavailable, times=1000, **gw.poll)
        job = await r.run()
        assert job.state is JobState.FAILED
        await assert_ledger(r, job, "commit")


# ---- timeouts -----------------------------------------------------------------------------

@ALL
async def test_lost_create_answer_is_never_sent_twice(gw: Gateway, data_dir: Path) -> None:
    """The gateway made the task, then its answer came too late: the worst case for billing."""
    async with rig(gw, data_dir) as r:
        r.fake.answer_late(LATE, **gw.create)
        job = await r.run()
        assert gw.tasks(r.fake) == 1  # only ever one task at the gateway
        if gw.idempotent:
            assert_delivered(r, job)
            assert len(gw.creates(r.fake)) == 2 and r.fake.repeats == 1
            await assert_ledger(r, job, "commit")
        elif r.provider.capabilities().task_list:  # found in the task list, not sent again
            assert_delivered(r, job)
            assert len(gw.creates(r.fake)) == 1 and job.task_id in r.fake.tasks
            await assert_ledger(r, job, "commit")
        else:
            message = assert_failed(job, "no answer")
            assert "not sent again" in message
            assert len(gw.creates(r.fake)) == 1
            await assert_ledger(r, job, "release")


@ALL
async def test_slow_polls_are_retried(gw: Gateway, data_dir: Path) -> None:
    async with rig(gw, data_dir) as r:
        r.fake.answer_late(LATE, times=2, **gw.poll)
        job = await r.run()
        assert_delivered(r, job)
        assert len(gw.creates(r.fake)) == 1 and len(r.sleeps.delays) == 2
        await assert_ledger(r, job, "commit")


# ---- malformed JSON -----------------------------------------------------------------------

@ALL
async def test_malformed_create_answer_is_never_sent_twice(gw: Gateway, data_dir: Path) -> None:
    async with rig(gw, data_dir) as r:
        r.fake.fail_next(200, '{"data": {"task', **gw.create)
        job = await r.run()
        if gw.idempotent:
            assert_delivered(r, job)
            assert len(gw.creates(r.fake)) == 2 and gw.tasks(r.fake) == 1
            await assert_ledger(r, job, "commit")
        else:  # a 200 means the gateway took the work; we just cannot read its id
            assert_failed(job, "malformed JSON")
            assert len(gw.creates(r.fake)) == 1
            await assert_ledger(r, job, "release")


@ALL
async def test_malformed_poll_answers_are_polled_again(gw: Gateway, data_dir: Path) -> None:
    async with rig(gw, data_dir) as r:
        r.fake.fail_next(200, "<html>upstream proxy error", times=2, **gw.poll)
        job = await r.run()
        assert_delivered(r, job)
        assert len(gw.polls(r.fake)) == BASE_POLLS[gw.name] + 2
        assert len(gw.creates(r.fake)) == 1
        await assert_ledger(r, job, "commit")


# ---- expired result URLs ------------------------------------------------------------------

@ALL
async def test_expired_result_url_is_refreshed_by_one_poll(gw: Gateway, data_dir: Path) -> None:
    async with rig(gw, data_dir) as r:
        r.fake.fail_next(EXPIRED[gw.name], "<Error><Code>AccessDenied</Code></Error>",
                         path_prefix="/files/")
        job = await r.run()
        assert_delivered(r, job)
        assert len(gw.polls(r.fake)) == BASE_POLLS[gw.name] + 1
        await assert_ledger(r, job, "commit")


@ALL
async def test_result_url_still_expired_after_refresh_fails_and_commits(
    gw: Gateway, data_dir: Path
) -> None:
    async with rig(gw, data_dir) as r:
        r.fake.fail_next(EXPIRED[gw.name], "<Error><Code>AccessDenied</Code></Error>",
                         path_prefix="/files/", times=2)
        job = await r.run()
        message = assert_failed(job, "expired")
        assert "was made" in message and job.error_kind == "expired"
        assert len(gw.polls(r.fake)) == BASE_POLLS[gw.name] + 1  # one refresh, no loop
        await assert_ledger(r, job, "commit")  # the gateway made (and billed) the video
        assert r.delivery.post_count[job.id] == 0


# ---- moderation ---------------------------------------------------------------------------

@runtime_checkable
class RefusesOutput(Protocol):
    """Each gateway's fake fails tasks the way its gateway documents moderation."""

    def refuse_output(self, code: str | None = None, message: str | None = None) -> None: ...


def moderate(fake: FakeGateway, code: str | None = None, message: str | None = None) -> None:
    """Make the fake refuse every result the way its gateway documents moderation."""
    assert isinstance(fake, RefusesOutput), f"{type(fake).__name__} cannot refuse output"
    fake.refuse_output(code, message)


@ALL
async def test_moderation_failure_ends_with_a_moderation_message(gw: Gateway,
                                                                 data_dir: Path) -> None:
    async with rig(gw, data_dir) as r:
        moderate(r.fake)
        job = await r.run()
        assert_failed(job, "moderation", "safety", "sensitive")
        assert len(gw.creates(r.fake)) == 1  # a refused result is not retried
        await assert_ledger(r, job, "release")  # failed tasks are not billed (errors.py)


@WITH_AUDIO
async def test_audio_moderation_retries_once_without_audio(gw: Gateway, data_dir: Path) -> None:
    async with rig(gw, data_dir) as r:
        r.fake.flag_audio = True
        job = await r.run(audio=True)
        assert_delivered(r, job)
        creates = gw.creates(r.fake)
        assert len(creates) == 2 and gw.tasks(r.fake) == 2
        first, second = (json.dumps(c.body) for c in creates)
        assert "true" in first and "false" in second and job.audio_retried
        retrying = r.delivery.of(job.id, "retrying")
        assert len(retrying) == 1 and "without audio" in (retrying[0].reason or "")
        await assert_ledger(r, job, "commit")


def flag_audio_always(fake: FakeGateway) -> None:
    """Every task fails on audio moderation, with sound or without."""
    moderate(fake, "OutputAudioSensitiveContentDetected",
             "the output audio may contain sensitive information")


@WITH_AUDIO
async def test_audio_moderation_is_retried_only_once(gw: Gateway, data_dir: Path) -> None:
    async with rig(gw, data_dir) as r:
        flag_audio_always(r.fake)
        job = await r.run(audio=True)
        assert_failed(job, "audio")
        assert len(gw.creates(r.fake)) == 2 and job.audio_retried
        await assert_ledger(r, job, "release")


# ---- disk full ----------------------------------------------------------------------------

@ALL
@pytest.mark.parametrize("lasting", [False, True], ids=["brief", "lasting"])
async def test_disk_full_while_downloading(gw: Gateway, data_dir: Path, lasting: bool) -> None:
    """A real ENOSPC from the OS: the partial file is a link to /dev/full, so the kernel itself
    refuses the bytes. The download removes its partial file, so a second attempt writes to a
    real file (the disk had room again); with one attempt allowed the job fails."""
    limits = EngineLimits(retry_base=0.5, retry_cap=4.0, download_attempts=1 if lasting else 2)
    async with rig(gw, data_dir, limits=limits) as r:
        job = await r.enqueue()
        folder = data_dir / "jobs" / job.id
        folder.mkdir(parents=True)
        (folder / "video.mp4.part").symlink_to("/dev/full")
        await r.engine.start()
        async with asyncio.timeout(60):
            job = await r.engine.wait(job.id)
        assert not (folder / "video.mp4.part").is_symlink()
        assert Path("/dev/full").is_char_device()
        if lasting:
            message = assert_failed(job, "disk is full")
            assert "could not be downloaded" in message
            assert not list(folder.glob("video*"))  # nothing partial left in place
            await assert_ledger(r, job, "commit")  # the gateway made (and billed) it
        else:
            assert_delivered(r, job)
            await assert_ledger(r, job, "commit")


_FSIZE_CHILD = """
import asyncio, json, resource, signal, sys
from pathlib import Path
import httpx
from bot.errors import SeedanceError
from bot.media.fetch import NetworkPolicy, download

signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # writes past the limit fail with EFBIG
resource.setrlimit(resource.RLIMIT_FSIZE, (int(sys.argv[3]), int(sys.argv[3])))

async def main():
    async with httpx.AsyncClient() as client:
        try:
            n = await download(client, sys.argv[1], Path(sys.argv[2]), max_bytes=10**8,
                               policy=NetworkPolicy.parse("127.0.0.1"))
        except SeedanceError as exc:
            return {"error": type(exc).__name__, "message": str(exc)}
        return {"written": n}

print(json.dumps(asyncio.run(main())))
"""


async def test_file_size_limit_while_downloading_leaves_nothing(tmp_path: Path) -> None:
    """A real EFBIG: the download runs in a child whose RLIMIT_FSIZE is below the video size."""
    video = sample_video()
    async with FakeGateway() as host:
        url = host.add_file("result.mp4", video)
        dest = tmp_path / "jobs" / "j1" / "video.mp4"
        env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1", "PYTHONPATH": str(REPO)}
        child = await asyncio.create_subprocess_exec(
            sys.executable, "-c", _FSIZE_CHILD, url, str(dest), str(len(video) // 3),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env,
        )
        out, err = await child.communicate()
    assert child.returncode == 0, err.decode()
    answer = json.loads(out)
    assert answer.get("error") == "DownloadError", answer
    message = answer["message"]
    assert "could not save" in message and "file size limit" in message, message
    assert "secret-signature" not in message
    assert not dest.exists() and not dest.with_suffix(".mp4.part").exists()


# ---- Discord answers 429 and 5xx to the upload ----------------------------------------------

UPLOAD = "/channels/{channel_id}/messages"


def video_posts(fake: FakeDiscord) -> list[Message]:
    return [m for m in fake.messages(fake.channel.id)
            if not m.ephemeral and any(a.filename.endswith(".mp4") for a in m.attachments)]


def upload_statuses(fake: FakeDiscord) -> list[int]:
    return [r.status for r in fake.received("POST", UPLOAD) if r.uploads]


async def run_one_video(tmp_path: Path, fake: FakeDiscord) -> list[Message]:
    data = tmp_path / "data"
    data.mkdir()
    bot = BotProcess(fake, data)
    await bot.start()
    try:
        await fake.wait_until_ready(timeout=60)
        await fake.wait_for(lambda: fake.commands(guild_id=fake.guild.id), timeout=60,
                            what="command sync")
        await fake.slash("video", {"prompt": "a kite over the sea", "duration": 4,
                                   "resolution": "480p"})
        await fake.wait_for(lambda: video_posts(fake) or None, timeout=90, what="the video")
        await asyncio.sleep(0.5)  # room for a duplicate post to show up, were there one
        return video_posts(fake)
    except BaseException:
        print(bot.log())
        raise
    finally:
        await bot.stop()


@pytest.mark.e2e
async def test_discord_429_on_upload_posts_the_video_once(tmp_path: Path) -> None:
    async with FakeDiscord() as fake:
        fake.rate_limit_next(1, retry_after=0.5, method="POST", route=UPLOAD)
        posts = await run_one_video(tmp_path, fake)
        assert len(posts) == 1
        assert upload_statuses(fake) == [429, 200]


@pytest.mark.e2e
async def test_discord_5xx_on_upload_posts_the_video_once(tmp_path: Path) -> None:
    async with FakeDiscord() as fake:
        fake.fail_next(500, times=3, method="POST", route=UPLOAD)
        posts = await run_one_video(tmp_path, fake)
        assert len(posts) == 1
        assert upload_statuses(fake) == [500, 500, 500, 200]
