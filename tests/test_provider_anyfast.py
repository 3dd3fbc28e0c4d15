"""The Anyfast client against a fake Anyfast over real HTTP on loopback."""

from __future__ import annotations

import base64
import io
from pathlib import Path

import av
import httpx
import pytest

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
from bot.models import (
    GenerationRequest,
    MediaKind,
    Mode,
    Ratio,
    Resolution,
    Role,
    SourceKind,
    TaskStatus,
)
from bot.providers.anyfast import AnyfastProvider
from tests.fakes.anyfast import FakeAnyfast
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

KEY = FakeAnyfast.api_key


GATEWAY = gateway_case("anyfast")
fake = fake_fixture(GATEWAY)
provider = provider_fixture(GATEWAY)


# ---- capabilities (missing key, registry, cancel, retries: test_provider_gateways.py) ------

def test_capabilities_per_model(provider: AnyfastProvider) -> None:
    mini = provider.capabilities()
    full = provider.capabilities("seedance")
    assert provider.default_model == "seedance-2.0-mini" == mini.model
    assert Resolution.P1080 not in mini.resolutions
    assert Resolution.P1080 in full.resolutions
    assert full.limits.min_reference_images == 1 and mini.limits.min_reference_images == 0
    assert mini.accepts[MediaKind.VIDEO] == {SourceKind.URL, SourceKind.ASSET}
    assert SourceKind.DATA_URI in mini.accepts[MediaKind.IMAGE]
    assert SourceKind.ASSET in mini.accepts[MediaKind.AUDIO]
    assert not mini.webhooks and not mini.seed and mini.last_frame and mini.web_search
    with pytest.raises(ValueError, match="no model"):
        provider.capabilities("seedance-3")


# ---- bodies, one per input mode -----------------------------------------------------------

async def test_text_mode_body(fake: FakeAnyfast, provider: AnyfastProvider) -> None:
    req = GenerationRequest(prompt="A cat playing piano", mode=Mode.TEXT, duration=8,
                            ratio=Ratio.R16_9, web_search=True, return_last_frame=True)
    submitted = await provider.submit(req, idempotency_key="job-1")
    [sent] = fake.received("POST", "/v1/video/generations")
    assert sent.headers["Authorization"] == f"Bearer {KEY}"
    assert sent.body == {
        "model": "seedance-2.0-mini",
        "content": [{"type": "text", "text": "A cat playing piano"}],
        "generate_audio": True, "resolution": "720p", "ratio": "16:9", "duration": 8,
        "watermark": False, "tools": [{"type": "web_search"}], "return_last_frame": True,
    }
    assert submitted.task_id in fake.tasks
    assert submitted.state is not None and submitted.state.status is TaskStatus.PENDING


async def test_first_frame_local_file_goes_as_base64(
    fake: FakeAnyfast, provider: AnyfastProvider, tmp_path: Path
) -> None:
    path = make_image(tmp_path / "cat.png", 640, 480)
    req = GenerationRequest(prompt="it wakes up", mode=Mode.FIRST_FRAME, audio=False,
                            references=[image_file_ref(path, Role.FIRST_FRAME)],
                            resolution=Resolution.P480)
    await provider.submit(req, idempotency_key="job-2")
    body = fake.received("POST")[0].body
    assert [c["type"] for c in body["content"]] == ["text", "image_url"]
    item = body["content"][1]
    assert item["role"] == "first_frame"
    prefix = "data:image/png;base64,"
    assert item["image_url"]["url"].startswith(prefix)
    assert base64.b64decode(item["image_url"]["url"][len(prefix):]) == path.read_bytes()
    assert body["generate_audio"] is False and body["resolution"] == "480p"
    assert "tools" not in body and "return_last_frame" not in body


async def test_first_last_frame_without_text(fake: FakeAnyfast,
                                             provider: AnyfastProvider) -> None:
    req = GenerationRequest(mode=Mode.FIRST_LAST_FRAME, references=[
        url_ref(MediaKind.IMAGE, "https://example.com/a.jpg", Role.FIRST_FRAME),
        url_ref(MediaKind.IMAGE, "https://example.com/b.jpg", Role.LAST_FRAME),
    ])
    await provider.submit(req, idempotency_key="job-3")
    content = fake.received("POST")[0].body["content"]
    assert content == [
        {"type": "image_url", "image_url": {"url": "https://example.com/a.jpg"},
         "role": "first_frame"},
        {"type": "image_url", "image_url": {"url": "https://example.com/b.jpg"},
         "role": "last_frame"},
    ]


