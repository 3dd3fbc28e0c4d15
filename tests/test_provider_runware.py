"""The Runware client against a fake Runware over real HTTP on loopback."""

from __future__ import annotations

import base64
import io
import json
import uuid
from pathlib import Path
from typing import Any

import av
import httpx
import pytest
from aiohttp import web

from bot.errors import (
    AudioModerationError,
    AuthenticationError,
    ContentRejectedError,
    GatewayError,
    GatewayUnavailableError,
    InsufficientBalanceError,
    InvalidRequestError,
    RealFaceError,
    TaskFailedError,
    TaskNotFoundError,
)
from bot.models import GenerationRequest, MediaKind, Mode, Ratio, Resolution, Role, TaskStatus
from bot.providers.runware import MODEL, RunwareProvider, task_uuid
from tests.fakes.runware import FakeRunware
from tests.media_factory import make_image
from tests.provider_helpers import (
    SleepLog,
    cli_generate,
    fake_fixture,
    gateway_case,
    image_file_ref,
    provider_fixture,
    run_to_end,
    url_ref,
)

KEY = FakeRunware.api_key
JOB = "3f1c2d4e-5a6b-4c7d-8e9f-0a1b2c3d4e5f"  # a UUID4 idempotency key


GATEWAY = gateway_case("runware")
fake = fake_fixture(GATEWAY)
provider = provider_fixture(GATEWAY)


# ---- capabilities, taskUUID (missing key, registry, cancel: test_provider_gateways.py) -----

def test_capabilities(provider: RunwareProvider) -> None:
    caps = provider.capabilities()
    assert caps.model == MODEL == provider.default_model
    assert caps.prompt_required and caps.prompt_max_chars == 10_000
    assert caps.results_per_task == 4 and caps.webhooks
    assert Resolution.P1080 not in caps.resolutions
    assert not (caps.web_search or caps.last_frame or caps.seed or caps.watermark)
    with pytest.raises(ValueError, match="no model"):
        provider.capabilities("bytedance:seedance@2.0")


def test_task_uuid_is_the_key_or_a_stable_v4() -> None:
    assert task_uuid(JOB) == JOB
    derived = task_uuid("job-42")
    assert derived == task_uuid("job-42") != task_uuid("job-43")
    assert uuid.UUID(derived).version == 4
    v1 = str(uuid.uuid1())
    assert task_uuid(v1) != v1 and uuid.UUID(task_uuid(v1)).version == 4


# ---- bodies, one per input mode -----------------------------------------------------------

async def test_text_mode_body(fake: FakeRunware, provider: RunwareProvider) -> None:
    req = GenerationRequest(prompt="A cat playing piano", duration=8, ratio=Ratio.R9_16,
                            resolution=Resolution.P480)
    submitted = await provider.submit(req, idempotency_key=JOB,
                                      callback_url="https://hooks.example.com/j/abc")
    [sent] = fake.received("POST", "/v1")
    assert sent.headers["Authorization"] == f"Bearer {KEY}"
    assert sent.body == [{
        "taskType": "videoInference", "taskUUID": JOB, "model": MODEL,
        "deliveryMethod": "async", "positivePrompt": "A cat playing piano", "duration": 8,
        "width": 496, "height": 864, "settings": {"audio": True}, "numberResults": 1,
        "includeCost": True, "outputFormat": "MP4",
        "safety": {"checkContent": True, "mode": "fast"},
        "webhookURL": "https://hooks.example.com/j/abc",
    }]
    assert submitted.task_id == JOB and submitted.state is not None
    assert submitted.state.status is TaskStatus.PENDING


async def test_text_adaptive_is_16_9(fake: FakeRunware, provider: RunwareProvider) -> None:
    await provider.submit(GenerationRequest(prompt="wide", audio=False), idempotency_key="j")
    [task] = fake.received("POST")[0].body
    assert (task["width"], task["height"]) == (1280, 720) and "resolution" not in task
    assert task["settings"] == {"audio": False} and "webhookURL" not in task


