"""Runware: Seedance 2.0 Mini (`bytedance:seedance@2.0-mini`) over Runware's task-array API.

Every call is a POST of a JSON array to `{base}/v1`. The `taskUUID` we send is derived from the
job's idempotency key, so repeating a create (even after a read timeout) names the same task
instead of starting a second, billed one. Results may come in several items (numberResults),
in `data`, in `errors`, or both: the shapes we accept are the models in
bot/providers/runware_models.py. See docs/GATEWAYS.md#runware.
"""

from __future__ import annotations

import hashlib
import logging
import time
import uuid
from collections.abc import Mapping
from typing import Any, Unpack

import httpx
from pydantic import ValidationError

from bot.config import Settings
from bot.errors import (
    AuthenticationError,
    ContentRejectedError,
    GatewayError,
    GatewayUnavailableError,
    InsufficientBalanceError,
    InvalidRequestError,
    classify_failure,
)
from bot.models import (
    GenerationRequest,
    MediaKind,
    ProviderResult,
    Ratio,
    Resolution,
    SafetyCheck,
    SourceKind,
    TaskState,
    TaskStatus,
)
from bot.providers.base import (
    Capabilities,
    HttpGateway,
    SubmitResult,
    TransportOptions,
    frame_images,
    media_source,
    require_api_key,
    single_model_capabilities,
)
from bot.providers.http import HttpTransport, default_error, json_body, rejected_content
from bot.providers.runware_models import Answer, ErrorBody, Item

log = logging.getLogger(__name__)

NAME = "runware"
MODEL = "bytedance:seedance@2.0-mini"
SAFETY_MODES = ("none", "fast", "full")  # off, key frames, all frames
#: Our safety setting in Runware's words: `fast` checks key frames, `full` every frame
#: (Runware's content-safety page); the verdict comes back as `NSFWContent: true`.
SAFETY_FIELD = {SafetyCheck.NONE: "none", SafetyCheck.KEY_FRAMES: "fast",
                SafetyCheck.ALL_FRAMES: "full"}
#: The page's outputQuality: 20–99, 95 when not sent.
QUALITY = (20, 99, 95)

CAPS = Capabilities(
    provider=NAME,
    model=MODEL,
    resolutions=frozenset({Resolution.P480, Resolution.P720}),
    audio_generation=True,
    web_search=False,  # not on Runware's page
    last_frame=False,  # not on Runware's page
    seed=False,  # no seed field documented (each result gets its own, reported back)
    camera_fixed=False,
    watermark=False,
    webhooks=True,
    results_per_task=4,
    safety_modes=frozenset(SafetyCheck),
    output_quality=QUALITY,
    prompt_max_chars=10_000,
    prompt_required=True,
    accepts={
        MediaKind.IMAGE: frozenset({SourceKind.URL, SourceKind.DATA_URI}),
        MediaKind.VIDEO: frozenset({SourceKind.URL}),
        MediaKind.AUDIO: frozenset({SourceKind.URL}),
    },
    typical_seconds=120.0,
)

_BALANCE_CODES = ("insufficientcredits", "insufficientbalance", "notenoughcredits")
_AUTH_CODES = ("invalidapikey", "missingapikey", "unauthorized")
_RUNNING = frozenset({"processing", "pending", "queued", "running", "in_progress", "started"})
_SUCCESS = frozenset({"success", "succeeded", "completed", "done"})
_ERROR = frozenset({"error", "failed", "failure"})


def task_uuid(idempotency_key: str) -> str:
    """The job's taskUUID: the key itself when it is a UUID4, else a UUID4-shaped digest of it.

    The page asks for a v4 UUID, so a key that is not one is hashed into one deterministically
    (same key, same taskUUID) rather than turned into a v5 the gateway may refuse.
    """
    try:
        parsed = uuid.UUID(idempotency_key)
        if parsed.version == 4:
            return str(parsed)
    except ValueError:
        pass
    digest = hashlib.sha256(f"seedance-bot/runware/{idempotency_key}".encode()).digest()
    return str(uuid.UUID(bytes=digest[:16], version=4))


def parse_error(response: httpx.Response) -> GatewayError:
    """`{"errors":[{"code","message","parameter","taskUUID"}]}` → our error kinds."""
    try:
        body: Any = response.json()
    except ValueError:
        body = response.text[:300]
    if isinstance(body, dict):
        code, message = ErrorBody.model_validate(body).first()
    else:
        code, message = None, (body.strip() if isinstance(body, str) else "")
    message = message or response.reason_phrase or f"HTTP {response.status_code}"
    status = response.status_code
    low = (code or "").lower()
    if status == 402 or any(c in low for c in _BALANCE_CODES):
        return InsufficientBalanceError(message, provider=NAME, status=status, code=code)
    if any(c in low for c in _AUTH_CODES):
        return AuthenticationError(message, provider=NAME, status=status, code=code)
    if status == 400 and code:
        judged = rejected_content(message, code, provider=NAME, status=status)
        if judged:
            return judged
    return default_error(response, provider=NAME, message=message, code=code)


