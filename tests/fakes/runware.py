"""A fake Runware: one `POST /v1` taking a JSON array of tasks, validating `videoInference` as the
Seedance 2.0 Mini page says, and answering every `getResponse` variant of
docs/GATEWAYS.md#runware."""

from __future__ import annotations

import asyncio
import re
import uuid
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from bot.models import SIZE_TABLE, Resolution
from tests.fakes.common import JSON_BODY, FakeGateway, sample_video

MODEL = "bytedance:seedance@2.0-mini"
SIZES = {SIZE_TABLE[r][ratio] for r in (Resolution.P480, Resolution.P720) for ratio in
         SIZE_TABLE[r]}
FIELDS = {"taskType", "taskUUID", "outputType", "outputFormat", "outputQuality", "webhookURL",
          "deliveryMethod", "uploadEndpoint", "safety", "ttl", "includeCost", "inputs",
          "numberResults", "model", "positivePrompt", "width", "height", "resolution",
          "duration", "settings"}
INPUTS = {"referenceImages": 9, "frameImages": 2, "referenceVideos": 3, "referenceAudios": 3}
_URL = re.compile(r"^https?://")
_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


class Invalid(Exception):
    def __init__(self, code: str, message: str, parameter: str) -> None:
        super().__init__(message)
        self.code, self.parameter = code, parameter


@dataclass
class FakeTask:
    uid: str
    body: dict[str, Any]
    polls: int = 0