async def test_first_frame_adaptive_sends_resolution_and_base64(
    fake: FakeRunware, provider: RunwareProvider, tmp_path: Path
) -> None:
    path = make_image(tmp_path / "f.png", 480, 640)
    req = GenerationRequest(prompt="wakes up", mode=Mode.FIRST_FRAME,
                            references=[image_file_ref(path, Role.FIRST_FRAME)])
    await provider.submit(req, idempotency_key=JOB)
    [task] = fake.received("POST")[0].body
    assert task["resolution"] == "720p" and "width" not in task
    [frame] = task["inputs"]["frameImages"]
    assert frame["frame"] == "first"
    prefix = "data:image/png;base64,"
    assert base64.b64decode(frame["image"][len(prefix):]) == path.read_bytes()


async def test_first_last_frame_fixed_ratio_sends_size(fake: FakeRunware,
                                                       provider: RunwareProvider) -> None:
    req = GenerationRequest(prompt="from a to b", mode=Mode.FIRST_LAST_FRAME, ratio=Ratio.R4_3,
                            references=[
                                url_ref(MediaKind.IMAGE, "https://e.com/a.jpg", Role.FIRST_FRAME),
                                url_ref(MediaKind.IMAGE, "https://e.com/b.jpg", Role.LAST_FRAME),
                            ])
    await provider.submit(req, idempotency_key=JOB)
    [task] = fake.received("POST")[0].body
    assert task["inputs"] == {"frameImages": [{"image": "https://e.com/a.jpg", "frame": "first"},
                                              {"image": "https://e.com/b.jpg", "frame": "last"}]}
    assert (task["width"], task["height"]) == (1112, 834) and "resolution" not in task


async def test_reference_edit_extend_inputs(fake: FakeRunware,
                                            provider: RunwareProvider) -> None:
    img = url_ref(MediaKind.IMAGE, "https://e.com/c.png", Role.REFERENCE_IMAGE)
    vid = url_ref(MediaKind.VIDEO, "https://e.com/v.mp4", Role.REFERENCE_VIDEO)
    aud = url_ref(MediaKind.AUDIO, "https://e.com/a.mp3", Role.REFERENCE_AUDIO)
    cases = [
        (Mode.REFERENCE, [img, vid, aud], {"referenceImages": ["https://e.com/c.png"],
                                           "referenceVideos": ["https://e.com/v.mp4"],
                                           "referenceAudios": ["https://e.com/a.mp3"]}),
        (Mode.EDIT, [img, vid], {"referenceImages": ["https://e.com/c.png"],
                                 "referenceVideos": ["https://e.com/v.mp4"]}),
        (Mode.EXTEND, [vid], {"referenceVideos": ["https://e.com/v.mp4"]}),
    ]
    for i, (mode, refs, inputs) in enumerate(cases):
        req = GenerationRequest(prompt="@image1 in @video1", mode=mode, references=refs,
                                ratio=Ratio.R1_1)
        await provider.submit(req, idempotency_key=f"job-{i}")
        [task] = fake.received("POST")[-1].body
        assert task["inputs"] == inputs
        assert (task["width"], task["height"]) == (960, 960) and "resolution" not in task
    assert len(fake.tasks) == 3


async def test_safety_mode_ttl_and_results_options(fake: FakeRunware,
                                                   sleeps: SleepLog) -> None:
    settings_free = RunwareProvider(KEY, fake.base_url, sleep=sleeps, safety_mode="full",
                                    number_results=2, ttl=3600)
    await settings_free.submit(GenerationRequest(prompt="two takes"), idempotency_key="a")
    await settings_free.submit(GenerationRequest(prompt="three", results=3), idempotency_key="b")
    await settings_free.aclose()
    first, second = (r.body[0] for r in fake.received("POST"))
    assert first["safety"] == {"checkContent": True, "mode": "full"} and first["ttl"] == 3600
    assert first["numberResults"] == 2 and second["numberResults"] == 3


