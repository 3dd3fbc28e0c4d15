"""The callback receiver on loopback, fed by the fake gateways' real (doubled) callbacks."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import stat
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from bot.config import Settings
from bot.models import GenerationRequest, Mode, Ratio, TaskState, TaskStatus
from bot.providers.hiapi import HiApiProvider
from bot.providers.magnific import MagnificProvider
from bot.webhooks import CallbackReceiver, build_receiver, load_or_create_secret
from tests.fakes.hiapi import FakeHiAPI
from tests.fakes.magnific import FakeMagnific

SECRET = "receiver-secret-for-tests"
HIAPI_SECRET = "hiapi-signing-secret"


class Sink:
    """Records what the receiver passes on; can be told to fail or to take its time."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, TaskState]] = []
        self.fail = False
        self.pause = 0.0

    async def __call__(self, job_id: str, state: TaskState) -> None:
        if self.pause:
            await asyncio.sleep(self.pause)
        if self.fail:
            raise RuntimeError("database is locked")
        self.calls.append((job_id, state))


@pytest.fixture
async def magnific() -> AsyncIterator[FakeMagnific]:
    fake = FakeMagnific()
    async with fake:
        yield fake


@pytest.fixture
async def hiapi() -> AsyncIterator[FakeHiAPI]:
    fake = FakeHiAPI()
    fake.signing_secret = HIAPI_SECRET
    async with fake:
        yield fake


@pytest.fixture
async def providers(
    magnific: FakeMagnific, hiapi: FakeHiAPI
) -> AsyncIterator[dict[str, Any]]:
    made: dict[str, Any] = {
        "magnific": MagnificProvider(magnific.api_key, magnific.base_url),
        "hiapi": HiApiProvider(hiapi.api_key, hiapi.base_url, callback_secret=HIAPI_SECRET),
    }
    yield made
    for p in made.values():
        await p.aclose()


@pytest.fixture
def sink() -> Sink:
    return Sink()


async def start_receiver(providers: dict[str, Any], sink: Sink, **kw: Any) -> CallbackReceiver:
    receiver = CallbackReceiver(providers, sink, base_url="http://placeholder", secret=SECRET,
                                host="127.0.0.1", port=0, **kw)
    await receiver.start()
    receiver.base_url = f"http://127.0.0.1:{receiver.bound_port}"
    return receiver


@pytest.fixture
async def receiver(providers: dict[str, Any], sink: Sink) -> AsyncIterator[CallbackReceiver]:
    r = await start_receiver(providers, sink)
    yield r
    await r.stop()


async def post(url: str, body: bytes, headers: dict[str, str] | None = None) -> int:
    async with aiohttp.ClientSession() as session, session.post(
        url, data=body, headers=headers or {}
    ) as resp:
        return resp.status


def magnific_body(task_id: str = "t-1", status: str = "COMPLETED") -> bytes:
    urls = '["https://cdn.example/v.mp4"]' if status == "COMPLETED" else "[]"
    return f'{{"task_id":"{task_id}","status":"{status}","generated":{urls}}}'.encode()


# ---- end to end: real providers, real fakes, real callbacks ------------------------------

async def test_magnific_webhook_delivered_twice_reaches_the_sink_once(
    magnific: FakeMagnific, providers: dict[str, Any], receiver: CallbackReceiver, sink: Sink
) -> None:
    request = GenerationRequest(prompt="a fox", mode=Mode.TEXT, ratio=Ratio.R16_9, audio=False)
    url = receiver.url_for("magnific", "job-42")
    submitted = await providers["magnific"].submit(request, idempotency_key="job-42",
                                                   callback_url=url)
    assert await magnific.notify(submitted.task_id) == [200, 200]
    assert len(sink.calls) == 1
    job_id, state = sink.calls[0]
    assert job_id == "job-42" and state.task_id == submitted.task_id
    assert state.status is TaskStatus.SUCCEEDED and state.result is not None
    assert state.result.video_urls[0].startswith(magnific.base_url)


