"""HiAPI gateway for Seedance 2.0 Mini (`seedance-2.0-mini`) through its unified task API.

Every model on HiAPI is one `POST /v1/tasks` with model-specific `input`; results are listed in
`output[]` by type with their own expiry. Media reach HiAPI only as URLs (no base64 is
documented), so a local file cannot be sent. Callbacks may be HMAC-signed. The shapes we
accept are the models in bot/providers/hiapi_models.py; what the page documents and what we
infer is in docs/GATEWAYS.md#hiapi.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any, Unpack

import httpx
from pydantic import ValidationError

from bot.config import Settings
from bot.errors import (
    GatewayError,
    GatewayUnavailableError,
    InsufficientBalanceError,
    InvalidInput,
    Problem,
    classify_failure,
)
from bot.models import (
    GenerationRequest,
    MediaKind,
    Mode,
    ProviderResult,
    Resolution,
    SourceKind,
    TaskState,
    TaskStatus,
)
from bot.providers.base import (
    SEEDANCE_RATIOS,
    Capabilities,
    HttpGateway,
    MediaLimits,
    SubmitResult,
    TransportOptions,
    frame_images,
    media_source,
    require_api_key,
    single_model_capabilities,
)
from bot.providers.hiapi_models import CallbackBody, Created, Envelope, Task
from bot.providers.http import HttpTransport, default_error, json_body, rejected_content
from bot.providers.wire import why
from bot.validation import refuse_invalid

log = logging.getLogger(__name__)

NAME = "hiapi"
MODEL = "seedance-2.0-mini"
#: Callbacks signed longer ago than this are refused (replays).
SIGNATURE_MAX_AGE = 300.0

#: Every status spelling the page lists (compared lower-cased).
STATUSES: dict[str, TaskStatus] = {
    "queued": TaskStatus.PENDING,
    "handling": TaskStatus.RUNNING,
    "archiving": TaskStatus.RUNNING,  # still writing the outputs: not terminal
    "success": TaskStatus.SUCCEEDED,
    "fail": TaskStatus.FAILED,
}

CAPABILITIES = Capabilities(
    provider=NAME,
    model=MODEL,
    resolutions=frozenset({Resolution.P480, Resolution.P720}),
    durations=frozenset(range(4, 16)),
    ratios=SEEDANCE_RATIOS,
    # The page makes reference images and reference videos mutually exclusive ("First frame,
    # reference images, and reference videos are mutually exclusive modes"): never both in one
    # request, so no editing (images + a video) either.
    modes=frozenset(
        {Mode.TEXT, Mode.FIRST_FRAME, Mode.FIRST_LAST_FRAME, Mode.REFERENCE, Mode.EXTEND}
    ),
    reference_images_with_videos=False,
    limits=MediaLimits(),  # the defaults are this page's limits
    audio_generation=True,
    web_search=False,
    # No input asks for a last frame; one is read from output[] when HiAPI happens to give it.
    last_frame=False,
    seed=False,
    camera_fixed=False,
    watermark=False,
    webhooks=True,
    callbacks_need_https=True,
    results_per_task=1,
    prompt_max_chars=None,  # the page states no limit
    prompt_required=True,
    accepts={
        MediaKind.IMAGE: frozenset({SourceKind.URL}),
        MediaKind.VIDEO: frozenset({SourceKind.URL}),
        MediaKind.AUDIO: frozenset({SourceKind.URL}),
    },
    typical_seconds=90.0,
)

_BALANCE_WORDS = ("BALANCE", "CREDIT", "QUOTA", "INSUFFICIENT", "PAYMENT")


def _error_from(status: int, body: Envelope, headers: httpx.Headers | None = None
                ) -> GatewayError:
    """Map the envelope of a failure (`code` = HTTP status, `error_code`) to an error kind."""
    message = (body.message or "").strip() or f"HTTP {status}"
    code = body.error_code or None
    if status == 402 or (code and any(w in code.upper() for w in _BALANCE_WORDS)):
        return InsufficientBalanceError(message, provider=NAME, status=status, code=code)
    if 400 <= status < 500 and status not in (401, 403, 404, 429):
        judged = rejected_content(message, code, provider=NAME, status=status)
        if judged:
            return judged
    response = httpx.Response(status, headers=headers)
    return default_error(response, provider=NAME, message=message, code=code)


def parse_error(response: httpx.Response) -> GatewayError:
    return _error_from(response.status_code, Envelope.model_validate(response.json()),
                       response.headers)


def _payload(response: httpx.Response) -> Any:
    """The `data` of a 2xx answer; an answer whose `code` says failure is that failure."""
    try:
        body = Envelope.model_validate(json_body(response, NAME))
    except ValidationError:
        raise GatewayUnavailableError("unexpected answer: not an object", provider=NAME) from None
    if body.failed:
        assert body.code is not None
        raise _error_from(body.code, body, response.headers)
    return body.data


def read_task(data: Any, model: type[Task] = Task) -> Task:
    """The task of a detail answer (or of a callback body); ValueError when there is none."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ValueError(f"task is not an object ({why(exc)})") from None