async def test_fake_refuses_a_short_prompt(fake: FakeRunware, provider: RunwareProvider) -> None:
    """Invalid request: the gateway's own reason and parameter reach the user."""
    with pytest.raises(InvalidRequestError, match="positivePrompt") as info:
        await provider.submit(GenerationRequest(prompt="x"), idempotency_key=JOB)
    assert info.value.status == 400 and info.value.code == "invalidPositivePrompt"
    assert not fake.tasks


# ---- poll variants -------------------------------------------------------------------------

async def test_processing_then_success(fake: FakeRunware, provider: RunwareProvider) -> None:
    fake.polls_to_finish = 3
    submitted = await provider.submit(GenerationRequest(prompt="a cat"), idempotency_key=JOB)
    states = await run_to_end(provider, submitted.task_id)
    assert [s.status for s in states] == [TaskStatus.RUNNING] * 3 + [TaskStatus.SUCCEEDED]
    assert [s.progress for s in states] == [0.0, 33.0, 66.0, 100.0]
    polls = fake.received("POST")[1:]
    assert all(p.body == [{"taskType": "getResponse", "taskUUID": JOB}] for p in polls)
    result = states[-1].result
    assert result is not None and result.cost == pytest.approx(0.18) and result.seed == 1000
    async with httpx.AsyncClient() as http:
        got = await http.get(result.video_urls[0])
    with av.open(io.BytesIO(got.content)) as container:
        assert container.streams.video[0].codec_context.name == "h264"


async def test_no_progress_and_empty_answers_while_processing(
    fake: FakeRunware, provider: RunwareProvider
) -> None:
    fake.empty_while_processing = True
    submitted = await provider.submit(GenerationRequest(prompt="a cat"), idempotency_key=JOB)
    states = await run_to_end(provider, submitted.task_id)
    assert [s.status for s in states] == [TaskStatus.PENDING, TaskStatus.PENDING,
                                          TaskStatus.SUCCEEDED]
    fake.progress, fake.empty_while_processing = False, False
    other = await provider.submit(GenerationRequest(prompt="a dog"), idempotency_key="other")
    states = await run_to_end(provider, other.task_id)
    assert states[0].status is TaskStatus.RUNNING and states[0].progress is None


async def test_several_results(fake: FakeRunware, provider: RunwareProvider) -> None:
    req = GenerationRequest(prompt="four takes", results=4)
    submitted = await provider.submit(req, idempotency_key=JOB)
    final = (await run_to_end(provider, submitted.task_id))[-1]
    assert final.status is TaskStatus.SUCCEEDED and final.result is not None
    assert len(set(final.result.video_urls)) == 4
    assert final.result.cost == pytest.approx(4 * 0.18)


async def test_data_and_errors_together(fake: FakeRunware, provider: RunwareProvider) -> None:
    fake.outcome = "mixed"
    submitted = await provider.submit(GenerationRequest(prompt="two", results=2),
                                      idempotency_key=JOB)
    final = (await run_to_end(provider, submitted.task_id))[-1]
    assert final.status is TaskStatus.SUCCEEDED and final.result is not None
    assert len(final.result.video_urls) == 1  # one of two made it


@pytest.mark.parametrize(
    ("outcome", "code", "message", "kind"),
    [
        ("errors", "timeoutProvider", "The provider timed out.", TaskFailedError),
        ("error_item", "providerContentModeration", "Output blocked by the safety checker.",
         ContentRejectedError),
        ("errors", "OutputAudioSensitiveContentDetected", "audio flagged",
         AudioModerationError),
        ("error_item", "InputImageSensitiveContentDetected.PrivacyInformation",
         "may contain real person", RealFaceError),
    ],
)
async def test_failures_are_classified(fake: FakeRunware, provider: RunwareProvider,
                                       outcome: str, code: str, message: str,
                                       kind: type) -> None:
    fake.outcome, fake.error_code, fake.error_message = outcome, code, message
    submitted = await provider.submit(GenerationRequest(prompt="a cat"), idempotency_key=JOB)
    final = (await run_to_end(provider, submitted.task_id))[-1]
    assert final.status is TaskStatus.FAILED
    assert type(final.error) is kind and isinstance(final.error, GatewayError)
    assert final.error.code == code and message in final.error.reason