async def test_reference_mode_orders_and_roles(fake: FakeAnyfast,
                                               provider: AnyfastProvider) -> None:
    refs = [
        url_ref(MediaKind.IMAGE, "asset://asset-20260427160000-xxxxx", Role.REFERENCE_IMAGE),
        url_ref(MediaKind.IMAGE, "https://example.com/b.png", Role.REFERENCE_IMAGE),
        url_ref(MediaKind.VIDEO, "https://example.com/clip.mp4", Role.REFERENCE_VIDEO),
        url_ref(MediaKind.AUDIO, "https://example.com/bgm.mp3", Role.REFERENCE_AUDIO),
    ]
    req = GenerationRequest(prompt="@image1 dances in @video1 to @audio1", model="seedance",
                            mode=Mode.REFERENCE, references=refs, duration=11,
                            resolution=Resolution.P1080)
    await provider.submit(req, idempotency_key="job-4")
    body = fake.received("POST")[0].body
    assert body["model"] == "seedance" and body["resolution"] == "1080p"
    assert body["content"][1:] == [
        {"type": "image_url", "image_url": {"url": "asset://asset-20260427160000-xxxxx"},
         "role": "reference_image"},
        {"type": "image_url", "image_url": {"url": "https://example.com/b.png"},
         "role": "reference_image"},
        {"type": "video_url", "video_url": {"url": "https://example.com/clip.mp4"},
         "role": "reference_video"},
        {"type": "audio_url", "audio_url": {"url": "https://example.com/bgm.mp3"},
         "role": "reference_audio"},
    ]


async def test_edit_and_extend_bodies(fake: FakeAnyfast, provider: AnyfastProvider) -> None:
    edit = GenerationRequest(prompt="swap the bottle in @video1 for @image1", mode=Mode.EDIT,
                             references=[
                                 url_ref(MediaKind.IMAGE, "https://e.com/p.jpg",
                                         Role.REFERENCE_IMAGE),
                                 url_ref(MediaKind.VIDEO, "https://e.com/o.mp4",
                                         Role.REFERENCE_VIDEO)])
    extend = GenerationRequest(prompt="continue @video1 then @video2", mode=Mode.EXTEND,
                               references=[
                                   url_ref(MediaKind.VIDEO, "https://e.com/1.mp4",
                                           Role.REFERENCE_VIDEO),
                                   url_ref(MediaKind.VIDEO, "https://e.com/2.mp4",
                                           Role.REFERENCE_VIDEO)])
    await provider.submit(edit, idempotency_key="e")
    await provider.submit(extend, idempotency_key="x")
    first, second = (r.body for r in fake.received("POST"))
    assert [(c["type"], c.get("role")) for c in first["content"]] == [
        ("text", None), ("image_url", "reference_image"), ("video_url", "reference_video")]
    assert [(c["type"], c.get("role")) for c in second["content"]] == [
        ("text", None), ("video_url", "reference_video"), ("video_url", "reference_video")]


async def test_fake_refuses_what_the_page_forbids(fake: FakeAnyfast,
                                                  provider: AnyfastProvider) -> None:
    """Invalid request: 1080p on the Mini model comes back as the gateway's own 400 reason."""
    req = GenerationRequest(prompt="x y", resolution=Resolution.P1080)
    with pytest.raises(InvalidRequestError, match="1080p") as info:
        await provider.submit(req, idempotency_key="j")
    assert info.value.status == 400 and info.value.code == "invalid_request"
    assert not fake.tasks


# ---- create answers and poll variants -----------------------------------------------------

@pytest.mark.parametrize(("id_fields", "id_style"), [("id", "cgt"), ("task_id", "asyn"),
                                                     ("both", "asyn")])
async def test_create_answer_id_variants(fake: FakeAnyfast, provider: AnyfastProvider,
                                         id_fields: str, id_style: str) -> None:
    fake.id_fields, fake.id_style = id_fields, id_style
    submitted = await provider.submit(GenerationRequest(prompt="a b"), idempotency_key="k")
    assert submitted.task_id == next(iter(fake.tasks))
    states = await run_to_end(provider, submitted.task_id)
    assert states[-1].status is TaskStatus.SUCCEEDED