def task_state(task: Task, *, task_id: str | None = None) -> TaskState:
    """Map a HiAPI task (`data` of the detail answer, or a callback body) to a TaskState."""
    tid = task.taskId or task_id
    if not tid:
        raise ValueError("task without taskId")
    raw = (task.status or "").strip().lower()
    if raw not in STATUSES:
        if not raw:
            raise ValueError("task without status")
        log.warning("hiapi: unknown task status %r, treating it as running", raw)
    status = STATUSES.get(raw, TaskStatus.RUNNING)
    if status is TaskStatus.FAILED:
        err = task.error
        message = (err.message if err else None) or "HiAPI reported the task as failed"
        return TaskState(
            task_id=tid, status=status,
            error=classify_failure(message, (err.code if err else None) or None, provider=NAME),
        )
    if status is not TaskStatus.SUCCEEDED:
        return TaskState(task_id=tid, status=status)
    outputs = [o for o in task.output if o.url]
    videos = [o for o in outputs if o.kind == "video"]
    frames = [o.url for o in outputs if o.kind == "last_frame"]
    if not videos:
        return TaskState(
            task_id=tid, status=TaskStatus.FAILED,
            error=classify_failure("HiAPI reported success but listed no video", None,
                                   provider=NAME),
        )
    expiries = [o.expireAt for o in videos if o.expireAt is not None]
    result = ProviderResult(
        video_urls=[o.url for o in videos if o.url], last_frame_url=frames[-1] if frames else None,
        expires_at=min(expiries) if expiries else None,
    )
    return TaskState(task_id=tid, status=status, progress=100.0, result=result)


def _header(headers: Mapping[str, str], name: str) -> str | None:
    """A header by name, whatever the mapping's case handling."""
    value = headers.get(name)
    if value is not None:
        return value
    lowered = name.lower()
    for key, val in headers.items():
        if key.lower() == lowered:
            return val
    return None


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """hex(HMAC_SHA256(secret, timestamp + "." + body)), as HiAPI signs callbacks."""
    return hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


