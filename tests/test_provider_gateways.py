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
from bot.engine.policies import resubmit_is_safe
from bot.errors import ConfigError, GatewayError, GatewayUnavailableError, RateLimitError
from bot.httpclient import new_client
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


# Retries of a create (429 with Retry-After, 503, bounded) happen in the engine's requeue, not
# here: tests/chaos/test_faults.py drives them through the real engine.

@pytest.mark.parametrize(("status", "kind", "hint"), [
    (429, RateLimitError, "3"), (503, GatewayUnavailableError, "2"),
    (500, GatewayUnavailableError, None), (502, GatewayUnavailableError, None),
    (504, GatewayUnavailableError, None),
])
async def test_a_refused_create_is_sent_once_and_says_whether_to_resend(
    gw: GatewayCase, fake: Any, provider: HttpGateway, sleeps: SleepLog, status: int,
    kind: type[GatewayError], hint: str | None,
) -> None:
    """One try; the error keeps the status, Retry-After and retryable flag the engine's
    `resubmit_is_safe` reads: 429/503 may be resent anywhere, other 5xx only where a repeated
    create names the same task."""
    fake.fail_next(status, gw.error(status, "refused", "not now"),
                   headers={"Retry-After": hint} if hint else {})
    with pytest.raises(kind) as info:
        await provider.submit(gw.generation_request(), idempotency_key="job-1")
    error = info.value
    assert len(fake.received("POST")) == 1 and sleeps.delays == [] and not fake.tasks
    assert error.status == status and error.retryable
    assert error.retry_after == (float(hint) if hint else None)
    safe = resubmit_is_safe(error, idempotent=gw.idempotent_submit)
    assert safe is (status in (429, 503) or gw.idempotent_submit)


async def test_a_create_that_never_connected_may_be_resent(gw: GatewayCase,
                                                           sleeps: SleepLog) -> None:
    """Nothing listens: one try, no status, retryable, so the engine requeues it."""
    provider = gw.build(Settings(_env_file=None, **{f"{gw.name}_api_key": "k",
                                                    f"{gw.name}_base_url": "http://127.0.0.1:9"}),
                        sleep=sleeps)
    try:
        with pytest.raises(GatewayUnavailableError, match="could not connect") as info:
            await provider.submit(gw.generation_request(), idempotency_key="job-1")
    finally:
        await provider.aclose()
    assert info.value.status is None and info.value.retryable and sleeps.delays == []
    assert resubmit_is_safe(info.value, idempotent=gw.idempotent_submit)


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
@pytest.mark.parametrize("pool", ["aiohttp", "httpcore"])
async def test_read_timeout_on_create_is_not_retried_but_on_poll_it_is(
    gw: GatewayCase, fake: Any, sleeps: SleepLog, pool: str
) -> None:
    timeout = httpx.Timeout(5.0, read=0.2)
    made = new_client(timeout=timeout) if pool == "aiohttp" else httpx.AsyncClient(timeout=timeout)
    async with made as client:
        provider = gw.client(fake, sleeps, client=client)
        fake.fail_next(200, {}, method="POST", delay=0.6)
        with pytest.raises(GatewayUnavailableError, match="no answer") as info:
            await provider.submit(gw.generation_request(), idempotency_key="job-1")
        assert len(fake.received("POST")) == 1 and sleeps.delays == []
        assert not resubmit_is_safe(info.value, idempotent=False)
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