async def test_statuses_progress_and_success(fake: FakeAnyfast,
                                             provider: AnyfastProvider) -> None:
    fake.pending_statuses = ["NOT_START", "SUBMITTED", "QUEUED", "IN_PROGRESS", "UNKNOWN",
                             "IN_PROGRESS"]
    req = GenerationRequest(prompt="a b", return_last_frame=True)
    submitted = await provider.submit(req, idempotency_key="k")
    states = await run_to_end(provider, submitted.task_id)
    assert [s.status for s in states] == [
        TaskStatus.PENDING, TaskStatus.PENDING, TaskStatus.PENDING, TaskStatus.RUNNING,
        TaskStatus.RUNNING, TaskStatus.RUNNING, TaskStatus.SUCCEEDED]
    assert [s.progress for s in states[:3]] == [0.0, 16.0, 33.0]
    done = states[-1]
    assert done.progress == 100.0 and done.result is not None
    assert done.result.seed == fake.seed
    assert done.result.last_frame_url and "-last.png" in done.result.last_frame_url
    assert done.result.expires_at is not None
    # the URL serves a real MP4
    async with httpx.AsyncClient() as http:
        got = await http.get(done.result.video_urls[0])
    assert got.status_code == 200
    with av.open(io.BytesIO(got.content)) as container:
        assert container.streams.video[0].codec_context.name == "h264"


@pytest.mark.parametrize("shape", ["flat", "nested", "both"])
async def test_result_url_flat_or_nested(fake: FakeAnyfast, provider: AnyfastProvider,
                                         shape: str) -> None:
    fake.result_shape, fake.pending_statuses, fake.numeric_progress = shape, [], True
    submitted = await provider.submit(GenerationRequest(prompt="a b"), idempotency_key="k")
    [state] = await run_to_end(provider, submitted.task_id)
    assert state.result is not None
    assert state.result.video_urls == [f"{fake.base_url}/files/{submitted.task_id}.mp4"
                                       "?X-Amz-Signature=secret-signature"]
    assert state.result.last_frame_url is None


@pytest.mark.parametrize(
    ("reason", "upstream", "outcome", "kind"),
    [
        ("OutputAudioSensitiveContentDetected: audio flagged", None, "failure",
         AudioModerationError),
        ("InputImageSensitiveContentDetected.PrivacyInformation", None, "failure",
         RealFaceError),
        ("", {"code": "OutputVideoSensitiveContentDetected", "message": "blocked"}, "failure",
         ContentRejectedError),
        ("upstream timeout", None, "failure", TaskFailedError),
        ("internal error", None, "failure_at_100", ContentRejectedError),
    ],
)
async def test_failures_are_classified(fake: FakeAnyfast, provider: AnyfastProvider,
                                       reason: str, upstream: dict[str, str] | None,
                                       outcome: str, kind: type) -> None:
    fake.pending_statuses, fake.outcome = ["IN_PROGRESS"], outcome
    fake.fail_reason, fake.upstream_error = reason, upstream
    submitted = await provider.submit(GenerationRequest(prompt="a b"), idempotency_key="k")
    states = await run_to_end(provider, submitted.task_id)
    final = states[-1]
    assert final.status is TaskStatus.FAILED
    assert type(final.error) is kind and isinstance(final.error, GatewayError)
    assert (reason or "blocked") in final.error.reason


# ---- error kinds ---------------------------------------------------------------------------

async def test_auth_error(fake: FakeAnyfast, sleeps: SleepLog) -> None:
    provider = GATEWAY.client(fake, sleeps, key="wrong-key-123456")
    with pytest.raises(AuthenticationError) as info:
        await provider.submit(GenerationRequest(prompt="a b"), idempotency_key="k")
    await provider.aclose()
    assert info.value.status == 401 and len(fake.requests) == 1
    # a gateway echoing the key back never puts it in front of a person
    echo = GATEWAY.client(fake, sleeps, key="echoed-key-98765")
    fake.fail_next(401, {"code": "invalid_api_key", "message": "token echoed-key-98765 is "
                         "disabled", "data": None})
    with pytest.raises(AuthenticationError) as echoed:
        await echo.submit(GenerationRequest(prompt="a b"), idempotency_key="k")
    await echo.aclose()
    assert "echoed-key-98765" not in str(echoed.value) and "disabled" in str(echoed.value)


async def test_balance_403_insufficient_user_quota(fake: FakeAnyfast,
                                                   provider: AnyfastProvider) -> None:
    fake.fail_next(403, {"code": "insufficient_user_quota",
                         "message": "user quota is not enough", "data": None})
    with pytest.raises(InsufficientBalanceError, match="quota is not enough"):
        await provider.submit(GenerationRequest(prompt="a b"), idempotency_key="k")


async def test_balance_ark_account_overdue(fake: FakeAnyfast, provider: AnyfastProvider) -> None:
    fake.fail_next(403, {"error": {"code": "AccountOverdueError", "message": "overdue balance",
                                   "type": "Forbidden"}})
    with pytest.raises(InsufficientBalanceError) as info:
        await provider.submit(GenerationRequest(prompt="a b"), idempotency_key="k")
    assert info.value.code == "AccountOverdueError"