class HiApiProvider(HttpGateway):
    """Seedance 2.0 Mini through HiAPI's unified async task API."""

    name = NAME

    def __init__(self, api_key: str, base_url: str, *, callback_secret: str | None = None,
                 clock: Callable[[], float] = time.time,
                 **transport: Unpack[TransportOptions]) -> None:
        self.callback_secret = callback_secret
        self.clock = clock
        super().__init__(HttpTransport(
            NAME, base_url, {"Authorization": f"Bearer {api_key}", "Accept": "application/json"},
            parse_error, secrets=tuple(s for s in (api_key, callback_secret) if s), **transport,
        ))

    def capabilities(self, model: str | None = None) -> Capabilities:
        return single_model_capabilities(CAPABILITIES, model, lambda _: InvalidInput(
            [Problem("model", f"HiAPI offers only {MODEL} here; leave --model out or use it")]
        ))

    def build_body(
        self, request: GenerationRequest, *, callback_url: str | None = None
    ) -> dict[str, Any]:
        """The create body of a validated request, field by field as the page lists them."""
        caps = self.capabilities(request.model)
        inp: dict[str, Any] = {
            "prompt": request.prompt,
            "resolution": request.resolution.value,
            "duration": request.duration,
            "aspect_ratio": request.ratio.value,
            "generate_audio": request.audio,
        }
        first, last = frame_images(request)
        if first is not None:
            inp["first_frame_url"] = media_source(first, caps)
        if last is not None:
            inp["last_frame_url"] = media_source(last, caps)
        frames = {id(ref) for ref in (first, last) if ref is not None}
        for kind, key in (
            (MediaKind.IMAGE, "reference_image_urls"),
            (MediaKind.VIDEO, "reference_video_urls"),
            (MediaKind.AUDIO, "reference_audio_urls"),
        ):
            refs = [r for r in request.of_kind(kind) if id(r) not in frames]
            if refs:
                inp[key] = [media_source(r, caps) for r in refs]
        body: dict[str, Any] = {"model": caps.model, "input": inp}
        if callback_url:
            body["callback"] = {"url": callback_url, "when": "final"}
        return body

    async def submit(
        self,
        request: GenerationRequest,
        *,
        idempotency_key: str,
        callback_url: str | None = None,
    ) -> SubmitResult:
        """Create the task, sent once: HiAPI has no idempotency key.

        Refuses (InvalidInput) what validation refuses before anything is sent, local files
        above all: HiAPI takes media only as URLs.
        """
        refuse_invalid(request, self.capabilities(request.model))
        body = self.build_body(request, callback_url=callback_url)
        response = await self.http.create("/v1/tasks", json=body, idempotent=False)
        data = _payload(response)
        task_id = Created.model_validate(data).taskId if isinstance(data, dict) else None
        if not task_id:
            # The 2xx status says the gateway took the work: never resubmit this create.
            raise GatewayUnavailableError("create answer without data.taskId", provider=NAME,
                                          status=response.status_code)
        return SubmitResult(
            task_id=task_id, state=TaskState(task_id=task_id, status=TaskStatus.PENDING)
        )

    async def poll(self, task_id: str) -> TaskState:
        response = await self.http.request("GET", f"/v1/tasks/{task_id}", idempotent=True)
        try:
            return task_state(read_task(_payload(response)), task_id=task_id)
        except ValueError as exc:
            raise GatewayUnavailableError(f"unexpected task answer: {exc}", provider=NAME) from None

    def parse_callback(self, headers: Mapping[str, str], body: bytes) -> TaskState:
        """The callback body is exactly the detail answer's `data` (a wrapped one is accepted)."""
        return task_state(read_task(json.loads(body), CallbackBody))

    def verify_callback(self, headers: Mapping[str, str], body: bytes) -> bool:
        """Check HiAPI's HMAC over `timestamp.body` when a signing secret is configured.

        Without a secret the unguessable per-job callback URL is the authentication.
        """
        if not self.callback_secret:
            return True
        timestamp = _header(headers, "X-HiAPI-Timestamp")
        signature = _header(headers, "X-HiAPI-Signature")
        if not timestamp or not signature:
            return False
        try:
            sent = float(timestamp)
        except ValueError:
            return False
        if sent > 1e12:  # milliseconds
            sent /= 1000.0
        if abs(self.clock() - sent) > SIGNATURE_MAX_AGE:
            return False
        expected = sign(self.callback_secret, timestamp, body)
        return hmac.compare_digest(expected, signature.strip().lower())


def build(settings: Settings, **transport: Unpack[TransportOptions]) -> HiApiProvider:
    key = require_api_key(settings, NAME, "in your HiAPI console")
    return HiApiProvider(key, settings.base_url(NAME),
                         callback_secret=settings.hiapi_callback_secret, **transport)