class RunwareProvider(HttpGateway):
    """Runware's `videoInference` (async delivery) and `getResponse` tasks."""

    name = NAME
    #: The key is the taskUUID, so a repeated create is the same task (safe to resubmit).
    idempotent_submit = True

    def __init__(self, api_key: str, base_url: str, *, safety_mode: str = "fast",
                 number_results: int = 1, ttl: int | None = None,
                 **transport: Unpack[TransportOptions]) -> None:
        if safety_mode not in SAFETY_MODES:
            raise ValueError(f"safety mode must be one of {', '.join(SAFETY_MODES)}")
        if not 1 <= number_results <= CAPS.results_per_task:
            raise ValueError(f"number_results must be 1-{CAPS.results_per_task}")
        if ttl is not None and ttl < 60:
            raise ValueError("ttl must be at least 60 seconds")
        self.safety_mode = safety_mode
        self.number_results = number_results
        self.ttl = ttl
        super().__init__(HttpTransport(
            NAME, base_url, {"Authorization": f"Bearer {api_key}"}, parse_error,
            secrets=(api_key,), **transport,
        ))
        # Results expected per task, to tell "one of three finished" from "done": set at
        # create, and by the engine for every task it follows (`expect_results`), so the
        # process that follows a task after a restart or a takeover knows it too.
        self._expected: dict[str, int] = {}
        # Distinct webhook items per task, so the n-th of n results completes the task.
        self._delivered: dict[str, dict[str, Item]] = {}

    def _results_of(self, request: GenerationRequest) -> int:
        """Videos asked of one task: the request's own count, else this account's default."""
        return request.results if "results" in request.model_fields_set else self.number_results

    def capabilities(self, model: str | None = None) -> Capabilities:
        return single_model_capabilities(
            CAPS, model, lambda m: ValueError(f"runware has no model {m!r}; it runs {MODEL}")
        )

    # ---- create ---------------------------------------------------------------------------
    def build_task(
        self, request: GenerationRequest, *, idempotency_key: str, callback_url: str | None = None
    ) -> dict[str, Any]:
        """The `videoInference` task object as the page documents it, field by field."""
        caps = self.capabilities(request.model)
        task: dict[str, Any] = {
            "taskType": "videoInference",
            "taskUUID": task_uuid(idempotency_key),
            "model": MODEL,
            "deliveryMethod": "async",
            "positivePrompt": request.prompt,
            "duration": request.duration,
        }
        first, last = frame_images(request)
        frames = [(ref, at) for ref, at in ((first, "first"), (last, "last")) if ref is not None]
        inputs: dict[str, Any] = {}
        if frames:
            inputs["frameImages"] = [{"image": media_source(ref, caps), "frame": at}
                                     for ref, at in frames]
        else:
            for key, refs in (("referenceImages", request.images),
                              ("referenceVideos", request.videos),
                              ("referenceAudios", request.audios)):
                if refs:
                    inputs[key] = [media_source(ref, caps) for ref in refs]
        if frames and request.ratio is Ratio.ADAPTIVE:
            # The page: `resolution` with input frames follows the input's aspect ratio.
            task["resolution"] = request.resolution.value
        else:
            task["width"], task["height"] = request.output_size()
        task["settings"] = {"audio": request.audio}
        task["numberResults"] = self._results_of(request)
        task["includeCost"] = True
        # MP4 always: the page lets a default be WEBM or MOV one day, and we post MP4s.
        task["outputFormat"] = "MP4"
        if request.output_quality is not None:
            task["outputQuality"] = min(max(request.output_quality, QUALITY[0]), QUALITY[1])
        mode = SAFETY_FIELD[request.safety] if request.safety else self.safety_mode
        task["safety"] = {"checkContent": mode != "none", "mode": mode}
        if self.ttl is not None:
            task["ttl"] = self.ttl
        if inputs:
            task["inputs"] = inputs
        if callback_url:
            task["webhookURL"] = callback_url
        return task

    async def submit(
        self,
        request: GenerationRequest,
        *,
        idempotency_key: str,
        callback_url: str | None = None,
    ) -> SubmitResult:
        """Create the task, sent once. Safe to repeat (same taskUUID), so even a lost answer
        leaves the error retryable and the engine sends it again."""
        task = self.build_task(request, idempotency_key=idempotency_key,
                               callback_url=callback_url)
        uid = task["taskUUID"]
        self._expected[uid] = task["numberResults"]
        response = await self.http.create("/v1", json=[task], idempotent=True)
        state = self._read(uid, self._answer(json_body(response, NAME)), creating=True)
        return SubmitResult(task_id=uid, state=state)

    def expect_results(self, task_id: str, request: GenerationRequest) -> None:
        """The task was made for `request` (the job's row, bot/engine/follow.py)."""
        self._expected[task_id] = self._results_of(request)

    # ---- poll -----------------------------------------------------------------------------
    async def poll(self, task_id: str) -> TaskState:
        response = await self.http.request(
            "POST", "/v1", json=[{"taskType": "getResponse", "taskUUID": task_id}],
            idempotent=True,
        )
        state = self._read(task_id, self._answer(json_body(response, NAME)))
        if state.status is TaskStatus.RUNNING and state.retry_after is None:
            hint = response.headers.get("retry-after")
            if hint and hint.replace(".", "", 1).isdigit():
                state.retry_after = float(hint)
        return state

    @staticmethod
    def _answer(raw: Any) -> Answer:
        try:
            return Answer.model_validate(raw)
        except ValidationError:
            raise GatewayUnavailableError("answer is not a JSON object", provider=NAME) from None

    def _read(self, task_id: str, answer: Answer, *, creating: bool = False) -> TaskState:
        """Fold `data` items and `errors` for one taskUUID into one TaskState."""
        mine = [i for i in answer.data if i.taskUUID in (None, task_id)]
        failed = [e for e in answer.errors if e.taskUUID in (None, task_id)]
        failed += [i for i in mine if i.state in _ERROR]
        for item in mine:
            if item.state in _SUCCESS and not item.videoURL and item not in failed:
                failed.append(Item(code="noVideoURL",
                                   message="the task reported success without a video URL"))
        done = [i for i in mine if i.videoURL and i not in failed]
        running = [i for i in mine if i.state in _RUNNING]

        if creating:
            if failed and not done:
                raise self._create_error(failed[0])
            return TaskState(task_id=task_id, status=TaskStatus.PENDING)

        expected = self._expected.get(task_id)
        progress = max((i.progress for i in running if i.progress is not None), default=None)
        settled = len(done) + len(failed)
        finished = (settled >= expected) if expected else (bool(done or failed) and not running)
        if done and finished:
            return TaskState(task_id=task_id, status=TaskStatus.SUCCEEDED, progress=100.0,
                             result=self._result(done))
        if failed and finished:
            return TaskState(task_id=task_id, status=TaskStatus.FAILED, progress=progress,
                             error=self._task_error(failed[0]))
        if expected and settled and progress is None:
            progress = 100.0 * settled / expected
        status = TaskStatus.RUNNING if (running or done or progress) else TaskStatus.PENDING
        partial = self._result(done) if done else None
        return TaskState(task_id=task_id, status=status, progress=progress, result=partial)

    def _result(self, done: list[Item]) -> ProviderResult:
        costs = [i.cost for i in done if i.cost is not None]
        seed = done[0].seed
        made = [i for i in done if i.videoURL]
        return ProviderResult(
            video_urls=[i.videoURL for i in made if i.videoURL],
            # The safety check's verdict (`safety.checkContent`): the engine holds or refuses
            # these instead of posting them (bot/engine/sets.py).
            flagged=[n for n, i in enumerate(made) if i.NSFWContent],
            seed=int(seed) if seed is not None else None,
            cost=sum(costs) if costs else None,
            expires_at=time.time() + self.ttl if self.ttl else None,
        )

    @staticmethod
    def _task_error(item: Item) -> GatewayError:
        code, message = item.fields()
        return classify_failure(message, code, provider=NAME)

    @staticmethod
    def _create_error(item: Item) -> GatewayError:
        """An `errors` entry inside a 2xx create answer: the task was not accepted."""
        code, message = item.fields()
        judged = classify_failure(message, code, provider=NAME)
        if isinstance(judged, ContentRejectedError):
            return judged
        return InvalidRequestError(message, provider=NAME, code=code)

    # ---- the rest of the protocol (cancel, verify_callback, aclose: HttpGateway's) -----------
    def parse_callback(self, headers: Mapping[str, str], body: bytes) -> TaskState:
        """One webhook call: the flat result object of ONE result (no `data` wrapper).

        With numberResults > 1 each result arrives in its own call; until all are in, the
        state is RUNNING with the results so far. Deduplication is the receiver's job.
        """
        try:
            answer = Answer.model_validate_json(body)
        except ValidationError as exc:
            if any(e["type"] == "json_invalid" for e in exc.errors()):
                raise InvalidRequestError("webhook body is not JSON", provider=NAME) from None
            raise InvalidRequestError("webhook body is not an object", provider=NAME) from None
        uid = answer.task
        if not uid:
            raise InvalidRequestError("webhook body names no taskUUID", provider=NAME)
        items = [*answer.data, *(e.model_copy(update={"status": "error"}) for e in answer.errors)]
        seen = self._delivered.setdefault(uid, {})
        for item in items:
            seen[item.videoUUID or item.videoURL or item.model_dump_json()] = item
        return self._read(uid, Answer(data=list(seen.values())))


def build(settings: Settings, **transport: Unpack[TransportOptions]) -> RunwareProvider:
    key = require_api_key(settings, NAME, "at https://my.runware.ai")
    return RunwareProvider(key, settings.base_url(NAME), **transport)
