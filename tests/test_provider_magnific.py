"""The Magnific client against a faithful fake over real HTTP on loopback."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import httpx
import pytest

from bot.errors import (
    AuthenticationError,
    ContentRejectedError,
    GatewayUnavailableError,
    InsufficientBalanceError,
    InvalidInput,
    InvalidRequestError,
    TaskFailedError,
    TaskNotFoundError,
)
from bot.models import (
    GenerationRequest,
    MediaFacts,
    MediaKind,
    Mode,
    Ratio,
    Reference,
    Resolution,
    Role,
    TaskStatus,
)
from bot.providers.magnific import MagnificProvider
from bot.validation import validate
from tests.fakes.magnific import FakeMagnific
from tests.media_factory import make_image, make_video
from tests.provider_helpers import (
    SleepLog,
    cli_generate,
    fake_fixture,
    gateway_case,
    image_file_ref,
    provider_fixture,
    url_ref,
)

CREATE_720 = "/v1/ai/video/seedance-2-mini-720p"
TASKS = "/v1/ai/video/seedance-2-mini/"

GATEWAY = gateway_case("magnific")
fake = fake_fixture(GATEWAY)
provider = provider_fixture(GATEWAY)


def text_request(**kw: Any) -> GenerationRequest:
    base: dict[str, Any] = {
        "prompt": "a red fox runs through snow", "mode": Mode.TEXT, "ratio": Ratio.R16_9,
        "audio": False, "provider": "magnific",
    }
    base.update(kw)
    return GenerationRequest(**base)


def local_image(path: Path, role: Role, color: tuple[int, int, int]) -> Reference:
    return image_file_ref(make_image(path, 640, 480, color=color), role)


def only_create(fake: FakeMagnific) -> dict[str, Any]:
    creates = fake.received("POST", "/v1/ai/video/seedance-2-mini-")
    assert len(creates) == 1
    body: dict[str, Any] = creates[0].body
    return body


# ---- bodies, one per input mode ----------------------------------------------------------

async def test_text_to_video_body_is_exactly_the_pages_fields(
    fake: FakeMagnific, provider: MagnificProvider
) -> None:
    submitted = await provider.submit(text_request(), idempotency_key="job-1")
    rec = fake.received("POST")[0]
    assert rec.path == CREATE_720
    assert rec.headers["x-magnific-api-key"] == fake.api_key
    assert rec.body == {
        "prompt": "a red fox runs through snow", "duration": 5,
        "aspect_ratio": "widescreen_16_9", "camera_fixed": False, "seed": -1,
        "enable_safety_checker": True,
    }
    assert submitted.task_id in fake.tasks
    assert submitted.state is not None and submitted.state.status is TaskStatus.PENDING


@pytest.mark.parametrize(("ratio", "name"), [
    (Ratio.R21_9, "film_horizontal_21_9"), (Ratio.R16_9, "widescreen_16_9"),
    (Ratio.R4_3, "classic_4_3"), (Ratio.R1_1, "square_1_1"),
    (Ratio.R3_4, "traditional_3_4"), (Ratio.R9_16, "social_story_9_16"),
])
async def test_resolution_is_the_path_and_options_map_to_page_names(
    fake: FakeMagnific, provider: MagnificProvider, ratio: Ratio, name: str
) -> None:
    request = text_request(resolution=Resolution.P480, ratio=ratio, duration=10, seed=42,
                           camera_fixed=True)
    await provider.submit(request, idempotency_key="job-1")
    rec = fake.received("POST")[0]
    assert rec.path == "/v1/ai/video/seedance-2-mini-480p"
    assert rec.body["aspect_ratio"] == name
    assert rec.body["duration"] == 10
    assert rec.body["seed"] == 42
    assert rec.body["camera_fixed"] is True


async def test_first_frame_url_is_sent_as_image(
    fake: FakeMagnific, provider: MagnificProvider
) -> None:
    ref = url_ref(MediaKind.IMAGE, "https://img.example.com/cat.png", Role.FIRST_FRAME)
    await provider.submit(text_request(mode=Mode.FIRST_FRAME, references=[ref]),
                          idempotency_key="job-1")
    body = only_create(fake)
    assert body["image"] == "https://img.example.com/cat.png"
    assert "image_end" not in body


async def test_first_last_frame_local_files_go_as_raw_base64(
    fake: FakeMagnific, provider: MagnificProvider, tmp_path: Path
) -> None:
    first = local_image(tmp_path / "first.png", Role.FIRST_FRAME, (200, 40, 40))
    last = local_image(tmp_path / "last.png", Role.LAST_FRAME, (40, 40, 200))
    await provider.submit(text_request(mode=Mode.FIRST_LAST_FRAME, references=[first, last]),
                          idempotency_key="job-1")
    body = only_create(fake)
    assert not body["image"].startswith("data:")
    assert base64.b64decode(body["image"]) == Path(first.source).read_bytes()
    assert base64.b64decode(body["image_end"]) == Path(last.source).read_bytes()


async def test_webhook_url_only_when_a_callback_is_given(
    fake: FakeMagnific, provider: MagnificProvider
) -> None:
    await provider.submit(text_request(), idempotency_key="a",
                          callback_url="https://bot.example.com/callbacks/magnific/a/tok")
    await provider.submit(text_request(), idempotency_key="b")
    first, second = fake.received("POST")
    assert first.body["webhook_url"] == "https://bot.example.com/callbacks/magnific/a/tok"
    assert "webhook_url" not in second.body


@pytest.mark.parametrize("change", [
    {"mode": Mode.REFERENCE},
    {"ratio": Ratio.ADAPTIVE},
    {"duration": 7},
    {"resolution": Resolution.P1080},
    {"prompt": "   "},
    {"prompt": "x" * 2001},
    {"seed": 4_294_967_296},
])
async def test_what_magnific_cannot_take_is_refused_before_sending(
    fake: FakeMagnific, provider: MagnificProvider, change: dict[str, Any]
) -> None:
    with pytest.raises(InvalidInput):
        await provider.submit(text_request(**change), idempotency_key="job-1")
    assert fake.requests == []


def test_capability_table_makes_validation_refuse_video_audio_and_adaptive(
    tmp_path: Path,
) -> None:
    caps = MagnificProvider("k", "http://127.0.0.1:9").capabilities()
    video = make_video(tmp_path / "v.mp4", 832, 480, 2.0)
    facts = MediaFacts(kind=MediaKind.VIDEO, format="mp4", size_bytes=video.stat().st_size,
                       width=832, height=480, duration=2.0, fps=24)
    ref = Reference(kind=MediaKind.VIDEO, source=str(video), name="v.mp4",
                    role=Role.REFERENCE_VIDEO, facts=facts, local_path=str(video))
    request = GenerationRequest(prompt="go", mode=Mode.REFERENCE, references=[ref],
                                ratio=Ratio.ADAPTIVE, audio=True)
    subjects = {p.subject for p in validate(request, caps)}
    assert {"mode", "ratio", "audio", "v.mp4", "files"} <= subjects
    assert validate(text_request(), caps) == []


# ---- responses ---------------------------------------------------------------------------

async def test_task_goes_created_in_progress_completed_with_a_real_mp4(
    fake: FakeMagnific, provider: MagnificProvider
) -> None:
    fake.polls_to_finish = 3
    submitted = await provider.submit(text_request(), idempotency_key="job-1")
    states = [await provider.poll(submitted.task_id) for _ in range(3)]
    assert [s.status for s in states] == [
        TaskStatus.RUNNING, TaskStatus.RUNNING, TaskStatus.SUCCEEDED
    ]
    done = states[-1]
    assert done.result is not None and len(done.result.video_urls) == 1
    assert done.result.expires_at is not None
    async with httpx.AsyncClient() as client:
        video = await client.get(done.result.video_urls[0])
    assert video.status_code == 200 and video.content[4:8] == b"ftyp"
    assert fake.received("GET", TASKS)[0].headers["x-magnific-api-key"] == fake.api_key


async def test_failed_task_carries_a_clear_generic_reason(
    fake: FakeMagnific, provider: MagnificProvider
) -> None:
    fake.fail_tasks, fake.polls_to_finish = True, 1
    submitted = await provider.submit(text_request(), idempotency_key="job-1")
    state = await provider.poll(submitted.task_id)
    assert state.status is TaskStatus.FAILED
    assert isinstance(state.error, TaskFailedError)
    assert "no reason" in state.error.reason


async def test_completed_without_urls_is_a_failure_not_a_crash(
    fake: FakeMagnific, provider: MagnificProvider
) -> None:
    fake.completed_without_urls, fake.polls_to_finish = True, 1
    submitted = await provider.submit(text_request(), idempotency_key="job-1")
    state = await provider.poll(submitted.task_id)
    assert state.status is TaskStatus.FAILED and isinstance(state.error, TaskFailedError)


async def test_malformed_poll_answer_is_a_transient_gateway_error(
    fake: FakeMagnific, provider: MagnificProvider
) -> None:
    fake.fail_next(200, "{not json", method="GET")
    with pytest.raises(GatewayUnavailableError):
        await provider.poll("whatever")


# ---- errors, one per kind ----------------------------------------------------------------

@pytest.mark.parametrize(("style", "expect"), [
    ("attribute", "did not say which parameter"),
    ("problem", "duration: must be 5 or 10"),
    ("flat", "duration: must be 5 or 10"),
])
async def test_invalid_request_in_each_400_shape(
    fake: FakeMagnific, provider: MagnificProvider, style: str, expect: str
) -> None:
    fake.error_style = style
    # A body the page forbids, sent raw: the fake must catch it and the client must read it.
    with pytest.raises(InvalidRequestError) as info:
        await provider.http.request("POST", CREATE_720, json={"prompt": "x", "duration": 7},
                                    idempotent=False)
    assert info.value.status == 400
    assert expect in info.value.reason


async def test_fake_refuses_image_end_without_image(
    fake: FakeMagnific, provider: MagnificProvider
) -> None:
    with pytest.raises(InvalidRequestError) as info:
        await provider.http.request(
            "POST", CREATE_720, json={"prompt": "x", "image_end": "https://a.example/b.png"},
            idempotent=False,
        )
    assert "image_end: requires image" in info.value.reason


async def test_bad_key_is_an_auth_error_without_the_key(
    fake: FakeMagnific, sleeps: SleepLog
) -> None:
    provider = GATEWAY.client(fake, sleeps, key="wrong-key-abcdef")
    try:
        with pytest.raises(AuthenticationError) as info:
            await provider.submit(text_request(), idempotency_key="job-1")
    finally:
        await provider.aclose()
    assert info.value.reason == "Invalid API key"
    assert len(fake.received("POST")) == 1 and sleeps.delays == []


async def test_out_of_balance(fake: FakeMagnific, provider: MagnificProvider) -> None:
    fake.fail_next(402, {"message": "Not enough credits"})
    with pytest.raises(InsufficientBalanceError):
        await provider.submit(text_request(), idempotency_key="job-1")


async def test_moderation_400_is_content_rejected(
    fake: FakeMagnific, provider: MagnificProvider
) -> None:
    fake.fail_next(400, {"message": "The prompt was blocked by the safety checker"})
    with pytest.raises(ContentRejectedError):
        await provider.submit(text_request(), idempotency_key="job-1")


async def test_unknown_task_is_not_found(provider: MagnificProvider) -> None:
    with pytest.raises(TaskNotFoundError):
        await provider.poll("00000000-0000-0000-0000-000000000000")


async def test_key_echoed_by_the_gateway_is_scrubbed(
    fake: FakeMagnific, provider: MagnificProvider
) -> None:
    fake.fail_next(400, {"message": f"bad request for {fake.api_key}"})
    with pytest.raises(InvalidRequestError) as info:
        await provider.submit(text_request(), idempotency_key="job-1")
    assert fake.api_key not in str(info.value)


# ---- retries (a create is sent once: test_provider_gateways.py; resent by the engine:
# tests/chaos/test_faults.py) --------------------------------------------------------------

async def test_poll_5xx_is_retried(
    fake: FakeMagnific, provider: MagnificProvider, sleeps: SleepLog
) -> None:
    submitted = await provider.submit(text_request(), idempotency_key="job-1")
    fake.fail_next(500, {"message": "Internal error"}, method="GET")
    state = await provider.poll(submitted.task_id)
    assert state.task_id == submitted.task_id
    assert len(fake.received("GET")) == 2 and len(sleeps.delays) == 1


# ---- callbacks and the rest --------------------------------------------------------------

def test_callback_bodies_bare_and_wrapped(provider: MagnificProvider) -> None:
    bare = b'{"task_id":"t-1","status":"COMPLETED","generated":["https://cdn.example/v.mp4"]}'
    state = provider.parse_callback({}, bare)
    assert state.task_id == "t-1" and state.status is TaskStatus.SUCCEEDED
    assert state.result is not None
    assert state.result.video_urls == ["https://cdn.example/v.mp4"]
    wrapped = b'{"data":{"task_id":"t-2","status":"IN_PROGRESS","generated":[]}}'
    assert provider.parse_callback({}, wrapped).status is TaskStatus.RUNNING
    assert provider.verify_callback({}, bare) is True
    with pytest.raises(ValueError):
        provider.parse_callback({}, b'{"unexpected": true}')


async def test_cli_generate_writes_a_real_mp4(fake: FakeMagnific, tmp_path: Path) -> None:
    fake.polls_to_finish = 1
    out = await cli_generate("magnific", fake, tmp_path, "a red fox runs through snow",
                             "--ratio", "16:9", out_name="fox.mp4")
    assert out.read_bytes()[4:8] == b"ftyp"
    assert fake.received("POST")[0].body["aspect_ratio"] == "widescreen_16_9"