async def test_signed_hiapi_callback_delivered_twice_reaches_the_sink_once(
    hiapi: FakeHiAPI, providers: dict[str, Any], receiver: CallbackReceiver, sink: Sink
) -> None:
    request = GenerationRequest(prompt="neon", mode=Mode.TEXT, provider="hiapi")
    url = receiver.url_for("hiapi", "job-7")
    submitted = await providers["hiapi"].submit(request, idempotency_key="job-7",
                                                callback_url=url)
    assert hiapi.received("POST")[0].body["callback"]["url"] == url
    assert await hiapi.notify(submitted.task_id) == [200, 200]
    assert [(j, s.task_id, s.status) for j, s in sink.calls] == [
        ("job-7", submitted.task_id, TaskStatus.SUCCEEDED)
    ]


async def test_forged_hiapi_signature_is_refused(
    hiapi: FakeHiAPI, receiver: CallbackReceiver, sink: Sink
) -> None:
    body = b'{"taskId":"tk-1","status":"success","output":[]}'
    hiapi.signing_secret = "not-the-real-secret"
    headers = hiapi.signed_headers(body)
    statuses = await hiapi.send_callback(receiver.url_for("hiapi", "job-1"), body, headers)
    assert statuses == [401, 401] and sink.calls == []


async def test_stale_hiapi_signature_is_refused(
    hiapi: FakeHiAPI, receiver: CallbackReceiver, sink: Sink
) -> None:
    body = b'{"taskId":"tk-1","status":"fail","error":{"code":"x","message":"y"}}'
    headers = hiapi.signed_headers(body, timestamp="1000000000")
    assert await post(receiver.url_for("hiapi", "job-1"), body, headers) == 401
    assert sink.calls == []


# ---- the URL is the credential -----------------------------------------------------------

def test_url_token_is_an_hmac_of_provider_and_job(receiver: CallbackReceiver) -> None:
    url = receiver.url_for("magnific", "job-1")
    token = url.rsplit("/", 1)[1]
    expected = hmac.new(SECRET.encode(), b"magnific:job-1", hashlib.sha256).hexdigest()[:32]
    assert url == f"{receiver.base_url}/callbacks/magnific/job-1/{expected}"
    assert token != receiver.url_for("magnific", "job-2").rsplit("/", 1)[1]
    assert token != receiver.url_for("hiapi", "job-1").rsplit("/", 1)[1]


async def test_wrong_token_unknown_provider_and_other_jobs_token_are_404(
    receiver: CallbackReceiver, sink: Sink
) -> None:
    good = receiver.url_for("magnific", "job-1")
    other_job_token = receiver.url_for("magnific", "job-2").rsplit("/", 1)[1]
    for url in (
        good[:-1] + ("0" if good[-1] != "0" else "1"),
        good.rsplit("/", 1)[0] + "/" + other_job_token,
        good.replace("/magnific/", "/runware/"),
        good.rsplit("/", 1)[0],
    ):
        assert await post(url, magnific_body()) == 404
    assert sink.calls == []
    assert await post(good, magnific_body()) == 200 and len(sink.calls) == 1


