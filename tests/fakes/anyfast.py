"""A fake Anyfast that validates create bodies as the seed pages say and answers every documented
variant of create and poll (docs/GATEWAYS.md#anyfast), so a client bug shows up as a failing
test."""

from __future__ import annotations

import itertools
import re
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web

from tests.fakes.common import JSON_BODY, FakeGateway, sample_image, sample_video

MODELS = {"seedance-2.0-mini": {"480p", "720p"}, "seedance": {"480p", "720p", "1080p"}}
RATIOS = {"16:9", "4:3", "1:1", "3:4", "9:16", "21:9", "adaptive"}
TOP_FIELDS = {"model", "content", "generate_audio", "resolution", "ratio", "duration", "tools",
              "watermark", "return_last_frame"}
ITEM_RANK = {"text": 0, "image_url": 1, "video_url": 2, "audio_url": 3}
ROLES = {
    "image_url": {"first_frame", "last_frame", "reference_image"},
    "video_url": {"reference_video"},
    "audio_url": {"reference_audio"},
}
_CJK = re.compile(r"[\u3400-\u9fff]")
#: What a test image carries to look like a real person's face to the fake's asset review.
REAL_PERSON_MARKER = b"seedance-fake:real-person"
REAL_PERSON = {"code": "InputImageSensitiveContentDetected.PrivacyInformation",
               "message": "The request failed because the input image may contain real person."}
AUDIO_FLAGGED = {"code": "OutputAudioSensitiveContentDetected",
                 "message": "The request failed because the output audio may contain sensitive "
                            "information."}


async def _fetch(url: str) -> bytes | None:
    """The asset's bytes, as the gateway downloads them; None when the URL does not answer
    (the tests' made-up https://example.com/… addresses)."""
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session, \
                session.get(url) as response:
            return await response.read() if response.status == 200 else None
    except (aiohttp.ClientError, TimeoutError):
        return None


class Invalid(Exception):
    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.param = param


@dataclass
class FakeTask:
    task_id: str
    body: dict[str, Any]
    polls: int = 0
    created: float = field(default_factory=time.time)


