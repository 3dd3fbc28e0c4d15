"""Cases every gateway client must pass alike, each against its own fake over real HTTP.

What differs per gateway (bodies, answers, error shapes it alone has) stays in
tests/test_provider_<gateway>.py; the table of gateways is in tests/provider_helpers.py.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from bot.config import Settings
from bot.errors import ConfigError, GatewayUnavailableError, RateLimitError
from bot.media.probe import probe_file
from bot.models import MediaKind
from bot.providers import create_provider
from bot.providers.base import HttpGateway
from tests.provider_helpers import GATEWAYS, GatewayCase, SleepLog, cli_generate, settings_for

NOT_IDEMPOTENT = [gw for gw in GATEWAYS if not gw.idempotent_submit]


def _ids(gw: GatewayCase) -> str:
    return gw.name


@pytest.fixture(params=GATEWAYS, ids=_ids)
def gw(request: pytest.FixtureRequest) -> GatewayCase:
    case: GatewayCase = request.param
    return case


@pytest.fixture
async def fake(gw: GatewayCase) -> AsyncIterator[Any]:
    server = gw.fake()
    async with server:
        yield server


@pytest.fixture
async def provider(gw: GatewayCase, fake: Any, sleeps: SleepLog) -> AsyncIterator[HttpGateway]:
    made = gw.client(fake, sleeps)
    yield made
    await made.aclose()


async def test_missing_key_names_the_variable_and_the_registry_builds_it(
    gw: GatewayCase,
) -> None:
    for make in (gw.build, lambda s: create_provider(gw.name, s)):
        with pytest.raises(ConfigError, match=f"{gw.name.upper()}_API_KEY is not set"):
            make(Settings(_env_file=None))
    built = create_provider(gw.name, Settings(_env_file=None, **{f"{gw.name}_api_key": "k"}))
    try:
        assert isinstance(built, gw.provider)
    finally:
        await built.aclose()


async def test_cancel_is_not_offered_and_sends_nothing(fake: Any, provider: HttpGateway) -> None:
    assert await provider.cancel("task-1") is False
    assert fake.requests == []


async def test_rate_limit_honours_retry_after_and_is_bounded(
    gw: GatewayCase, fake: Any, provider: HttpGateway, sleeps: SleepLog
) -> None:
    limited = gw.error(429, "rate_limited", "Too many requests")
    fake.fail_next(429, limited, headers={"Retry-After": "3"}, times=2)
    submitted = await provider.submit(gw.generation_request(), idempotency_key="job-1")
    assert submitted.task_id in fake.tasks
    assert sleeps.delays == [3.0, 3.0] and len(fake.received("POST")) == 3
    fake.fail_next(429, limited, headers={"Retry-After": "4"}, times=5)
    with pytest.raises(RateLimitError) as info:
        await provider.submit(gw.generation_request(), idempotency_key="job-2")
    assert info.value.retry_after == 4.0
    assert sleeps.delays == [3.0, 3.0] + [4.0] * 4  # 5 attempts, 4 waits, each as told
    assert len(fake.received("POST")) == 3 + 5 and len(fake.tasks) == 1


async def test_503_on_create_is_retried_then_succeeds(
    gw: GatewayCase, fake: Any, provider: HttpGateway, sleeps: SleepLog
) -> None:
    fake.fail_next(503, gw.error(503, "service_unavailable", "busy, retry later"),
                   headers={"Retry-After": "2"})
    submitted = await provider.submit(gw.generation_request(), idempotency_key="job-1")
    assert submitted.task_id in fake.tasks and sleeps.delays == [2.0]
    assert len(fake.received("POST")) == 2


@pytest.mark.parametrize("gw", NOT_IDEMPOTENT, ids=_ids, indirect=True)
async def test_500_on_create_is_not_retried(
    gw: GatewayCase, fake: Any, provider: HttpGateway, sleeps: SleepLog
) -> None:
    """The task may exist: a create without an idempotency key is never sent twice."""
    fake.fail_next(500, gw.error(500, "internal_error", "Internal error"))
    with pytest.raises(GatewayUnavailableError) as info:
        await provider.submit(gw.generation_request(), idempotency_key="job-1")
    assert info.value.reason == "Internal error"
    assert len(fake.received("POST")) == 1 and sleeps.delays == [] and not fake.tasks


@pytest.mark.parametrize("gw", NOT_IDEMPOTENT, ids=_ids, indirect=True)
async def test_read_timeout_on_create_is_not_retried_but_on_poll_it_is(
    gw: GatewayCase, fake: Any, sleeps: SleepLog
) -> None:
    async with httpx.AsyncClient(timeout=httpx.Timeout(5.0, read=0.2)) as client:
        provider = gw.client(fake, sleeps, client=client)
        fake.fail_next(200, {}, method="POST", delay=0.6)
        with pytest.raises(GatewayUnavailableError, match="no answer"):
            await provider.submit(gw.generation_request(), idempotency_key="job-1")
        assert len(fake.received("POST")) == 1 and sleeps.delays == []
        submitted = await provider.submit(gw.generation_request(), idempotency_key="job-2")
        fake.fail_next(200, {}, method="GET", delay=0.6)
        state = await provider.poll(submitted.task_id)
        assert state.task_id == submitted.task_id
        assert len(fake.received("GET")) == 2 and len(sleeps.delays) == 1


async def test_last_frame_out_works_on_every_gateway(gw: GatewayCase, fake: Any,
                                                    tmp_path: Path) -> None:
    """Refused on Runware, Magnific and HiAPI until now ("cannot return the last frame"), though
    the frame can be taken from the video itself; asked of the gateway only where it has it."""
    gw.finish_fast(fake)
    frame = tmp_path / "last.png"
    out = await cli_generate(gw.name, fake, tmp_path, "a lighthouse at dusk", *gw.cli_args,
                             "--last-frame-out", str(frame))
    facts = probe_file(frame)
    video = probe_file(out)
    assert facts.kind is MediaKind.IMAGE and facts.format == "png"
    assert (facts.width, facts.height) == (video.width, video.height)
    offers = create_provider(gw.name, settings_for(gw.name, fake)).capabilities().last_frame
    asked = "return_last_frame" in json.dumps([r.body for r in fake.received("POST")])
    assert asked is offers