async def test_tokens_never_reach_the_log(
    receiver: CallbackReceiver, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    url = receiver.url_for("magnific", "job-1")
    await post(url, magnific_body())
    await post(url, b"{broken")
    await post(url[:-2] + "zz", magnific_body())
    assert url.rsplit("/", 1)[1] not in caplog.text and SECRET not in caplog.text


# ---- bodies ------------------------------------------------------------------------------

async def test_malformed_body_is_400(receiver: CallbackReceiver, sink: Sink) -> None:
    url = receiver.url_for("magnific", "job-1")
    for body in (b"{broken", b'{"no":"status"}', b"[]", b""):
        assert await post(url, body) == 400
    assert sink.calls == []


async def test_body_over_one_mebibyte_is_refused(receiver: CallbackReceiver, sink: Sink) -> None:
    body = b'{"task_id":"t","status":"CREATED","generated":[],"pad":"' + b"x" * (1 << 20) + b'"}'
    assert await post(receiver.url_for("magnific", "job-1"), body) == 413
    assert sink.calls == []


async def test_each_new_status_is_passed_on(receiver: CallbackReceiver, sink: Sink) -> None:
    url = receiver.url_for("magnific", "job-1")
    for status in ("IN_PROGRESS", "IN_PROGRESS", "COMPLETED", "COMPLETED"):
        assert await post(url, magnific_body(status=status)) == 200
    assert [s.status for _, s in sink.calls] == [TaskStatus.RUNNING, TaskStatus.SUCCEEDED]


async def test_sink_failure_is_500_and_the_redelivery_is_processed(
    receiver: CallbackReceiver, sink: Sink
) -> None:
    url = receiver.url_for("magnific", "job-1")
    sink.fail = True
    assert await post(url, magnific_body()) == 500
    sink.fail = False
    assert await post(url, magnific_body()) == 200
    assert await post(url, magnific_body()) == 200
    assert len(sink.calls) == 1


async def test_concurrent_duplicates_reach_the_sink_once(
    receiver: CallbackReceiver, sink: Sink
) -> None:
    sink.pause = 0.05
    url = receiver.url_for("magnific", "job-1")
    statuses = await asyncio.gather(*(post(url, magnific_body()) for _ in range(4)))
    assert statuses == [200] * 4 and len(sink.calls) == 1


async def test_dedup_memory_is_bounded(providers: dict[str, Any], sink: Sink) -> None:
    receiver = await start_receiver(providers, sink, memory=2)
    try:
        url = receiver.url_for("magnific", "job-1")
        for task in ("a", "b", "c", "a"):
            assert await post(url, magnific_body(task_id=task)) == 200
    finally:
        await receiver.stop()
    # "a" was forgotten when "c" arrived, so its redelivery is passed on again.
    assert [s.task_id for _, s in sink.calls] == ["a", "b", "c", "a"]


# ---- configuration -----------------------------------------------------------------------

def test_secret_is_created_once_with_private_permissions(tmp_path: Path) -> None:
    settings = Settings(_env_file=None, seedance_data_dir=tmp_path / "data")
    first = load_or_create_secret(settings)
    path = tmp_path / "data" / "webhook_secret"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(first) >= 32 and load_or_create_secret(settings) == first
    configured = Settings(_env_file=None, seedance_data_dir=tmp_path / "data",
                          seedance_webhook_secret="from-env")
    assert load_or_create_secret(configured) == "from-env"


def test_receiver_only_when_a_base_url_is_set(tmp_path: Path, sink: Sink) -> None:
    off = Settings(_env_file=None, seedance_data_dir=tmp_path)
    assert build_receiver(off, {}, sink) is None
    on = Settings(_env_file=None, seedance_data_dir=tmp_path,
                  seedance_webhook_base_url="https://bot.example.com/", seedance_webhook_port=9911)
    receiver = build_receiver(on, {}, sink)
    assert receiver is not None and receiver.port == 9911
    assert receiver.url_for("hiapi", "j").startswith("https://bot.example.com/callbacks/hiapi/j/")


def test_an_http_callback_url_is_refused_for_gateways_that_need_https() -> None:
    """HiAPI calls back HTTPS URLs only: an http:// receiver would never hear from it."""
    from bot.providers.hiapi import build as build_hiapi
    from bot.providers.runware import build as build_runware
    from bot.webhooks import https_problem

    settings = Settings(_env_file=None, hiapi_api_key="k", runware_api_key="k")
    hiapi_caps = build_hiapi(settings).capabilities()
    runware_caps = build_runware(settings).capabilities()
    problem = https_problem("http://bot.example.com:8080", [hiapi_caps, runware_caps])
    assert problem is not None
    assert "SEEDANCE_WEBHOOK_BASE_URL" in problem and "hiapi" in problem
    assert "runware" not in problem  # Runware takes any URL
    assert https_problem("https://bot.example.com", [hiapi_caps]) is None
    assert https_problem("http://127.0.0.1:9000", [hiapi_caps]) is None  # tests, a local proxy
    assert https_problem("http://bot.example.com", [runware_caps]) is None