class FakeAnyfast(FakeGateway):
    """Switches (set per test): see the attributes in `__init__`."""

    def __init__(self) -> None:
        super().__init__()
        self.tasks: dict[str, FakeTask] = {}
        self.groups: dict[str, str] = {}
        self.assets: dict[str, dict[str, Any]] = {}
        self._ids = itertools.count(1)
        # create answer: which id fields appear ("both", "task_id", "id"), and their style
        self.id_fields = "both"
        self.id_style = "cgt"  # "cgt" (cgt-2026…) or "asyn" (asyntask_…)
        # poll: statuses shown before the end, one per poll, then the outcome
        self.pending_statuses: list[str] = ["SUBMITTED", "QUEUED", "IN_PROGRESS"]
        self.outcome = "success"  # "success" | "failure" | "failure_at_100"
        self.fail_reason = "upstream error: the task failed"
        self.upstream_error: dict[str, str] | None = None  # data.data.error on failure
        self.result_shape = "both"  # "both" | "flat" (result_url) | "nested" (data.data…)
        self.numeric_progress = False  # progress as 50 instead of "50%"
        self.seed = 424242
        self.error_style = "anyfast"  # validation errors: "anyfast" or "ark" shape
        # Tasks asking for sound fail at 100% with the upstream's audio moderation error (the
        # pitfall docs/GATEWAYS.md describes); the same request without sound succeeds.
        self.flag_audio = False
        # CreateAsset fetches the file at the URL, as the gateway's review does; one whose
        # bytes carry this marker (tests put it in a PNG text chunk) "may contain a real
        # person" and is refused with the upstream's privacy error (docs/GATEWAYS.md).
        self.real_person_marker = REAL_PERSON_MARKER

    def setup_routes(self, router: web.UrlDispatcher) -> None:
        router.add_post("/v1/video/generations", self._create)
        router.add_get("/v1/video/generations/{task_id}", self._poll)
        router.add_post("/volc/asset/CreateAssetGroup", self._create_group)
        router.add_post("/volc/asset/CreateAsset", self._create_asset)

    # ---- helpers --------------------------------------------------------------------------
    def _error(self, status: int, code: str, message: str, param: str | None = None
               ) -> web.Response:
        if self.error_style == "ark":
            body: dict[str, Any] = {"error": {"code": code, "message": message,
                                              "param": param or "", "type": "BadRequest"}}
        else:
            body = {"code": code, "message": message, "data": None}
        return web.json_response(body, status=status)

    def _authorized(self, request: web.Request) -> bool:
        return request.headers.get("Authorization") == f"Bearer {self.api_key}"

    def _unauthorized(self) -> web.Response:
        return web.json_response(
            {"code": "invalid_api_key", "message": "invalid token", "data": None}, status=401
        )

    def refuse_output(self, code: str | None = None, message: str | None = None) -> None:
        """Fail every task as Anyfast's moderation does: it reaches 100 % and then errors."""
        self.outcome = "failure_at_100"
        if message:
            self.fail_reason = message
        if code:
            self.upstream_error = {"code": code, "message": message or self.fail_reason}

    # ---- create ---------------------------------------------------------------------------
    async def _create(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return self._unauthorized()
        body = request[JSON_BODY]
        try:
            self.validate(body)
        except Invalid as exc:
            code = "InvalidParameter" if self.error_style == "ark" else "invalid_request"
            return self._error(400, code, str(exc), exc.param)
        n = next(self._ids)
        task_id = (f"cgt-20260101{n:06d}-fake" if self.id_style == "cgt"
                   else f"asyntask_{n:08d}")
        self.tasks[task_id] = FakeTask(task_id, body)
        answer: dict[str, Any] = {"object": "video", "model": body["model"], "status": "",
                                  "progress": 0, "created_at": int(time.time())}
        if self.id_fields in ("both", "id"):
            answer["id"] = task_id
        if self.id_fields in ("both", "task_id"):
            answer["task_id"] = task_id
        return web.json_response(answer)

    def validate(self, body: Any) -> None:
        """The create rules of the seed pages, one per check; raises `Invalid`."""
        if not isinstance(body, dict):
            raise Invalid("body must be a JSON object")
        extra = set(body) - TOP_FIELDS
        if extra:
            raise Invalid(f"unknown parameter(s): {', '.join(sorted(extra))}", sorted(extra)[0])
        model = body.get("model")
        if model not in MODELS:
            raise Invalid(f"model {model!r} is not available", "model")
        content = body.get("content")
        if not isinstance(content, list) or not content:
            raise Invalid("content must be a non-empty array", "content")
        ranks = []
        for i, item in enumerate(content):
            kind = item.get("type") if isinstance(item, dict) else None
            if kind not in ITEM_RANK:
                raise Invalid(f"content[{i}].type {kind!r} is invalid", "content")
            ranks.append(ITEM_RANK[kind])
            if kind == "text":
                self._check_text(item.get("text"))
                continue
            self._check_media(i, kind, item)
        if ranks != sorted(ranks):
            raise Invalid("content must be in the order text, image_url, video_url, audio_url",
                          "content")
        if ranks.count(0) > 1:
            raise Invalid("at most one text item", "content")
        self._check_roles(model, content)
        if "generate_audio" in body and not isinstance(body["generate_audio"], bool):
            raise Invalid("generate_audio must be a boolean", "generate_audio")
        if "watermark" in body and not isinstance(body["watermark"], bool):
            raise Invalid("watermark must be a boolean", "watermark")
        if "return_last_frame" in body and not isinstance(body["return_last_frame"], bool):
            raise Invalid("return_last_frame must be a boolean", "return_last_frame")
        if "resolution" in body and body["resolution"] not in MODELS[model]:
            raise Invalid(f"resolution {body['resolution']!r} is not supported by {model}",
                          "resolution")
        if "ratio" in body and body["ratio"] not in RATIOS:
            raise Invalid(f"ratio {body['ratio']!r} is invalid", "ratio")
        duration = body.get("duration", 5)
        if not isinstance(duration, int) or isinstance(duration, bool) or not 4 <= duration <= 15:
            raise Invalid("duration must be an integer of 4-15 seconds", "duration")
        if "tools" in body:
            if body["tools"] != [{"type": "web_search"}]:
                raise Invalid("tools must be [{\"type\": \"web_search\"}]", "tools")
            if ranks != [0]:
                raise Invalid("web search works only for text-to-video", "tools")

    @staticmethod
    def _check_text(text: Any) -> None:
        if not isinstance(text, str) or not text.strip():
            raise Invalid("text item needs a non-empty text", "content.text")
        if len(_CJK.findall(text)) > 500 or len(text.split()) > 1000:
            raise Invalid("text is too long (max 500 Chinese chars / 1000 English words)",
                          "content.text")

    @staticmethod
    def _check_media(i: int, kind: str, item: dict[str, Any]) -> None:
        url = (item.get(kind) or {}).get("url") if isinstance(item.get(kind), dict) else None
        if not isinstance(url, str) or not url:
            raise Invalid(f"content[{i}].{kind}.url is required", f"content.{kind}.url")
        if url.startswith("data:"):
            if kind == "video_url":
                raise Invalid("video_url takes a URL or asset://, not base64", "content.video_url")
            if ";base64," not in url:
                raise Invalid(f"content[{i}] data URI must be base64", f"content.{kind}.url")
        elif not re.match(r"^(https?://|asset://asset-)", url):
            raise Invalid(f"content[{i}].{kind}.url {url[:40]!r} is not a URL, data URI or "
                          "asset", f"content.{kind}.url")
        role = item.get("role")
        if role is not None and role not in ROLES[kind]:
            raise Invalid(f"content[{i}].role {role!r} is not valid for {kind}", "content.role")

    @staticmethod
    def _check_roles(model: str, content: list[dict[str, Any]]) -> None:
        media = [c for c in content if c["type"] != "text"]
        images = [c for c in media if c["type"] == "image_url"]
        videos = [c for c in media if c["type"] == "video_url"]
        audios = [c for c in media if c["type"] == "audio_url"]
        roles = [c.get("role") for c in media]
        frame = [r for r in roles if r in ("first_frame", "last_frame")]
        refs = [r for r in roles if r and r.startswith("reference_")]
        if not media and not any(c["type"] == "text" for c in content):
            raise Invalid("content needs a text or media item", "content")
        if frame or (images and not refs and not videos and not audios):
            # frame modes: 1 image (first_frame or no role) or 2 images (first + last)
            if refs or videos or audios:
                raise Invalid("first frame, first+last frame and reference modes cannot be "
                              "mixed", "content.role")
            if len(images) > 2:
                raise Invalid("frame modes take one or two images", "content")
            if len(images) == 2 and sorted(str(r) for r in roles) != ["first_frame", "last_frame"]:
                raise Invalid("two frames need roles first_frame and last_frame", "content.role")
            if len(images) == 1 and roles[0] not in (None, "first_frame"):
                raise Invalid("a single frame image must be the first_frame", "content.role")
            return
        if any(r is None for r in roles):
            raise Invalid("reference items need a role", "content.role")
        if len(images) > 9 or len(videos) > 3 or len(audios) > 3:
            raise Invalid("at most 9 images, 3 videos and 3 audio clips", "content")
        if audios and not images and not videos:
            raise Invalid("audio needs at least one image or video", "content")
        if model == "seedance" and audios and not images:
            raise Invalid("multimodal reference takes 1-9 images", "content")

    # ---- poll -----------------------------------------------------------------------------
    def _pct(self, value: int) -> Any:
        return value if self.numeric_progress else f"{value}%"

    async def _poll(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return self._unauthorized()
        task = self.tasks.get(request.match_info["task_id"])
        if task is None:
            return web.json_response(
                {"code": "task_not_exist", "message": "task_not_exist", "data": None},
                status=404,
            )
        task.polls += 1
        steps = len(self.pending_statuses)
        data: dict[str, Any] = {"task_id": task.task_id, "action": "generate",
                                "fail_reason": "", "result_url": "",
                                "submit_time": int(task.created), "data": None}
        if task.polls <= steps:
            data["status"] = self.pending_statuses[task.polls - 1]
            data["progress"] = self._pct(int(100 * (task.polls - 1) / max(steps, 1)))
        elif self.flag_audio and task.body.get("generate_audio") is True:
            data.update(status="FAILURE", progress=self._pct(100), finish_time=int(time.time()),
                        fail_reason=AUDIO_FLAGGED["message"])
            data["data"] = {"id": task.task_id, "status": "failed", "error": dict(AUDIO_FLAGGED)}
        elif self.outcome == "success":
            self._success(task, data)
        else:
            data["status"] = "FAILURE"
            data["progress"] = self._pct(100 if self.outcome == "failure_at_100" else 30)
            data["fail_reason"] = self.fail_reason
            data["finish_time"] = int(time.time())
            if self.upstream_error:
                data["data"] = {"id": task.task_id, "status": "failed",
                                "error": dict(self.upstream_error)}
        return web.json_response({"code": "success", "message": "", "data": data})

    def _success(self, task: FakeTask, data: dict[str, Any]) -> None:
        body = task.body
        url = self.add_file(f"{task.task_id}.mp4", sample_video(), ttl=12 * 3600)
        content: dict[str, Any] = {}
        if self.result_shape in ("both", "nested"):
            content["video_url"] = url
        if body.get("return_last_frame"):
            content["last_frame_url"] = self.add_file(f"{task.task_id}-last.png",
                                                      sample_image(496, 864))
        data.update(status="SUCCESS", progress=self._pct(100), finish_time=int(time.time()),
                    fail_reason=url)  # legacy quirk: a copy of the URL in fail_reason
        if self.result_shape in ("both", "flat"):
            data["result_url"] = url
        data["data"] = {
            "id": task.task_id, "model": body["model"], "status": "succeeded",
            "content": content, "seed": self.seed, "duration": body.get("duration", 5),
            "ratio": body.get("ratio", "adaptive"), "resolution": body.get("resolution", "720p"),
            "framespersecond": 24, "usage": {"completion_tokens": 108900},
        }

    # ---- assets ---------------------------------------------------------------------------
    async def _create_group(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return self._unauthorized()
        body = request[JSON_BODY]
        if not isinstance(body, dict) or body.get("model") != "volc-asset" or not body.get("Name"):
            return self._error(400, "invalid_request", "model volc-asset and Name are required")
        group = f"group-20260101000000-{len(self.groups) + 1:05d}"
        self.groups[group] = body["Name"]
        return web.json_response({"Id": group})

    async def _create_asset(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return self._unauthorized()
        body = request[JSON_BODY]
        if not isinstance(body, dict) or body.get("model") != "volc-asset":
            return self._error(400, "invalid_request", "model must be volc-asset")
        if body.get("GroupId") not in self.groups:
            return self._error(400, "InvalidParameter.GroupId", "unknown GroupId")
        if body.get("AssetType") not in ("Image", "Video", "Audio"):
            return self._error(400, "InvalidParameter.AssetType", "AssetType is invalid")
        if not body.get("Name") or not str(body.get("URL", "")).startswith(("http://", "https://")):
            return self._error(400, "invalid_request", "Name and an http(s) URL are required")
        data = await _fetch(str(body["URL"]))  # None: nothing to review (a URL of no test)
        if data is not None and self.real_person_marker in data:
            return self._error(400, REAL_PERSON["code"], REAL_PERSON["message"])
        asset = f"asset-20260101000000-{len(self.assets) + 1:05d}"
        self.assets[asset] = body
        return web.json_response({"Id": asset})
