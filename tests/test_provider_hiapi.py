"""The HiAPI client against a faithful fake over real HTTP on loopback."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from bot.errors import (
    AudioModerationError,
    AuthenticationError,
    ContentRejectedError,
    GatewayError,
    GatewayUnavailableError,
    InsufficientBalanceError,
    InvalidInput,
    InvalidRequestError,
    RealFaceError,
    TaskFailedError,
    TaskNotFoundError,
)
from bot.models import (
    GenerationRequest,
    MediaKind,
    Mode,
    Ratio,
    Reference,
    Resolution,
    Role,
    TaskStatus,
)
from bot.providers.hiapi import HiApiProvider, build, sign
from tests.fakes.hiapi import FakeHiAPI
from tests.media_factory import make_image
from tests.provider_helpers import (
    SleepLog,
    cli_generate,
    fake_fixture,
    gateway_case,
    image_file_ref,
    provider_fixture,
    settings_for,
)

SECRET = "hiapi-callback-secret"

GATEWAY = gateway_case("hiapi")
fake = fake_fixture(GATEWAY)
provider = provider_fixture(GATEWAY, hiapi_callback_secret=SECRET)


def request(**kw: Any) -> GenerationRequest:
    base: dict[str, Any] = {"prompt": "neon street at night", "provider": "hiapi",
                            "ratio": Ratio.R16_9}
    base.update(kw)
    return GenerationRequest(**base)


def ref(kind: MediaKind, role: Role, name: str) -> Reference:
    return Reference(kind=kind, source=f"https://media.example.com/{name}", name=name, role=role)


def sent_input(fake: FakeHiAPI) -> dict[str, Any]:
    creates = fake.received("POST", "/v1/tasks")
    assert len(creates) == 1
    assert creates[0].body["model"] == "seedance-2.0-mini"
    body: dict[str, Any] = creates[0].body["input"]
    return body


async def finish(fake: FakeHiAPI, provider: HiApiProvider) -> Any:
    submitted = await provider.submit(request(), idempotency_key="job-1")
    state = await provider.poll(submitted.task_id)
    while not state.done:
        state = await provider.poll(submitted.task_id)
    return state


# ---- bodies, one per input mode ----------------------------------------------------------

async def test_text_body_is_exactly_the_pages_fields(
    fake: FakeHiAPI, provider: HiApiProvider
) -> None:
    submitted = await provider.submit(request(duration=12, resolution=Resolution.P480),
                                      idempotency_key="job-1")
    rec = fake.received("POST")[0]
    assert rec.headers["Authorization"] == f"Bearer {fake.api_key}"
    assert rec.body == {"model": "seedance-2.0-mini", "input": {
        "prompt": "neon street at night", "resolution": "480p", "duration": 12,
        "aspect_ratio": "16:9", "generate_audio": True,
    }}
    assert submitted.task_id in fake.tasks
    assert submitted.state is not None and submitted.state.status is TaskStatus.PENDING


async def test_first_frame_and_adaptive(fake: FakeHiAPI, provider: HiApiProvider) -> None:
    first = ref(MediaKind.IMAGE, Role.FIRST_FRAME, "first.png")
    await provider.submit(request(mode=Mode.FIRST_FRAME, references=[first],
                                  ratio=Ratio.ADAPTIVE, audio=False), idempotency_key="j")
    inp = sent_input(fake)
    assert inp["first_frame_url"] == first.source and "last_frame_url" not in inp
    assert inp["aspect_ratio"] == "adaptive" and inp["generate_audio"] is False


async def test_first_last_frame(fake: FakeHiAPI, provider: HiApiProvider) -> None:
    first = ref(MediaKind.IMAGE, Role.FIRST_FRAME, "first.png")
    last = ref(MediaKind.IMAGE, Role.LAST_FRAME, "last.png")
    await provider.submit(request(mode=Mode.FIRST_LAST_FRAME, references=[first, last]),
                          idempotency_key="j")
    inp = sent_input(fake)
    assert (inp["first_frame_url"], inp["last_frame_url"]) == (first.source, last.source)
    assert not any(k.startswith("reference_") for k in inp)


async def test_reference_images_with_audio_keep_their_order(
    fake: FakeHiAPI, provider: HiApiProvider
) -> None:
    refs = [ref(MediaKind.IMAGE, Role.REFERENCE_IMAGE, f"i{n}.png") for n in (1, 2, 3)]
    refs.append(ref(MediaKind.AUDIO, Role.REFERENCE_AUDIO, "a1.mp3"))
    await provider.submit(request(mode=Mode.REFERENCE, references=refs), idempotency_key="j")
    inp = sent_input(fake)
    assert inp["reference_image_urls"] == [r.source for r in refs[:3]]
    assert inp["reference_audio_urls"] == [refs[3].source]
    assert "reference_video_urls" not in inp and "first_frame_url" not in inp


async def test_extend_sends_reference_videos(fake: FakeHiAPI, provider: HiApiProvider) -> None:
    refs = [ref(MediaKind.VIDEO, Role.REFERENCE_VIDEO, f"v{n}.mp4") for n in (1, 2)]
    await provider.submit(request(mode=Mode.EXTEND, references=refs), idempotency_key="j")
    inp = sent_input(fake)
    assert inp["reference_video_urls"] == [r.source for r in refs]
    assert "reference_image_urls" not in inp


async def test_callback_only_when_a_url_is_given(
    fake: FakeHiAPI, provider: HiApiProvider
) -> None:
    await provider.submit(request(), idempotency_key="a",
                          callback_url="https://bot.example.com/callbacks/hiapi/a/tok")
    await provider.submit(request(), idempotency_key="b")
    first, second = fake.received("POST")
    assert first.body["callback"] == {
        "url": "https://bot.example.com/callbacks/hiapi/a/tok", "when": "final"
    }
    assert "callback" not in second.body


async def test_local_file_cannot_reach_hiapi_and_nothing_is_sent(
    fake: FakeHiAPI, provider: HiApiProvider, tmp_path: Path
) -> None:
    local = image_file_ref(make_image(tmp_path / "me.png", 640, 480), Role.FIRST_FRAME)
    with pytest.raises(InvalidInput) as info:
        await provider.submit(request(mode=Mode.FIRST_FRAME, references=[local]),
                              idempotency_key="j")
    assert "https URL" in str(info.value)
    assert fake.requests == []


async def test_images_with_videos_are_refused_as_the_page_says(
    fake: FakeHiAPI, provider: HiApiProvider
) -> None:
    refs = [ref(MediaKind.IMAGE, Role.REFERENCE_IMAGE, "i1.png"),
            ref(MediaKind.VIDEO, Role.REFERENCE_VIDEO, "v1.mp4")]
    for mode in (Mode.EDIT, Mode.REFERENCE):
        with pytest.raises(InvalidInput):
            await provider.submit(request(mode=mode, references=refs), idempotency_key="j")
    assert fake.requests == []
    # And the fake refuses it too, should a client ever send it.
    with pytest.raises(InvalidRequestError, match="mutually exclusive"):
        await provider.http.request("POST", "/v1/tasks", idempotent=False, json={
            "model": "seedance-2.0-mini", "input": {
                "prompt": "x", "resolution": "720p", "duration": 5,
                "reference_image_urls": [refs[0].source],
                "reference_video_urls": [refs[1].source],
            }})


# ---- responses ---------------------------------------------------------------------------

async def test_statuses_queued_handling_archiving_success(
    fake: FakeHiAPI, provider: HiApiProvider
) -> None:
    submitted = await provider.submit(request(), idempotency_key="job-1")
    states = [await provider.poll(submitted.task_id) for _ in range(3)]
    assert [s.status for s in states] == [
        TaskStatus.RUNNING, TaskStatus.RUNNING, TaskStatus.SUCCEEDED
    ]
    fake.path = ["queued", "queued", "success"]
    again = await provider.submit(request(), idempotency_key="job-2")
    assert (await provider.poll(again.task_id)).status is TaskStatus.PENDING
    done = states[-1]
    assert done.result is not None and len(done.result.video_urls) == 1
    async with httpx.AsyncClient() as client:
        video = await client.get(done.result.video_urls[0])
    assert video.status_code == 200 and video.content[4:8] == b"ftyp"


async def test_typed_outputs_pick_the_video_and_last_frame(
    fake: FakeHiAPI, provider: HiApiProvider
) -> None:
    fake.path = ["queued", "success"]
    fake.with_last_frame = fake.extra_outputs = True
    state = await finish(fake, provider)
    assert state.result.video_urls[0].endswith(".mp4?X-Amz-Signature=secret-signature")
    assert len(state.result.video_urls) == 1
    assert state.result.last_frame_url.endswith("-last.png")


@pytest.mark.parametrize("style", ["seconds", "millis", "iso"])
async def test_expire_at_in_each_format(
    fake: FakeHiAPI, provider: HiApiProvider, style: str
) -> None:
    fake.path, fake.expire_style, fake.file_ttl = ["queued", "success"], style, 7200.0
    state = await finish(fake, provider)
    expected = time.time() + 7200.0
    assert abs(state.result.expires_at - expected) < 5  # same instant, whatever the units


@pytest.mark.parametrize(("error", "kind"), [
    ({"code": "OutputAudioSensitiveContentDetected", "message": "audio flagged"},
     AudioModerationError),
    ({"code": "InputImageSensitiveContentDetected.PrivacyInformation",
      "message": "may contain real person"}, RealFaceError),
    ({"code": "OutputVideoSensitiveContentDetected", "message": "video flagged"},
     ContentRejectedError),
    ({"code": "InternalServiceError", "message": "upstream crashed"}, TaskFailedError),
])
async def test_fail_maps_error_code_to_kind(
    fake: FakeHiAPI, provider: HiApiProvider, error: dict[str, str], kind: type[GatewayError]
) -> None:
    fake.path, fake.fail_with = ["queued", "handling", "fail"], error
    state = await finish(fake, provider)
    assert state.status is TaskStatus.FAILED
    assert type(state.error) is kind and isinstance(state.error, GatewayError)
    assert state.error.reason == error["message"] and state.error.code == error["code"]


async def test_malformed_poll_answer_is_a_transient_gateway_error(
    fake: FakeHiAPI, provider: HiApiProvider
) -> None:
    fake.fail_next(200, "<html>bad gateway</html>", method="GET")
    with pytest.raises(GatewayUnavailableError):
        await provider.poll("tk-x")


# ---- errors, one per kind ----------------------------------------------------------------

async def test_invalid_request_reaches_the_user_with_its_reason(
    fake: FakeHiAPI, provider: HiApiProvider
) -> None:
    with pytest.raises(InvalidRequestError) as info:
        await provider.http.request("POST", "/v1/tasks", idempotent=False, json={
            "model": "seedance-2.0-mini",
            "input": {"prompt": "x", "resolution": "720p", "duration": 16},
        })
    assert info.value.status == 400 and info.value.code == "INVALID_REQUEST"
    assert "4 to 15" in info.value.reason


async def test_bad_key_is_an_auth_error(fake: FakeHiAPI, sleeps: SleepLog) -> None:
    provider = GATEWAY.client(fake, sleeps, key="wrong-key-abcdef")
    try:
        with pytest.raises(AuthenticationError) as info:
            await provider.submit(request(), idempotency_key="job-1")
    finally:
        await provider.aclose()
    assert "wrong-key-abcdef" not in str(info.value) and sleeps.delays == []


async def test_out_of_balance(fake: FakeHiAPI, provider: HiApiProvider) -> None:
    fake.fail_next(402, {"code": 402, "message": "insufficient balance", "data": None,
                         "error_code": "INSUFFICIENT_BALANCE"})
    with pytest.raises(InsufficientBalanceError):
        await provider.submit(request(), idempotency_key="job-1")


async def test_moderation_at_create_is_content_rejected(
    fake: FakeHiAPI, provider: HiApiProvider
) -> None:
    fake.fail_next(400, {"code": 400, "message": "prompt contains sensitive content",
                         "data": None, "error_code": "CONTENT_VIOLATION"})
    with pytest.raises(ContentRejectedError):
        await provider.submit(request(), idempotency_key="job-1")


async def test_task_of_nobody_is_not_found(provider: HiApiProvider) -> None:
    with pytest.raises(TaskNotFoundError) as info:
        await provider.poll("tk-hiapi-unknown")
    assert info.value.code == "NOT_FOUND"


# A create sent once whatever the answer, cancel, a missing key: test_provider_gateways.py;
# 429 and 503 on create resent by the engine: tests/chaos/test_faults.py

async def test_unavailable_after_bounded_retries(
    fake: FakeHiAPI, provider: HiApiProvider, sleeps: SleepLog
) -> None:
    for _ in range(6):
        fake.fail_next(503, {"code": 503, "message": "retry later", "data": None,
                             "error_code": "SERVICE_UNAVAILABLE"}, method="GET")
    with pytest.raises(GatewayUnavailableError) as info:
        await provider.poll("tk-any")
    assert info.value.reason == "retry later"
    assert len(fake.received("GET")) == 5 and len(sleeps.delays) == 4


# ---- callbacks ---------------------------------------------------------------------------

def _callback(task_id: str = "tk-1") -> bytes:
    return json.dumps({"taskId": task_id, "model": "seedance-2.0-mini", "status": "success",
                       "output": [{"url": "https://cdn.example/v.mp4", "type": "video",
                                   "expireAt": int(time.time()) + 3600}]}).encode()


def test_callback_body_is_the_data_object(provider: HiApiProvider) -> None:
    state = provider.parse_callback({}, _callback())
    assert state.task_id == "tk-1" and state.status is TaskStatus.SUCCEEDED
    assert state.result is not None and state.result.video_urls == ["https://cdn.example/v.mp4"]
    with pytest.raises(ValueError):
        provider.parse_callback({}, b'{"nothing": 1}')


def test_signature_checked_with_the_configured_secret(provider: HiApiProvider) -> None:
    body = _callback()
    ts = str(int(time.time()))
    good = {"X-HiAPI-Timestamp": ts, "X-HiAPI-Signature": sign(SECRET, ts, body)}
    assert provider.verify_callback(good, body)
    assert provider.verify_callback({k.lower(): v for k, v in good.items()}, body)
    forged = {**good, "X-HiAPI-Signature": sign("guessed-secret", ts, body)}
    assert not provider.verify_callback(forged, body)
    assert not provider.verify_callback(good, body + b" ")
    assert not provider.verify_callback({}, body)
    old = str(int(time.time()) - 301)
    stale = {"X-HiAPI-Timestamp": old, "X-HiAPI-Signature": sign(SECRET, old, body)}
    assert not provider.verify_callback(stale, body)


async def test_without_a_secret_the_url_is_the_authentication(fake: FakeHiAPI) -> None:
    provider = build(settings_for("hiapi", fake))
    try:
        assert provider.verify_callback({}, _callback())
    finally:
        await provider.aclose()


async def test_cli_generate_writes_a_real_mp4(fake: FakeHiAPI, tmp_path: Path) -> None:
    fake.path = ["queued", "success"]
    out = await cli_generate("hiapi", fake, tmp_path, "neon street at night",
                             out_name="street.mp4")
    assert out.read_bytes()[4:8] == b"ftyp"
    assert fake.received("POST")[0].body["input"]["prompt"] == "neon street at night"