class FakeRunware(FakeGateway):
    """Switches (set per test) are the attributes in `__init__`."""

    def __init__(self) -> None:
        super().__init__()
        self.tasks: dict[str, FakeTask] = {}
        self.repeats = 0  # creates that named an existing taskUUID (idempotent replays)
        self.polls_to_finish = 2  # getResponse calls answered "processing" before the end
        self.progress = True  # include a numeric progress while processing
        self.empty_while_processing = False  # answer {} (neither data nor errors) meanwhile
        # Several results finish one per poll, the rest not listed meanwhile (nothing says
        # "processing"): only the count asked for tells a partial set from the whole.
        self.staggered = False
        # "success" | "errors" (errors array) | "error_item" (data item, nested error)
        # | "mixed" (the first `made` results in data, the rest failed in errors)
        self.outcome = "success"
        self.made = 1
        # Results (by index) the safety check flags with `NSFWContent: true`, when the task
        # asked for it (safety.checkContent), as Runware's content-safety page says.
        self.nsfw: set[int] = set()
        self.error_code, self.error_message = "timeoutProvider", "The provider timed out."
        self.cost = 0.18
        # Tasks with settings.audio fail with the upstream's audio moderation error; the same
        # request without sound succeeds (docs/GATEWAYS.md#rules-shared-by-all).
        self.flag_audio = False
        # seconds to hold the next create answers AFTER making the task (one per create)
        self.create_delays: list[float] = []
        # what the result URLs serve (None: a real MP4); a hostile gateway may serve anything
        self.result_bytes: bytes | None = None

    def setup_routes(self, router: web.UrlDispatcher) -> None:
        router.add_post("/v1", self._tasks)

    @staticmethod
    def _errors(status: int, code: str, message: str, parameter: str = "",
                uid: str | None = None) -> web.Response:
        error: dict[str, Any] = {"code": code, "message": message}
        if parameter:
            error["parameter"] = parameter
        if uid:
            error["taskUUID"] = uid
        return web.json_response({"errors": [error]}, status=status)

    def refuse_output(self, code: str | None = None, message: str | None = None) -> None:
        """Fail every task as Runware's moderation does: an `errors` entry with its code."""
        self.outcome = "errors"
        self.error_code = code or "contentModerationFailed"
        self.error_message = message or "The output was flagged by the content safety check."

    async def _tasks(self, request: web.Request) -> web.Response:
        if request.headers.get("Authorization") != f"Bearer {self.api_key}":
            return self._errors(401, "invalidApiKey", "Invalid API key. Get one at "
                                "https://my.runware.ai")
        body = request[JSON_BODY]
        if not isinstance(body, list) or not body:
            return self._errors(400, "invalidBody", "The body must be a JSON array of tasks.")
        data: list[dict[str, Any]] = []
        errors: list[dict[str, Any]] = []
        for task in body:
            kind = task.get("taskType") if isinstance(task, dict) else None
            if kind == "videoInference":
                try:
                    self.validate(task)
                except Invalid as exc:
                    return self._errors(400, exc.code, str(exc), exc.parameter,
                                        task.get("taskUUID"))
                data.append(await self._create(task))
            elif kind == "getResponse":
                d, e = self._get_response(task.get("taskUUID"))
                if d is None:
                    return self._errors(404, "taskNotFound", "No task with this taskUUID.",
                                        "taskUUID", task.get("taskUUID"))
                data += d
                errors += e
            else:
                return self._errors(400, "invalidTaskType", f"Unknown taskType {kind!r}.",
                                    "taskType")
        answer: dict[str, Any] = {}
        if data:
            answer["data"] = data
        if errors:
            answer["errors"] = errors
        return web.json_response(answer)

    # ---- create ---------------------------------------------------------------------------
    def validate(self, t: dict[str, Any]) -> None:
        """The page's rules for `videoInference`; raises `Invalid` in Runware's words."""
        extra = set(t) - FIELDS
        if extra:
            raise Invalid("unsupportedParameter", f"Unsupported parameter {sorted(extra)[0]}.",
                          sorted(extra)[0])
        uid = t.get("taskUUID")
        if not isinstance(uid, str) or not _UUID.match(uid) or uuid.UUID(uid).version != 4:
            raise Invalid("invalidTaskUUID", "taskUUID must be a UUID v4.", "taskUUID")
        if t.get("model") != MODEL:
            raise Invalid("invalidModel", f"Model {t.get('model')!r} is not available.", "model")
        if t.get("deliveryMethod", "async") != "async":
            raise Invalid("invalidDeliveryMethod", "Video tasks need deliveryMethod async.",
                          "deliveryMethod")
        prompt = t.get("positivePrompt")
        if not isinstance(prompt, str) or not 2 <= len(prompt) <= 10000:
            raise Invalid("invalidPositivePrompt", "positivePrompt must be 2-10000 characters.",
                          "positivePrompt")
        duration = t.get("duration", 5)
        if not isinstance(duration, int) or isinstance(duration, bool) or not 4 <= duration <= 15:
            raise Invalid("unsupportedDuration", "duration must be 4-15.", "duration")
        n = t.get("numberResults", 1)
        if not isinstance(n, int) or not 1 <= n <= 4:
            raise Invalid("invalidNumberResults", "numberResults must be 1-4.", "numberResults")
        inputs = t.get("inputs", {})
        if not isinstance(inputs, dict) or set(inputs) - set(INPUTS):
            raise Invalid("invalidInputs", "Unknown inputs field.", "inputs")
        for key, most in INPUTS.items():
            if key in inputs and (not isinstance(inputs[key], list)
                                  or not 1 <= len(inputs[key]) <= most):
                raise Invalid("invalidInputs", f"{key} takes 1-{most} items.", f"inputs.{key}")
        frames = inputs.get("frameImages")
        if frames and any(k in inputs for k in INPUTS if k != "frameImages"):
            raise Invalid("conflictingParameters", "frameImages cannot be combined with "
                          "referenceImages, referenceVideos or referenceAudios.", "inputs")
        positions = [item.get("frame", "first") if isinstance(item, dict) else None
                     for item in frames or []]
        named = [{0: "first", -1: "last"}.get(p, p) for p in positions if p is not None]
        if len(named) != len(set(named)):
            raise Invalid("invalidFrame", "Two frameImages cannot target the same frame.",
                          "inputs.frameImages.frame")
        for item in frames or []:
            image = item.get("image") if isinstance(item, dict) else item
            if isinstance(item, dict) and item.get("frame", "first") not in ("first", "last",
                                                                              0, -1):
                raise Invalid("invalidFrame", "frame must be first, last, 0 or -1.",
                              "inputs.frameImages.frame")
            self._check_image(image, "inputs.frameImages")
        for image in inputs.get("referenceImages", []):
            self._check_image(image, "inputs.referenceImages")
        for key in ("referenceVideos", "referenceAudios"):
            for src in inputs.get(key, []):
                if not isinstance(src, str) or not (_URL.match(src) or _UUID.match(src)):
                    raise Invalid("invalidInputs", f"{key} take a URL or a UUID.",
                                  f"inputs.{key}")
        has_size = "width" in t or "height" in t
        if has_size and (t.get("width"), t.get("height")) not in SIZES:
            raise Invalid("invalidDimensions", "width/height must come from the size table.",
                          "width")
        if "resolution" in t:
            if has_size:
                raise Invalid("conflictingParameters", "Use resolution or width/height.",
                              "resolution")
            if not frames:
                raise Invalid("conflictingParameters", "resolution needs inputs.frameImages.",
                              "resolution")
            if t["resolution"] not in ("480p", "720p"):
                raise Invalid("invalidResolution", "resolution must be 480p or 720p.",
                              "resolution")
        settings = t.get("settings", {})
        if not isinstance(settings, dict) or set(settings) - {"audio"} or not isinstance(
                settings.get("audio", True), bool):
            raise Invalid("invalidSettings", "settings takes audio (boolean).", "settings")
        safety = t.get("safety", {})
        if (not isinstance(safety, dict) or set(safety) - {"checkContent", "mode"}
                or safety.get("mode", "none") not in ("none", "fast", "full")
                or not isinstance(safety.get("checkContent", False), bool)):
            raise Invalid("invalidSafety", "safety takes checkContent and mode "
                          "(none, fast, full).", "safety")
        if "webhookURL" in t and not _URL.match(str(t["webhookURL"])):
            raise Invalid("invalidWebhookURL", "webhookURL must be a URL.", "webhookURL")
        if "ttl" in t and (not isinstance(t["ttl"], int) or t["ttl"] < 60):
            raise Invalid("invalidTTL", "ttl must be at least 60.", "ttl")
        quality = t.get("outputQuality", 95)
        if not isinstance(quality, int) or isinstance(quality, bool) or not 20 <= quality <= 99:
            raise Invalid("invalidOutputQuality", "outputQuality must be 20-99.",
                          "outputQuality")
        if t.get("outputFormat", "MP4") not in ("MP4", "WEBM", "MOV"):
            raise Invalid("invalidOutputFormat", "outputFormat must be MP4, WEBM or MOV.",
                          "outputFormat")

    @staticmethod
    def _check_image(image: Any, parameter: str) -> None:
        if not isinstance(image, str) or not image:
            raise Invalid("invalidInputs", "An image must be a string.", parameter)
        if image.startswith("data:") and ";base64," not in image:
            raise Invalid("invalidInputs", "A data URI must be base64.", parameter)
        if not (_URL.match(image) or image.startswith("data:image/") or _UUID.match(image)
                or re.fullmatch(r"[A-Za-z0-9+/=]{16,}", image)):
            raise Invalid("invalidInputs", "An image must be a URL, data URI, base64 or UUID.",
                          parameter)

    async def _create(self, t: dict[str, Any]) -> dict[str, Any]:
        uid = t["taskUUID"]
        if uid in self.tasks:
            self.repeats += 1  # the same job again (a retry): no second task
        else:
            self.tasks[uid] = FakeTask(uid, t)
        if self.create_delays:
            await asyncio.sleep(self.create_delays.pop(0))
        return {"taskType": "videoInference", "taskUUID": uid}

    # ---- getResponse ----------------------------------------------------------------------
    def _get_response(self, uid: Any) -> tuple[list[dict[str, Any]] | None, list[dict[str, Any]]]:
        task = self.tasks.get(uid)
        if task is None:
            return None, []
        task.polls += 1
        if task.polls <= self.polls_to_finish:
            if self.empty_while_processing:
                return [], []
            item: dict[str, Any] = {"taskType": "videoInference", "taskUUID": uid,
                                    "status": "processing"}
            if self.progress:
                item["progress"] = int(100 * (task.polls - 1) / self.polls_to_finish)
            return [item], []
        items, errors = self.final_items(task)
        ready = task.polls - self.polls_to_finish
        if self.staggered and ready < len(items):
            return items[:ready], errors
        return items, errors

    def result_items(self, task: FakeTask) -> list[dict[str, Any]]:
        """One success item per requested result, each its own video and seed."""
        items = []
        for i in range(task.body.get("numberResults", 1)):
            vid = str(uuid.uuid5(uuid.UUID(task.uid), str(i)))
            url = self.add_file(f"{vid}.mp4", self.result_bytes or sample_video())
            item: dict[str, Any] = {"taskType": "videoInference", "taskUUID": task.uid,
                                    "status": "success", "videoUUID": vid, "videoURL": url,
                                    "seed": 1000 + i}
            if task.body.get("includeCost"):
                item["cost"] = self.cost
            if task.body.get("safety", {}).get("checkContent"):
                item["NSFWContent"] = i in self.nsfw
            items.append(item)
        return items

    def final_items(self, task: FakeTask) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        error = {"code": self.error_code, "message": self.error_message, "status": "error",
                 "taskUUID": task.uid}
        if self.flag_audio and task.body.get("settings", {}).get("audio", True):
            return [], [{"code": "OutputAudioSensitiveContentDetected", "status": "error",
                         "message": "The output audio may contain sensitive information.",
                         "taskUUID": task.uid}]
        if self.outcome == "success":
            return self.result_items(task), []
        if self.outcome == "errors":
            return [], [error]
        if self.outcome == "error_item":
            return [{"taskType": "videoInference", "taskUUID": task.uid, "status": "error",
                     "error": {"code": self.error_code, "message": self.error_message}}], []
        results = self.result_items(task)  # "mixed": the first `made` came, the rest not
        return results[:self.made], [dict(error) for _ in results[self.made:]]

    async def deliver_webhooks(self, uid: str) -> list[int]:
        """POST each result's flat object to the task's webhookURL, twice (as gateways do)."""
        task = self.tasks[uid]
        data, errors = self.final_items(task)
        statuses: list[int] = []
        for item in data + errors:
            statuses += await self.send_callback(task.body["webhookURL"], item)
        return statuses