# ---- error kinds ---------------------------------------------------------------------------

def _errors(code: str, message: str) -> dict[str, Any]:
    return {"errors": [{"code": code, "message": message, "taskUUID": JOB}]}


async def test_auth_error(fake: FakeRunware, sleeps: SleepLog) -> None:
    provider = GATEWAY.client(fake, sleeps, key="wrong-key-abcdef")
    with pytest.raises(AuthenticationError) as info:
        await provider.submit(GenerationRequest(prompt="a cat"), idempotency_key=JOB)
    await provider.aclose()
    assert info.value.code == "invalidApiKey" and len(fake.requests) == 1
    echo = GATEWAY.client(fake, sleeps, key="echoed-key-98765")
    fake.fail_next(403, _errors("invalidApiKey", "key echoed-key-98765 is revoked"))
    with pytest.raises(AuthenticationError) as echoed:
        await echo.submit(GenerationRequest(prompt="a cat"), idempotency_key=JOB)
    await echo.aclose()
    assert "echoed-key-98765" not in str(echoed.value) and "revoked" in str(echoed.value)


async def test_balance_402(fake: FakeRunware, provider: RunwareProvider) -> None:
    fake.fail_next(402, _errors("insufficientCredits", "Not enough credits."))
    with pytest.raises(InsufficientBalanceError, match="Not enough credits"):
        await provider.submit(GenerationRequest(prompt="a cat"), idempotency_key=JOB)


async def test_moderation_on_create(fake: FakeRunware, provider: RunwareProvider) -> None:
    fake.fail_next(400, _errors("contentModerationFailed", "The prompt violates the policy."))
    with pytest.raises(ContentRejectedError) as info:
        await provider.submit(GenerationRequest(prompt="a cat"), idempotency_key=JOB)
    assert info.value.status == 400


# A create refused with 503, 504 or 500, or whose answer was lost, is resent by the engine with
# the same taskUUID: tests/chaos/test_faults.py (test_runware_*).

async def test_unavailable_after_all_attempts(fake: FakeRunware,
                                              provider: RunwareProvider) -> None:
    for _ in range(5):
        fake.fail_next(504, _errors("timeout", "Gateway timeout."))
    with pytest.raises(GatewayUnavailableError, match="Gateway timeout"):
        await provider.poll(JOB)
    assert len(fake.received("POST")) == 5


async def test_task_not_found(provider: RunwareProvider) -> None:
    with pytest.raises(TaskNotFoundError, match="No task"):
        await provider.poll(JOB)


async def test_malformed_answer_is_a_transient_fault(fake: FakeRunware,
                                                     provider: RunwareProvider) -> None:
    fake.fail_next(200, "[{oops")
    with pytest.raises(GatewayUnavailableError, match="malformed JSON"):
        await provider.poll(JOB)


# ---- webhooks ------------------------------------------------------------------------------

async def test_webhooks_each_result_twice(fake: FakeRunware, provider: RunwareProvider) -> None:
    received: list[bytes] = []

    async def hook(request: web.Request) -> web.Response:
        received.append(await request.read())
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/hook/{job}", hook)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        submitted = await provider.submit(GenerationRequest(prompt="two", results=2),
                                          idempotency_key=JOB,
                                          callback_url=f"http://127.0.0.1:{port}/hook/j1")
        assert fake.tasks[JOB].body["webhookURL"].endswith("/hook/j1")
        assert await fake.deliver_webhooks(submitted.task_id) == [200] * 4
    finally:
        await runner.cleanup()
    assert len(received) == 4 and "data" not in json.loads(received[0])
    assert all(provider.verify_callback({}, body) for body in received)
    states = [provider.parse_callback({}, body) for body in received]
    assert [s.status for s in states] == [TaskStatus.RUNNING, TaskStatus.RUNNING,
                                          TaskStatus.SUCCEEDED, TaskStatus.SUCCEEDED]
    assert states[0].progress == 50.0
    final = states[-1].result
    assert final is not None and len(final.video_urls) == 2 and final.seed == 1000


