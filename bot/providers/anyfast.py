"""Anyfast: Seedance 2.0 Mini (`seedance-2.0-mini`) and Seedance 2.0 (`seedance`).

Anyfast wraps ByteDance's Ark API behind an OpenAI-style task gateway, so two error shapes
reach us (its own `{"code","message","data"}` and Ark's `{"error":{...}}`), and the poll answer
nests the upstream task inside Anyfast's own (`data.data`); the shapes we accept are the models
in bot/providers/anyfast_models.py. See docs/GATEWAYS.md#anyfast.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any, Unpack

import httpx
from pydantic import ValidationError

from bot.config import Settings
from bot.errors import (
    ContentRejectedError,
    GatewayError,
    GatewayUnavailableError,
    InsufficientBalanceError,
    InvalidRequestError,
    TaskFailedError,
    TaskNotFoundError,
    classify_failure,
)
from bot.models import (
    GenerationRequest,
    MediaKind,
    ProviderResult,
    Resolution,
    Role,
    SourceKind,
    TaskState,
    TaskStatus,
)
from bot.providers.anyfast_models import (
    AssetAnswer,
    CreateAnswer,
    PollAnswer,
    Task,
    Upstream,
    error_fields,
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
)
from bot.providers.http import HttpTransport, default_error, json_body, rejected_content

log = logging.getLogger(__name__)

NAME = "anyfast"
MINI = "seedance-2.0-mini"
FULL = "seedance"
MODELS = (MINI, FULL)

#: Result URLs live 12 h (one page says 24 h, another 12 h: the shorter is assumed).
RESULT_TTL = 12 * 3600.0

#: Codes that mean "out of balance" whatever the HTTP status (403 on this gateway, not 402).
BALANCE_CODES = frozenset({"insufficient_user_quota", "accountoverdueerror", "insufficient_quota"})

_PENDING = frozenset({"", "NOT_START", "SUBMITTED", "QUEUED", "PENDING"})
_RUNNING = frozenset({"IN_PROGRESS", "RUNNING", "PROCESSING"})
# UNKNOWN is the gateway losing sight of the upstream task for a moment: keep polling.
_KEEP_POLLING = frozenset({"UNKNOWN"})
_SUCCEEDED = frozenset({"SUCCESS", "SUCCEEDED"})
_FAILED = frozenset({"FAILURE", "FAILED", "CANCELLED", "CANCELED", "EXPIRED"})

_ACCEPTS = {
    MediaKind.IMAGE: frozenset({SourceKind.URL, SourceKind.DATA_URI, SourceKind.ASSET}),
    MediaKind.VIDEO: frozenset({SourceKind.URL, SourceKind.ASSET}),  # no base64 for videos
    MediaKind.AUDIO: frozenset({SourceKind.URL, SourceKind.DATA_URI, SourceKind.ASSET}),
}

_CAPS = {
    MINI: Capabilities(
        provider=NAME,
        model=MINI,
        models=MODELS,
        resolutions=frozenset({Resolution.P480, Resolution.P720}),
        seed=False,  # not a documented request field (the upstream result carries one)
        camera_fixed=False,
        webhooks=False,
        # "500 Chinese chars / 1000 English words" cannot be said in characters; the gateway's
        # own 400 reaches the user when a prompt is too long.
        prompt_max_chars=None,
        accepts=_ACCEPTS,
        typical_seconds=150.0,
    ),
    FULL: Capabilities(
        provider=NAME,
        model=FULL,
        models=MODELS,
        resolutions=frozenset(Resolution),
        limits=MediaLimits(min_reference_images=1),
        assets=True,  # the asset API is documented for Seedance 2.0 (its seed page)
        seed=False,
        camera_fixed=False,
        webhooks=False,
        prompt_max_chars=None,
        accepts=_ACCEPTS,
        typical_seconds=180.0,
    ),
}

_ROLE_BY_KIND = {
    MediaKind.IMAGE: Role.REFERENCE_IMAGE,
    MediaKind.VIDEO: Role.REFERENCE_VIDEO,
    MediaKind.AUDIO: Role.REFERENCE_AUDIO,
}
_ITEM_TYPE = {MediaKind.IMAGE: "image_url", MediaKind.VIDEO: "video_url",
              MediaKind.AUDIO: "audio_url"}
_ASSET_TYPE = {MediaKind.IMAGE: "Image", MediaKind.VIDEO: "Video", MediaKind.AUDIO: "Audio"}
_KIND_ORDER = {MediaKind.IMAGE: 0, MediaKind.VIDEO: 1, MediaKind.AUDIO: 2}


def parse_error(response: httpx.Response) -> GatewayError:
    """Read both error shapes Anyfast answers with and map them to our error kinds."""
    code, message = error_fields(_safe_json(response))
    message = message or response.reason_phrase or f"HTTP {response.status_code}"
    status = response.status_code
    if (code or "").lower() in BALANCE_CODES or status == 402:
        return InsufficientBalanceError(message, provider=NAME, status=status, code=code)
    if status == 400 and code:
        judged = rejected_content(message, code, provider=NAME, status=status)
        if judged:
            return judged
    return default_error(response, provider=NAME, message=message, code=code)


def _caps_of(model: str) -> Capabilities:
    if model not in _CAPS:
        raise ValueError(f"anyfast has no model {model!r}; choose {' or '.join(MODELS)}")
    return _CAPS[model]


def _safe_json(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return response.text[:300]


class AnyfastProvider(HttpGateway):
    """Anyfast's `/v1/video/generations` task API, plus its asset API for `asset://` ids."""

    name = NAME

    def __init__(self, api_key: str, base_url: str, *, model: str | None = None,
                 **transport: Unpack[TransportOptions]) -> None:
        self._model = _caps_of(MINI if model is None else model).model
        super().__init__(HttpTransport(
            NAME, base_url, {"Authorization": f"Bearer {api_key}"}, parse_error,
            secrets=(api_key,), **transport,
        ))

    def capabilities(self, model: str | None = None) -> Capabilities:
        return _caps_of(model or self._model)

    # ---- create ---------------------------------------------------------------------------
    def build_body(self, request: GenerationRequest) -> dict[str, Any]:
        """The create body exactly as the seed pages document it, field by field."""
        model = request.model or self._model
        caps = self.capabilities(model)
        content: list[dict[str, Any]] = []
        if request.prompt.strip():
            content.append({"type": "text", "text": request.prompt})
        # Strict order text → image → video → audio; validation already ordered them, and a
        # stable sort keeps the user's order within each kind.
        refs = sorted(request.references, key=lambda r: _KIND_ORDER[r.kind])
        # A request built without roles gets the ones its mode implies.
        first, last = frame_images(request)
        implied = {id(ref): role for ref, role in ((first, Role.FIRST_FRAME),
                                                   (last, Role.LAST_FRAME)) if ref is not None}
        for ref in refs:
            kind = _ITEM_TYPE[ref.kind]
            role = ref.role or implied.get(id(ref)) or _ROLE_BY_KIND[ref.kind]
            content.append(
                {"type": kind, kind: {"url": media_source(ref, caps)}, "role": role.value}
            )
        body: dict[str, Any] = {
            "model": model,
            "content": content,
            "generate_audio": request.audio,
            "resolution": request.resolution.value,
            "ratio": request.ratio.value,
            "duration": request.duration,
            "watermark": request.watermark,
        }
        if request.web_search:
            body["tools"] = [{"type": "web_search"}]
        if request.return_last_frame:
            body["return_last_frame"] = True
        return body

    async def submit(
        self,
        request: GenerationRequest,
        *,
        idempotency_key: str,
        callback_url: str | None = None,
    ) -> SubmitResult:
        """Create the task, sent once. Anyfast has no idempotency key, so a create that timed
        out after sending is not retryable (it may already be running and billed)."""
        body = self.build_body(request)
        response = await self.http.create("/v1/video/generations", json=body, idempotent=False)
        raw = json_body(response, NAME)
        try:
            answer = CreateAnswer.model_validate(raw)
        except ValidationError:
            # The 2xx status says the gateway took the work: never resubmit this create.
            raise GatewayUnavailableError("create answer is not a JSON object", provider=NAME,
                                          status=response.status_code) from None
        task_id = answer.task
        if not task_id:
            code, message = answer.fields()
            raise InvalidRequestError(
                message or "the create answer carried no task id", provider=NAME, code=code,
                status=response.status_code,
            )
        state = TaskState(task_id=task_id, status=TaskStatus.PENDING, progress=answer.progress)
        return SubmitResult(task_id=task_id, state=state)

    # ---- poll -----------------------------------------------------------------------------
    async def poll(self, task_id: str) -> TaskState:
        response = await self.http.request(
            "GET", f"/v1/video/generations/{task_id}", idempotent=True
        )
        return self.parse_task(task_id, json_body(response, NAME))

    def parse_task(self, task_id: str, raw: Any) -> TaskState:
        """One poll answer (`{"code","message","data":{task}}`, or a bare task) → TaskState."""
        try:
            answer = PollAnswer.model_validate(raw)
        except ValidationError:
            raise GatewayUnavailableError("poll answer is not a JSON object",
                                          provider=NAME) from None
        return self._state(task_id, answer)

    def _state(self, task_id: str, answer: PollAnswer) -> TaskState:
        task = answer.data
        if task is None:
            code, message = answer.fields()
            if code and ("not_exist" in code or "not_found" in code):
                # the gateway sometimes says "no such task" inside a 200
                raise TaskNotFoundError(message or code, provider=NAME, code=code)
            raise GatewayUnavailableError(
                message or "poll answer carried no task", provider=NAME, code=code
            )
        status = (task.status or "").strip().upper()
        progress = task.progress
        tid = task.task_id or task_id

        if status in _SUCCEEDED:
            return self._succeeded(tid, task)
        if status in _FAILED:
            return self._failed(tid, task, progress)
        if status in _RUNNING or status in _KEEP_POLLING:
            return TaskState(task_id=tid, status=TaskStatus.RUNNING, progress=progress)
        if status not in _PENDING:
            log.warning("anyfast task %s: unknown status %r, polling on", tid, status)
            return TaskState(task_id=tid, status=TaskStatus.RUNNING, progress=progress)
        return TaskState(task_id=tid, status=TaskStatus.PENDING, progress=progress)

    def _succeeded(self, tid: str, task: Task) -> TaskState:
        # `fail_reason` may hold a copy of the URL on success (legacy quirk): not read here.
        content = task.upstream.content
        url = task.result_url or (content.video_url if content else None)
        if not url:
            error = TaskFailedError("the gateway reported success without a video URL",
                                    provider=NAME, refunded=False)
            return TaskState(task_id=tid, status=TaskStatus.FAILED, progress=100.0, error=error)
        seed = task.upstream.seed
        finished = task.finish_time
        result = ProviderResult(
            video_urls=[url],
            last_frame_url=(content.last_frame_url if content else None) or None,
            seed=int(seed) if seed is not None else None,
            expires_at=(finished if finished and finished > 0 else time.time()) + RESULT_TTL,
        )
        return TaskState(task_id=tid, status=TaskStatus.SUCCEEDED, progress=100.0,
                         result=result)

    def _failed(self, tid: str, task: Task, progress: float | None) -> TaskState:
        upstream: Upstream = task.upstream
        code = (upstream.error.code if upstream.error else None) or None
        up_message = upstream.error.message if upstream.error else None
        reason = (task.fail_reason or up_message or "").strip()
        error = classify_failure(reason or "the task failed", code, provider=NAME)
        if type(error) is TaskFailedError and progress is not None and progress >= 100:
            # The seed's own note: reaching 100% and then failing is the provider's moderation.
            error = ContentRejectedError(
                f"{reason or 'the task failed'} (it failed at 100%, which on this gateway "
                "usually means content moderation blocked the result)",
                provider=NAME, code=code,
            )
        return TaskState(task_id=tid, status=TaskStatus.FAILED, progress=progress, error=error)

    # ---- the rest of the protocol (cancel, verify_callback, aclose: HttpGateway's) -----------
    def parse_callback(self, headers: Mapping[str, str], body: bytes) -> TaskState:
        """Anyfast documents no callbacks; a body shaped like a poll answer is read as one."""
        try:
            answer = PollAnswer.model_validate_json(body)
        except ValidationError as exc:
            if any(e["type"] == "json_invalid" for e in exc.errors()):
                raise InvalidRequestError("callback body is not JSON", provider=NAME) from None
            answer = PollAnswer()
        tid = (answer.data.task_id if answer.data else None) or answer.task_id
        if not tid and answer.data is None:
            raise InvalidRequestError("callback body names no task", provider=NAME)
        return self._state(tid or "", answer)

    # ---- assets (asset://<id> references) --------------------------------------------------
    async def create_asset_group(self, name: str) -> str:
        """Create an asset group; returns its id (`group-…`)."""
        response = await self.http.request(
            "POST", "/volc/asset/CreateAssetGroup",
            json={"model": "volc-asset", "Name": name}, idempotent=False,
        )
        return self._asset_id(json_body(response, NAME))

    async def create_asset(
        self, group_id: str, name: str, url: str, asset_type: str = "Image"
    ) -> str:
        """Register a public URL as a persistent asset; use it as `asset://<returned id>`."""
        response = await self.http.request(
            "POST", "/volc/asset/CreateAsset",
            json={"model": "volc-asset", "GroupId": group_id, "Name": name,
                  "AssetType": asset_type, "URL": url},
            idempotent=False,
        )
        return self._asset_id(json_body(response, NAME))

    async def register_asset(self, group_id: str, name: str, url: str, kind: MediaKind) -> str:
        """`AssetRegistry`: `create_asset` with the AssetType of the file's kind."""
        return await self.create_asset(group_id, name, url, _ASSET_TYPE[kind])

    @staticmethod
    def _asset_id(raw: Any) -> str:
        ident = AssetAnswer.model_validate(raw).ident if isinstance(raw, dict) else None
        if not ident:
            code, message = error_fields(raw)
            raise InvalidRequestError(message or "the asset answer carried no Id",
                                      provider=NAME, code=code)
        return ident


def build(settings: Settings, **transport: Unpack[TransportOptions]) -> AnyfastProvider:
    key = require_api_key(settings, NAME, "at https://www.anyfast.ai")
    # SEEDANCE_MODEL only when Anyfast is the configured gateway (a model belongs to one); an
    # unknown id is refused by the front ends before anything is sent (model_refusal).
    wanted = settings.model_for(NAME)
    model = wanted if wanted in _CAPS else None
    return AnyfastProvider(key, settings.base_url(NAME), model=model, **transport)
