"""Odd and malformed gateway answers, each to the state or typed error it must become.

Each gateway module reads its answers through pydantic models (bot/providers/<gw>_models.py);
these cases, served by the gateway's fake over real HTTP, pin what a wrong shape turns into:
the same `GatewayError` kind (and status, which decides whether the engine may resend a create)
the module raised before the models existed.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from bot.engine.policies import resubmit_is_safe
from bot.errors import (
    ContentRejectedError,
    GatewayError,
    GatewayUnavailableError,
    InvalidRequestError,
    RateLimitError,
    TaskFailedError,
    TaskNotFoundError,
)
from bot.models import TaskStatus
from bot.providers.base import HttpGateway
from tests.provider_helpers import GatewayCase, SleepLog, gateway_case

ANYFAST, RUNWARE = gateway_case("anyfast"), gateway_case("runware")
MAGNIFIC, HIAPI = gateway_case("magnific"), gateway_case("hiapi")


@pytest.fixture
async def served(request: pytest.FixtureRequest, sleeps: SleepLog
                 ) -> AsyncIterator[tuple[Any, HttpGateway]]:
    gw: GatewayCase = request.param
    async with gw.fake() as fake:
        provider = gw.client(fake, sleeps)
        try:
            yield fake, provider
        finally:
            await provider.aclose()


def on(gw: GatewayCase) -> Any:
    return pytest.mark.parametrize("served", [gw], ids=[gw.name], indirect=True)


# ---- creates: a 2xx the module cannot use is never "not sent" -----------------------------

CREATES: list[tuple[GatewayCase, Any, type[GatewayError], str]] = [
    (ANYFAST, [], GatewayUnavailableError, "not a JSON object"),
    (ANYFAST, {"code": "quota_busy", "message": "try later"}, InvalidRequestError, "try later"),
    (ANYFAST, {"object": "video"}, InvalidRequestError, "carried no task id"),
    (RUNWARE, '"just text"', GatewayUnavailableError, "not a JSON object"),
    (RUNWARE, {"errors": [{"code": "invalidDuration", "message": "bad duration",
                           "taskUUID": None}]}, InvalidRequestError, "bad duration"),
    (RUNWARE, {"data": [{"status": "error", "error": {"code": "contentModerationFailed",
                                                      "message": "blocked"}}]},
     ContentRejectedError, "blocked"),
    (MAGNIFIC, {"data": {"task_id": "t-1"}}, GatewayUnavailableError, "unexpected create answer"),
    (MAGNIFIC, {"data": {"status": "CREATED"}}, GatewayUnavailableError, "without task_id"),
    (HIAPI, {"code": 200, "message": "success", "data": None}, GatewayUnavailableError,
     "without data.taskId"),
    (HIAPI, {"code": 200, "data": {"taskId": ""}}, GatewayUnavailableError, "data.taskId"),
]


@pytest.mark.parametrize(("served", "answer", "kind", "words"),
                         [(gw, a, k, w) for gw, a, k, w in CREATES],
                         ids=[f"{gw.name}-{i}" for i, (gw, *_) in enumerate(CREATES)],
                         indirect=["served"])
async def test_unusable_create_answers(served: tuple[Any, HttpGateway], answer: Any,
                                       kind: type[GatewayError], words: str) -> None:
    fake, provider = served
    gw = next(g for g in (ANYFAST, RUNWARE, MAGNIFIC, HIAPI) if g.name == provider.name)
    fake.fail_next(200, answer, method="POST")
    with pytest.raises(kind, match=words) as info:
        await provider.submit(gw.generation_request(), idempotency_key="job-1")
    # The gateway took the work: resent only where a repeat names the same task (Runware).
    safe = resubmit_is_safe(info.value, idempotent=gw.idempotent_submit)
    assert safe is (gw.idempotent_submit and info.value.retryable)
    assert len(fake.received("POST")) == 1


@on(HIAPI)
async def test_hiapi_failure_code_inside_a_2xx_is_that_failure(
    served: tuple[Any, HttpGateway]
) -> None:
    fake, provider = served
    fake.fail_next(200, {"code": 429, "message": "slow down", "data": None,
                         "error_code": "RATE_LIMITED"}, method="POST")
    with pytest.raises(RateLimitError) as info:
        await provider.submit(HIAPI.generation_request(), idempotency_key="job-1")
    assert info.value.status == 429 and info.value.code == "RATE_LIMITED"


# ---- polls: unreadable answers are transient (polled again), a few say more ---------------

POLLS: list[tuple[GatewayCase, Any, type[GatewayError], str]] = [
    (ANYFAST, [], GatewayUnavailableError, "not a JSON object"),
    (ANYFAST, {"code": "upstream_error", "message": "try later", "data": None},
     GatewayUnavailableError, "try later"),
    (ANYFAST, {"code": "task_not_found", "message": "", "data": "nope"}, TaskNotFoundError,
     "task_not_found"),
    (RUNWARE, "42", GatewayUnavailableError, "not a JSON object"),
    (MAGNIFIC, [], GatewayUnavailableError, "unexpected task answer"),
    (MAGNIFIC, {"data": {"task_id": "t-1"}}, GatewayUnavailableError, "status"),
    (HIAPI, '"text"', GatewayUnavailableError, "not an object"),
    (HIAPI, {"code": 200, "data": "junk"}, GatewayUnavailableError, "task is not an object"),
    (HIAPI, {"code": 200, "data": {"taskId": "tk-1"}}, GatewayUnavailableError,
     "task without status"),
    (HIAPI, {"code": 404, "message": "task not found", "error_code": "NOT_FOUND"},
     TaskNotFoundError, "task not found"),
]


@pytest.mark.parametrize(("served", "answer", "kind", "words"),
                         [(gw, a, k, w) for gw, a, k, w in POLLS],
                         ids=[f"{gw.name}-{i}" for i, (gw, *_) in enumerate(POLLS)],
                         indirect=["served"])
async def test_unusable_poll_answers(served: tuple[Any, HttpGateway], answer: Any,
                                     kind: type[GatewayError], words: str) -> None:
    fake, provider = served
    poll = {"runware": {"method": "POST"}}.get(provider.name, {"method": "GET"})
    fake.fail_next(200, answer, **poll)
    with pytest.raises(kind, match=words):
        await provider.poll("3f1c2d4e-5a6b-4c7d-8e9f-0a1b2c3d4e5f")


@pytest.mark.parametrize(("served", "answer", "status", "check"), [
    (ANYFAST, {"task_id": "t", "status": "IN_PROGRESS", "progress": "42%"},
     TaskStatus.RUNNING, lambda s: s.progress == 42.0),
    (ANYFAST, {"data": {"task_id": "t", "status": "weird", "progress": True}},
     TaskStatus.RUNNING, lambda s: s.progress is None),
    (ANYFAST, {"data": {"task_id": "t", "status": "SUCCESS", "data": "garbage"}},
     TaskStatus.FAILED, lambda s: isinstance(s.error, TaskFailedError)),
    (ANYFAST, {"data": {"task_id": "t", "status": "FAILURE", "progress": 150,
                        "data": {"error": {"code": "X", "message": "boom"}}}},
     TaskStatus.FAILED, lambda s: isinstance(s.error, ContentRejectedError)),
    (RUNWARE, {"data": "not a list", "errors": None}, TaskStatus.PENDING, lambda s: True),
    (RUNWARE, {"data": [{"taskUUID": "someone-else", "status": "success", "videoURL": "u"}]},
     TaskStatus.PENDING, lambda s: s.result is None),
    (RUNWARE, {"data": [{"status": "success"}]}, TaskStatus.FAILED,
     lambda s: s.error is not None and s.error.code == "noVideoURL"),
    (MAGNIFIC, {"data": {"status": "COMPLETED", "generated": ["", 3, None]}},
     TaskStatus.FAILED, lambda s: "listed no video" in str(s.error)),
    (MAGNIFIC, {"task_id": "t-9", "status": "SOMETHING_NEW"}, TaskStatus.RUNNING,
     lambda s: s.task_id == "t-9"),
    (HIAPI, {"code": 200, "data": {"taskId": "tk-1", "status": "success", "output": [
        {"url": 7, "type": "video"}, "junk", {"type": "video"},
        {"url": "https://cdn.example/v.mp4", "expireAt": "soon"}]}},
     TaskStatus.SUCCEEDED, lambda s: s.result.video_urls == ["https://cdn.example/v.mp4"]
     and s.result.expires_at is None),
    (HIAPI, {"code": 200, "data": {"taskId": "tk-1", "status": "fail", "error": "flat"}},
     TaskStatus.FAILED, lambda s: "reported the task as failed" in str(s.error)),
], ids=lambda v: v.name if isinstance(v, GatewayCase) else None, indirect=["served"])
async def test_odd_poll_answers_still_read(served: tuple[Any, HttpGateway], answer: Any,
                                           status: TaskStatus, check: Any) -> None:
    fake, provider = served
    poll = {"runware": {"method": "POST"}}.get(provider.name, {"method": "GET"})
    fake.fail_next(200, answer, **poll)
    state = await provider.poll("3f1c2d4e-5a6b-4c7d-8e9f-0a1b2c3d4e5f")
    assert state.status is status and check(state), state


# ---- callbacks and error bodies -----------------------------------------------------------

@pytest.mark.parametrize(("served", "body", "kind"), [
    (ANYFAST, b"{not json", InvalidRequestError),
    (ANYFAST, b"[1, 2]", InvalidRequestError),
    (ANYFAST, b'{"task_id": "t"}', GatewayUnavailableError),
    (RUNWARE, b"{not json", InvalidRequestError),
    (RUNWARE, b"5", InvalidRequestError),
    (RUNWARE, b"{}", InvalidRequestError),
    (MAGNIFIC, b'{"task_id": "t"}', ValueError),
    (MAGNIFIC, b'{"status": "COMPLETED", "generated": []}', ValueError),
    (HIAPI, b'{"taskId": "tk-1"}', ValueError),
    (HIAPI, b'"a string"', ValueError),
], ids=lambda v: v.name if isinstance(v, GatewayCase) else None, indirect=["served"])
async def test_unusable_callback_bodies(served: tuple[Any, HttpGateway], body: bytes,
                                        kind: type[Exception]) -> None:
    _, provider = served
    with pytest.raises(kind):
        provider.parse_callback({}, body)


@pytest.mark.parametrize(("served", "status", "body", "kind", "reason"), [
    (ANYFAST, 400, {"error": "plain words"}, InvalidRequestError, "plain words"),
    (ANYFAST, 409, [1, 2], InvalidRequestError, "Conflict"),  # no words: the status's
    (RUNWARE, 400, {"error": {"code": "invalidWidth", "message": "bad width",
                              "parameter": "width"}}, InvalidRequestError,
     "bad width (parameter: width)"),
    # The first error *object* is read, as in task answers (before the models, a non-object
    # first entry hid it and the reason was the bare "Forbidden"; the kind was the same).
    (RUNWARE, 403, {"errors": ["junk", {"code": "missingApiKey", "message": "no key"}]},
     GatewayError, "no key"),
    (MAGNIFIC, 400, [], InvalidRequestError, "[]"),
    (MAGNIFIC, 422, {"problem": {"message": "Invalid", "invalid_params": [
        {"name": "seed", "reason": "too big"}, {"reason": "unnamed"}]}}, InvalidRequestError,
     "Invalid (seed: too big)"),
    (HIAPI, 400, {"message": "  ", "error_code": "BAD"}, InvalidRequestError, "HTTP 400"),
    (HIAPI, 403, {"code": 403, "message": "no credit left", "error_code": "CREDIT_EXHAUSTED"},
     GatewayError, "no credit left"),
], ids=lambda v: v.name if isinstance(v, GatewayCase) else None, indirect=["served"])
async def test_error_bodies(served: tuple[Any, HttpGateway], status: int, body: Any,
                            kind: type[GatewayError], reason: str) -> None:
    fake, provider = served
    poll = {"runware": {"method": "POST"}}.get(provider.name, {"method": "GET"})
    fake.fail_next(status, body if isinstance(body, dict) else json.dumps(body), **poll)
    with pytest.raises(kind) as info:
        await provider.poll("3f1c2d4e-5a6b-4c7d-8e9f-0a1b2c3d4e5f")
    assert info.value.status == status and info.value.reason == reason
    if provider.name == "runware" and status == 403:
        assert info.value.kind == "auth"
    if provider.name == "hiapi" and status == 403:
        assert info.value.kind == "balance"