def test_single_callback_after_restart_and_error_callback(sleeps: SleepLog) -> None:
    fresh = RunwareProvider(KEY, "http://127.0.0.1:9", sleep=sleeps)  # knows no tasks
    ok = json.dumps({"taskType": "videoInference", "taskUUID": JOB, "status": "success",
                     "videoUUID": "v1", "videoURL": "https://x/v1.mp4", "cost": 0.2}).encode()
    state = fresh.parse_callback({}, ok)
    assert state.task_id == JOB and state.status is TaskStatus.SUCCEEDED
    bad = json.dumps({"code": "timeoutProvider", "message": "timed out", "status": "error",
                      "taskUUID": "other-task"}).encode()
    failed = fresh.parse_callback({}, bad)
    assert failed.task_id == "other-task" and isinstance(failed.error, TaskFailedError)
    with pytest.raises(InvalidRequestError):
        fresh.parse_callback({}, b"not json")


# ---- the command line against the fake ---------------------------------------------------

async def test_cli_generate_writes_a_real_mp4(fake: FakeRunware, tmp_path: Path) -> None:
    fake.polls_to_finish = 0
    out = await cli_generate("runware", fake, tmp_path, "a lighthouse at dusk")
    with av.open(str(out)) as container:
        assert container.streams.video[0].frames > 0
    [task] = fake.received("POST")[0].body
    assert task["positivePrompt"] == "a lighthouse at dusk" and len(fake.tasks) == 1


async def test_another_process_following_a_set_waits_for_all_of_it(
    fake: FakeRunware, provider: RunwareProvider, sleeps: Any,
) -> None:
    """The process that follows a task after a restart or a takeover is told the count by
    the engine (from the job's row), so a partial set is never taken for the whole."""
    fake.staggered = True  # one more finished result per poll
    req = GenerationRequest(prompt="four takes", results=4)
    submitted = await provider.submit(req, idempotency_key=JOB)
    other = GATEWAY.client(fake, sleeps)
    try:
        other.expect_results(submitted.task_id, req)
        final = (await run_to_end(other, submitted.task_id))[-1]
    finally:
        await other.aclose()
    assert final.status is TaskStatus.SUCCEEDED and final.result is not None
    assert len(set(final.result.video_urls)) == 4


# ---- output options and the safety verdict (bot/engine/sets.py, bot/engine/sizing.py) ---------

@pytest.mark.parametrize(("safety", "mode"), [(None, "fast"), ("none", "none"),
                                              ("key_frames", "fast"), ("all_frames", "full")])
async def test_the_safety_setting_maps_to_runwares_modes(
        fake: FakeRunware, provider: RunwareProvider, safety: str | None, mode: str) -> None:
    from bot.models import SafetyCheck

    req = GenerationRequest(prompt="a cat", safety=SafetyCheck(safety) if safety else None,
                            output_quality=61)
    await provider.submit(req, idempotency_key=JOB)
    [task] = fake.received("POST")[0].body
    assert task["safety"] == {"checkContent": mode != "none", "mode": mode}
    assert task["outputQuality"] == 61 and task["outputFormat"] == "MP4"


async def test_the_nsfw_verdict_is_read_per_result(fake: FakeRunware,
                                                   provider: RunwareProvider) -> None:
    fake.nsfw = {0, 2}
    submitted = await provider.submit(GenerationRequest(prompt="three", results=3),
                                      idempotency_key=JOB)
    final = (await run_to_end(provider, submitted.task_id))[-1]
    assert final.result is not None and final.result.flagged == [0, 2]
    # The webhook's flat objects carry it too (as text on some answers).
    other = RunwareProvider(KEY, fake.base_url)
    body = {"taskType": "videoInference", "taskUUID": JOB, "status": "success",
            "videoUUID": "v1", "videoURL": "https://cdn.example.com/v1.mp4",
            "NSFWContent": "true"}
    state = other.parse_callback({}, json.dumps(body).encode())
    assert state.result is not None and state.result.flagged == [0]
    await other.aclose()