async def test_moderation_on_create(fake: FakeAnyfast, provider: AnyfastProvider) -> None:
    fake.fail_next(400, {"error": {"code": "InputTextSensitiveContentDetected",
                                   "message": "The request failed because the input text may "
                                              "contain sensitive information.",
                                   "param": "", "type": "BadRequest"}})
    with pytest.raises(ContentRejectedError) as info:
        await provider.submit(GenerationRequest(prompt="a b"), idempotency_key="k")
    assert info.value.status == 400 and "sensitive information" in info.value.reason


async def test_unavailable_500_on_create_is_not_retried(
    fake: FakeAnyfast, provider: AnyfastProvider, sleeps: SleepLog
) -> None:
    fake.fail_next(500, "<html>bad gateway</html>")
    with pytest.raises(GatewayUnavailableError):
        await provider.submit(GenerationRequest(prompt="a b"), idempotency_key="k")
    assert len(fake.received("POST")) == 1 and sleeps.delays == []


async def test_poll_retries_transient_errors(fake: FakeAnyfast, provider: AnyfastProvider,
                                             sleeps: SleepLog) -> None:
    submitted = await provider.submit(GenerationRequest(prompt="a b"), idempotency_key="k")
    fake.fail_next(502, {"code": "bad_gateway", "message": "x", "data": None}, method="GET",
                   headers={"Retry-After": "3"})
    state = await provider.poll(submitted.task_id)
    assert state.status is TaskStatus.PENDING and sleeps.delays == [3.0]


async def test_task_not_found(fake: FakeAnyfast, provider: AnyfastProvider) -> None:
    with pytest.raises(TaskNotFoundError, match="task_not_exist"):
        await provider.poll("cgt-does-not-exist")
    fake.fail_next(200, {"code": "task_not_exist", "message": "task_not_exist", "data": None},
                   method="GET")
    with pytest.raises(TaskNotFoundError):
        await provider.poll("cgt-does-not-exist")


async def test_malformed_poll_body_is_a_transient_fault(fake: FakeAnyfast,
                                                        provider: AnyfastProvider) -> None:
    fake.fail_next(200, "{not json", method="GET")
    with pytest.raises(GatewayUnavailableError, match="malformed JSON"):
        await provider.poll("cgt-anything")


# ---- assets, callbacks ------------------------------------------------------------

async def test_asset_group_asset_and_use(fake: FakeAnyfast, provider: AnyfastProvider) -> None:
    group = await provider.create_asset_group("characters")
    asset = await provider.create_asset(group, "hero", "https://example.com/hero.png")
    assert fake.received("POST", "/volc/asset/CreateAsset")[-1].body == {
        "model": "volc-asset", "GroupId": group, "Name": "hero", "AssetType": "Image",
        "URL": "https://example.com/hero.png"}
    assert asset.startswith("asset-") and fake.groups[group] == "characters"
    req = GenerationRequest(prompt="@image1 walks", model="seedance", mode=Mode.REFERENCE,
                            references=[url_ref(MediaKind.IMAGE, f"asset://{asset}",
                                                Role.REFERENCE_IMAGE)])
    await provider.submit(req, idempotency_key="k")
    assert fake.received("POST", "/v1/")[-1].body["content"][1]["image_url"]["url"] == (
        f"asset://{asset}")
    with pytest.raises(InvalidRequestError, match="unknown GroupId"):
        await provider.create_asset("group-nope", "x", "https://example.com/x.png")


def test_callback_shaped_like_a_poll_answer(provider: AnyfastProvider) -> None:
    body = (b'{"code":"success","message":"","data":{"task_id":"cgt-9","status":"SUCCESS",'
            b'"progress":"100%","fail_reason":"https://x/v.mp4","result_url":"https://x/v.mp4",'
            b'"data":{"seed":5,"content":{"video_url":"https://x/v.mp4"}}}}')
    assert provider.verify_callback({}, body) is True
    state = provider.parse_callback({}, body)
    assert state.task_id == "cgt-9" and state.status is TaskStatus.SUCCEEDED
    assert state.result is not None and state.result.seed == 5


# ---- the command line against the fake ---------------------------------------------------

async def test_cli_generate_writes_a_real_mp4(fake: FakeAnyfast, tmp_path: Path) -> None:
    fake.pending_statuses = []  # done at the first poll
    out = await cli_generate("anyfast", fake, tmp_path, "a lighthouse at dusk")
    with av.open(str(out)) as container:
        assert container.streams.video[0].frames > 0
    assert fake.received("POST", "/v1/video/generations")[0].body["content"] == [
        {"type": "text", "text": "a lighthouse at dusk"}]
