"""Magnific (Freepik) gateway for Seedance 2.0 Mini (`seedance-2-mini`).

Magnific is the narrowest gateway: text, first frame and first + last frame only, 5 or 10 s,
no audio at all, and the resolution is chosen by the create path, not the body. Create and poll
answer the same task object; no failure reason is documented, so a failure says so plainly.
The shapes we accept are the models in bot/providers/magnific_models.py; what the page
documents and what we infer is in docs/GATEWAYS.md#magnific.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping
from typing import Any, Unpack

import httpx
from pydantic import ValidationError

from bot.config import Settings
from bot.errors import (
    GatewayError,
    GatewayUnavailableError,
    InvalidInput,
    Problem,
    TaskFailedError,
    classify_failure,
)
from bot.models import (
    GenerationRequest,
    MediaKind,
    Mode,
    ProviderResult,
    Ratio,
    Reference,
    Resolution,
    SourceKind,
    TaskState,
    TaskStatus,
)
from bot.providers.base import (
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
from bot.providers.http import HttpTransport, default_error, json_body, rejected_content
from bot.providers.magnific_models import ErrorBody, TaskList, TaskObject
from bot.providers.wire import why
from bot.validation import refuse_invalid

log = logging.getLogger(__name__)

NAME = "magnific"
MODEL = "seedance-2-mini"
CREATE_PATH = "/v1/ai/video/seedance-2-mini-{resolution}"  # resolution is the path
TASK_PATH = "/v1/ai/video/seedance-2-mini/{task_id}"
LIST_PATH = "/v1/ai/video/seedance-2-mini"  # every task of the model, any resolution
RESULT_LIFETIME = 24 * 3600.0  # "a URL valid for 24 hours"

#: Our ratios to the page's seven aspect names (`adaptive` has none).
ASPECT_NAMES: dict[Ratio, str] = {
    Ratio.R21_9: "film_horizontal_21_9",
    Ratio.R16_9: "widescreen_16_9",
    Ratio.R4_3: "classic_4_3",
    Ratio.R1_1: "square_1_1",
    Ratio.R3_4: "traditional_3_4",
    Ratio.R9_16: "social_story_9_16",
    Ratio.R9_21: "film_vertical_9_21",
}

#: Every status spelling the gateway uses (compared upper-cased).
STATUSES: dict[str, TaskStatus] = {
    "CREATED": TaskStatus.PENDING,
    "IN_PROGRESS": TaskStatus.RUNNING,
    "COMPLETED": TaskStatus.SUCCEEDED,
    "FAILED": TaskStatus.FAILED,
}

NO_REASON = (
    "Magnific reported the task as FAILED and gives no reason (its content safety checker, "
    "always on, may have refused it); try another prompt or image, or another provider"
)

CAPABILITIES = Capabilities(
    provider=NAME,
    model=MODEL,
    resolutions=frozenset({Resolution.P480, Resolution.P720}),
    durations=frozenset({5, 10}),
    ratios=frozenset(ASPECT_NAMES),
    modes=frozenset({Mode.TEXT, Mode.FIRST_FRAME, Mode.FIRST_LAST_FRAME}),
    # Only a first and a last frame; the page states no image limits of its own.
    limits=MediaLimits(max_images=2, max_videos=0, max_audios=0),
    audio_generation=False,
    web_search=False,
    last_frame=False,
    seed=True,
    camera_fixed=True,
    watermark=False,
    webhooks=True,
    results_per_task=1,
    task_list=True,
    prompt_max_chars=2000,
    prompt_required=True,
    accepts={
        MediaKind.IMAGE: frozenset({SourceKind.URL, SourceKind.DATA_URI}),
        MediaKind.VIDEO: frozenset(),
        MediaKind.AUDIO: frozenset(),
    },
    typical_seconds=60.0,
)


def parse_error(response: httpx.Response) -> GatewayError:
    """Read `{"message"}`, `{"problem":{…}}` or the unwrapped problem body into an error kind."""
    message, code = ErrorBody.model_validate(response.json()).text()
    status = response.status_code
    if 400 <= status < 500 and status not in (401, 402, 403, 404, 429):
        judged = rejected_content(message, code, provider=NAME, status=status)
        if judged:
            return judged
    return default_error(response, provider=NAME, message=message, code=code)


def read_task(body: Any) -> TaskObject:
    """The task object of an answer or a webhook body; ValueError when there is none."""
    try:
        return TaskObject.model_validate(body)
    except ValidationError as exc:
        raise ValueError(f"no task object with a status ({why(exc)})") from None


def task_state(task: TaskObject, *, task_id: str | None = None) -> TaskState:
    """Map a Magnific task object to a TaskState (no progress is documented)."""
    tid = task.task_id or task_id
    if not tid:
        raise ValueError("task object without task_id")
    raw = (task.status or "").strip().upper()
    status = STATUSES.get(raw)
    if status is None:
        log.warning("magnific: unknown task status %r, treating it as running", raw)
        status = TaskStatus.RUNNING
    urls = task.urls
    if status is TaskStatus.SUCCEEDED and not urls:
        return TaskState(
            task_id=tid, status=TaskStatus.FAILED,
            error=classify_failure(
                "Magnific marked the task COMPLETED but listed no video", None, provider=NAME
            ),
        )
    if status is TaskStatus.SUCCEEDED:
        # Seen at or after completion, so this is an upper bound on the URL's life.
        result = ProviderResult(video_urls=urls, expires_at=time.time() + RESULT_LIFETIME)
        return TaskState(task_id=tid, status=status, progress=100.0, result=result)
    if status is TaskStatus.FAILED:
        return TaskState(
            # Built directly: the words "safety checker" must not make an unknown cause
            # a certain moderation verdict.
            task_id=tid, status=status, error=TaskFailedError(NO_REASON, provider=NAME)
        )
    return TaskState(task_id=tid, status=status)


class MagnificProvider(HttpGateway):
    """Seedance 2.0 Mini through Magnific's per-resolution endpoints."""

    name = NAME

    def __init__(self, api_key: str, base_url: str, **transport: Unpack[TransportOptions]) -> None:
        super().__init__(HttpTransport(
            NAME, base_url, {"x-magnific-api-key": api_key, "Accept": "application/json"},
            parse_error, secrets=(api_key,), **transport,
        ))

    def capabilities(self, model: str | None = None) -> Capabilities:
        return single_model_capabilities(CAPABILITIES, model, lambda _: InvalidInput(
            [Problem("model", f"Magnific offers only {MODEL}; leave --model out or use it")]
        ))

    def build_body(
        self, request: GenerationRequest, *, callback_url: str | None = None
    ) -> dict[str, Any]:
        """The create body of a validated request, field by field as the page lists them."""
        caps = self.capabilities(request.model)
        assert request.ratio in ASPECT_NAMES, "validation refuses a ratio Magnific lacks"
        body: dict[str, Any] = {"prompt": request.prompt}
        first, last = frame_images(request)
        if first is not None:
            body["image"] = _image_value(first, caps)
        if last is not None:
            body["image_end"] = _image_value(last, caps)
        body["duration"] = request.duration
        body["aspect_ratio"] = ASPECT_NAMES[request.ratio]
        body["camera_fixed"] = request.camera_fixed
        body["seed"] = -1 if request.seed is None else request.seed
        body["enable_safety_checker"] = True
        if callback_url:
            body["webhook_url"] = callback_url
        return body

    async def submit(
        self,
        request: GenerationRequest,
        *,
        idempotency_key: str,
        callback_url: str | None = None,
    ) -> SubmitResult:
        """Create the task, sent once: Magnific has no idempotency key.

        Refuses (InvalidInput) what validation refuses before anything is sent: the resolution
        is the path and the aspect names are a closed list, so the body cannot carry anything
        outside the capability table.
        """
        refuse_invalid(request, self.capabilities(request.model))
        body = self.build_body(request, callback_url=callback_url)
        path = CREATE_PATH.format(resolution=request.resolution.value)
        response = await self.http.create(path, json=body, idempotent=False)
        try:
            state = task_state(read_task(json_body(response, NAME)))
        except ValueError as exc:
            # The 2xx status says the gateway took the work: never resubmit this create.
            raise GatewayUnavailableError(
                f"unexpected create answer: {exc}", provider=NAME, status=response.status_code
            ) from None
        return SubmitResult(task_id=state.task_id, state=state)

    async def poll(self, task_id: str) -> TaskState:
        response = await self.http.request(
            "GET", TASK_PATH.format(task_id=task_id), idempotent=True
        )
        try:
            return task_state(read_task(json_body(response, NAME)), task_id=task_id)
        except ValueError as exc:
            raise GatewayUnavailableError(f"unexpected task answer: {exc}", provider=NAME) from None

    async def list_tasks(self) -> list[TaskState]:
        """The tasks the list endpoint shows (its first page). Magnific has no idempotency
        key, so this is how a create whose answer was lost is found (bot/engine/recovery.py)."""
        return [task_state(task) for task in (await self._list()).tasks()]

    async def list_task_ids(self) -> list[str]:
        return (await self._list()).ids()

    async def _list(self) -> TaskList:
        response = await self.http.request("GET", LIST_PATH, idempotent=True)
        try:
            return TaskList.model_validate(json_body(response, NAME))
        except ValidationError:
            raise GatewayUnavailableError("unexpected task list answer", provider=NAME) from None

    def parse_callback(self, headers: Mapping[str, str], body: bytes) -> TaskState:
        """The webhook body is the task object without the `data` wrapper (both accepted)."""
        return task_state(read_task(json.loads(body)))


def _image_value(ref: Reference, caps: Capabilities) -> str:
    """A URL as is; a local file as a raw base64 string.

    The page says "as a public URL or Base64 string" / "a Base64-encoded string", not a data
    URI, so the `data:<mime>;base64,` prefix that media_source() adds is stripped.
    """
    value = media_source(ref, caps)
    if value.startswith("data:"):
        return value.split(",", 1)[1]
    return value


def build(settings: Settings, **transport: Unpack[TransportOptions]) -> MagnificProvider:
    key = require_api_key(settings, NAME, "in your Magnific dashboard")
    return MagnificProvider(key, settings.base_url(NAME), **transport)
