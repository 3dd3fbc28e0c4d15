"""A fake HiAPI: validates `POST /v1/tasks` as the Seedance 2.0 Mini page says, answers in
HiAPI's `{"code","message","data"}` envelope, walks tasks through queued → handling →
archiving → success | fail over polls, lists typed outputs with `expireAt`, and delivers the
`data` object to `callback.url` (twice), HMAC-signed when `signing_secret` is set.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from tests.fakes.common import JSON_BODY, FakeGateway, sample_video

MODEL = "seedance-2.0-mini"
INPUT_FIELDS = {
    "prompt", "resolution", "duration", "aspect_ratio", "generate_audio", "first_frame_url",
    "last_frame_url", "reference_image_urls", "reference_video_urls", "reference_audio_urls",
}
RATIOS = {"1:1", "4:3", "3:4", "16:9", "9:16", "21:9", "adaptive"}


@dataclass
class HiTask:
    task_id: str
    body: dict[str, Any]
    created: int = field(default_factory=lambda: int(time.time()))
    step: int = 0
    status: str = "queued"
    output: list[dict[str, Any]] = field(default_factory=list)
    error: dict[str, Any] | None = None


class FakeHiAPI(FakeGateway):
    """Switches: `path` (statuses walked one per poll), `fail_with` ({code, message} makes the
    last status `fail`), `with_last_frame`, `extra_outputs` (thumbnail/first_frame items),
    `expire_style` ("seconds", "millis", "iso"), `signing_secret`, `file_ttl`."""

    api_key = "hi-test-key-123456"

    def __init__(self) -> None:
        super().__init__()
        self.tasks: dict[str, HiTask] = {}
        self.path = ["queued", "handling", "archiving", "success"]
        self.fail_with: dict[str, Any] | None = None
        self.with_last_frame = False
        self.extra_outputs = False
        self.expire_style = "seconds"
        self.signing_secret: str | None = None
        self.file_ttl = 3600.0
        # Tasks with generate_audio fail with the official audio moderation (the page's FAQ);
        # the same request with generate_audio false succeeds.
        self.flag_audio = False

    def setup_routes(self, router: web.UrlDispatcher) -> None:
        router.add_post("/v1/tasks", self._create)
        router.add_get("/v1/tasks/{task_id}", self._get)

    # ---- envelope -------------------------------------------------------------------------
    @staticmethod
    def error(status: int, message: str, error_code: str) -> web.Response:
        body = {"code": status, "message": message, "data": None, "error_code": error_code}
        return web.json_response(body, status=status)

    @staticmethod
    def ok(data: Any) -> web.Response:
        return web.json_response({"code": 200, "message": "success", "data": data})

    def _authorized(self, request: web.Request) -> bool:
        return request.headers.get("Authorization") == f"Bearer {self.api_key}"

    # ---- validation -----------------------------------------------------------------------
    def validate(self, body: Any) -> str | None:
        """What the page does not allow in `body`, or None."""
        if not isinstance(body, dict):
            return "body must be a JSON object"
        unknown = set(body) - {"model", "input", "callback"}
        if unknown:
            return f"unknown fields: {sorted(unknown)}"
        if body.get("model") != MODEL:
            return f"model must be {MODEL}"
        inp = body.get("input")
        if not isinstance(inp, dict):
            return "input is required"
        unknown = set(inp) - INPUT_FIELDS
        if unknown:
            return f"unknown input fields: {sorted(unknown)}"
        if not isinstance(inp.get("prompt"), str) or not inp["prompt"].strip():
            return "input.prompt is required"
        if inp.get("resolution") not in ("480p", "720p"):
            return "input.resolution must be 480p or 720p"
        duration = inp.get("duration")
        if isinstance(duration, bool) or not isinstance(duration, int) or not 4 <= duration <= 15:
            return "input.duration must be an integer from 4 to 15"
        if "aspect_ratio" in inp and inp["aspect_ratio"] not in RATIOS:
            return "input.aspect_ratio is not supported"
        if "generate_audio" in inp and not isinstance(inp["generate_audio"], bool):
            return "input.generate_audio must be a boolean"
        for key in ("first_frame_url", "last_frame_url"):
            if key in inp and not _is_url(inp[key]):
                return f"input.{key} must be a URL"
        lists = {}
        for key in ("reference_image_urls", "reference_video_urls", "reference_audio_urls"):
            if key in inp:
                value = inp[key]
                if not isinstance(value, list) or not value or not all(map(_is_url, value)):
                    return f"input.{key} must be a non-empty list of URLs"
                lists[key] = value
        first = "first_frame_url" in inp
        if "last_frame_url" in inp and not first:
            return "input.last_frame_url requires first_frame_url"
        if first and ("reference_image_urls" in lists or "reference_video_urls" in lists):
            return "first frame and reference images / videos are mutually exclusive"
        if "reference_image_urls" in lists and "reference_video_urls" in lists:
            return "reference images and reference videos are mutually exclusive"
        if "reference_audio_urls" in lists and not (first or "reference_image_urls" in lists
                                                    or "reference_video_urls" in lists):
            return "reference audio needs at least one image or video"
        if len(lists.get("reference_image_urls", [])) + first + ("last_frame_url" in inp) > 9:
            return "at most 9 images"
        if len(lists.get("reference_video_urls", [])) > 3:
            return "at most 3 reference videos"
        if len(lists.get("reference_audio_urls", [])) > 3:
            return "at most 3 reference audios"
        callback = body.get("callback")
        if callback is not None:
            if not isinstance(callback, dict) or not _is_url(callback.get("url")):
                return "callback.url is required when callback is set"
            if set(callback) - {"url", "when"} or callback.get("when", "final") != "final":
                return "callback.when must be final"
        return None

    def refuse_output(self, code: str | None = None, message: str | None = None) -> None:
        """Fail every task as HiAPI's moderation does: status `fail` with a {code, message}."""
        self.fail_with = {"code": code or "OutputVideoSensitiveContentDetected",
                          "message": message or "the output video may contain sensitive content"}

    # ---- handlers -------------------------------------------------------------------------
    async def _create(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return self.error(401, "invalid api key", "UNAUTHORIZED")
        body = request[JSON_BODY]
        wrong = self.validate(body)
        if wrong:
            return self.error(400, wrong, "INVALID_REQUEST")
        task = HiTask(f"tk-hiapi-{uuid.uuid4().hex}", body)
        self.tasks[task.task_id] = task
        return self.ok({"taskId": task.task_id})

    async def _get(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return self.error(401, "invalid api key", "UNAUTHORIZED")
        task = self.tasks.get(request.match_info["task_id"])
        if task is None:
            return self.error(404, "task not found", "NOT_FOUND")
        self.advance(task)
        return self.ok(self.data(task))

    # ---- task life ------------------------------------------------------------------------
    def advance(self, task: HiTask) -> None:
        if task.status in ("success", "fail"):
            return
        task.step = min(task.step + 1, len(self.path) - 1)
        status = self.path[task.step]
        if status in ("success", "fail") or task.step == len(self.path) - 1:
            self.finish(task)
        else:
            task.status = status

    def _expiry(self, seconds: float) -> Any:
        at = time.time() + seconds
        if self.expire_style == "millis":
            return int(at * 1000)
        if self.expire_style == "iso":
            return datetime.fromtimestamp(at, UTC).isoformat().replace("+00:00", "Z")
        return int(at)

    def finish(self, task: HiTask) -> None:
        if self.flag_audio and task.body["input"].get("generate_audio", True):
            task.status = "fail"
            task.error = {"code": "OutputAudioSensitiveContentDetected",
                          "message": "audio content moderation failed; set generate_audio to "
                                     "false and retry"}
            return
        if self.fail_with is not None:
            task.status, task.error = "fail", dict(self.fail_with)
            return
        task.status = "success"
        url = self.add_file(f"{task.task_id}.mp4", sample_video(), ttl=self.file_ttl)
        expire = self._expiry(self.file_ttl)
        task.output = [{"url": url, "type": "video", "expireAt": expire}]
        if self.with_last_frame:
            task.output.append({"url": f"{self.base_url}/files/{task.task_id}-last.png",
                                "type": "last_frame", "expireAt": expire})
        if self.extra_outputs:
            task.output.insert(0, {"url": f"{self.base_url}/files/{task.task_id}-thumb.jpg",
                                   "type": "thumbnail", "expireAt": expire})
            task.output.append({"url": f"{self.base_url}/files/{task.task_id}-audio.mp3",
                                "type": "audio", "expireAt": expire})

    def data(self, task: HiTask) -> dict[str, Any]:
        data: dict[str, Any] = {
            "taskId": task.task_id, "model": MODEL, "status": task.status,
            "created": task.created,
        }
        if task.status in ("success", "fail"):
            data["completed"] = int(time.time())
        if task.status == "success":
            data["output"] = task.output
        if task.status == "fail":
            data["error"] = task.error
        return data

    def signed_headers(self, raw: bytes, timestamp: str | None = None) -> dict[str, str]:
        if not self.signing_secret:
            return {}
        ts = timestamp or str(int(time.time()))
        sig = hmac.new(self.signing_secret.encode(), ts.encode() + b"." + raw,
                       hashlib.sha256).hexdigest()
        return {"X-HiAPI-Timestamp": ts, "X-HiAPI-Signature": sig}

    async def notify(self, task_id: str, *, times: int = 2) -> list[int]:
        """Finish the task and POST its `data` object to `callback.url`, `times` times."""
        task = self.tasks[task_id]
        if task.status not in ("success", "fail"):
            self.finish(task)
        raw = json.dumps(self.data(task)).encode()
        url = task.body["callback"]["url"]
        return await self.send_callback(url, raw, self.signed_headers(raw), times=times)


def _is_url(value: Any) -> bool:
    return isinstance(value, str) and value.startswith(("http://", "https://"))
