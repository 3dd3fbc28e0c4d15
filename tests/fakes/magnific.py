"""A fake Magnific: validates create bodies as the Seedance 2.0 Mini page says, answers in
Magnific's shapes, advances tasks CREATED → IN_PROGRESS → COMPLETED | FAILED over polls, serves
the result through an expiring URL, and sends webhooks (twice) to `webhook_url`.
"""

from __future__ import annotations

import base64
import binascii
import io
import itertools
import uuid
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from PIL import Image

from tests.fakes.common import JSON_BODY, FakeGateway, sample_video

ASPECTS = {
    "film_horizontal_21_9", "widescreen_16_9", "classic_4_3", "square_1_1",
    "traditional_3_4", "social_story_9_16", "film_vertical_9_21",
}
FIELDS = {
    "prompt", "image", "image_end", "duration", "aspect_ratio", "camera_fixed", "seed",
    "enable_safety_checker", "webhook_url",
}
RESOLUTIONS = {"480p", "720p"}


#: Tasks one list answer shows (newest first).
LIST_PAGE = 50

@dataclass
class MagnificTask:
    task_id: str
    resolution: str
    body: dict[str, Any]
    status: str = "CREATED"
    polls: int = 0
    generated: list[str] = field(default_factory=list)

    def obj(self) -> dict[str, Any]:
        return {"task_id": self.task_id, "status": self.status, "generated": list(self.generated)}


class FakeMagnific(FakeGateway):
    """Switches: `polls_to_finish`, `fail_tasks`, `error_style` ("attribute", "problem",
    "flat") for 400 answers, `completed_without_urls`, `file_ttl`, `foreign_on_create` (tasks
    another client of the same key makes as each create arrives: they show in the list)."""

    api_key = "mag-test-key-123456"

    def __init__(self) -> None:
        super().__init__()
        self.tasks: dict[str, MagnificTask] = {}
        self.polls_to_finish = 2
        self.fail_tasks = False
        self.error_style = "problem"
        self.completed_without_urls = False
        self.file_ttl = 3600.0
        self.foreign_on_create = 0

    def setup_routes(self, router: web.UrlDispatcher) -> None:
        router.add_post("/v1/ai/video/seedance-2-mini-{resolution}", self._create)
        router.add_get("/v1/ai/video/seedance-2-mini", self._list)
        router.add_get("/v1/ai/video/seedance-2-mini/{task_id}", self._get)

    # ---- answers ----------------------------------------------------------------------------
    def _invalid(self, name: str, reason: str) -> web.Response:
        if self.error_style == "attribute":
            body: dict[str, Any] = {"message": "Parameter ':attribute' is not valid"}
        else:
            problem = {
                "message": "Your request parameters didn't validate.",
                "invalid_params": [{"name": name, "reason": reason}],
            }
            body = {"problem": problem} if self.error_style == "problem" else problem
        return web.json_response(body, status=400)

    def _authorized(self, request: web.Request) -> bool:
        return request.headers.get("x-magnific-api-key") == self.api_key

    def _unauthorized(self) -> web.Response:
        return web.json_response({"message": "Invalid API key"}, status=401)

    # ---- validation ----------------------------------------------------------------------
    def _check_image(self, name: str, value: Any) -> str | None:
        if not isinstance(value, str) or not value:
            return "must be a URL or a Base64 string"
        if value.startswith(("http://", "https://")):
            return None
        try:
            raw = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            return "must be a public URL or a Base64 string"
        try:
            Image.open(io.BytesIO(raw)).verify()
        except Exception:
            return "Base64 string is not an image"
        return None

    def validate(self, body: Any) -> tuple[str, str] | None:
        """(param, reason) of the first thing the page does not allow, or None."""
        if not isinstance(body, dict):
            return "body", "must be a JSON object"
        for key in body:
            if key not in FIELDS:
                return key, "is not a parameter of this endpoint"
        prompt = body.get("prompt")
        if not isinstance(prompt, str) or not prompt.strip():
            return "prompt", "is required"
        if len(prompt) > 2000:
            return "prompt", "must be at most 2000 characters"
        for name in ("image", "image_end"):
            if name in body:
                reason = self._check_image(name, body[name])
                if reason:
                    return name, reason
        if "image_end" in body and "image" not in body:
            return "image_end", "requires image"
        duration = body.get("duration", 5)
        if isinstance(duration, bool) or duration not in (5, 10):
            return "duration", "must be 5 or 10"
        if body.get("aspect_ratio", "widescreen_16_9") not in ASPECTS:
            return "aspect_ratio", "is not a supported aspect ratio"
        for flag in ("camera_fixed", "enable_safety_checker"):
            if flag in body and not isinstance(body[flag], bool):
                return flag, "must be a boolean"
        seed = body.get("seed", -1)
        if (
            isinstance(seed, bool) or not isinstance(seed, int)
            or not (seed == -1 or 0 <= seed <= 4_294_967_295)
        ):
            return "seed", "must be -1 or 0 to 4294967295"
        hook = body.get("webhook_url")
        if hook is not None and (
            not isinstance(hook, str) or not hook.startswith(("http://", "https://"))
        ):
            return "webhook_url", "must be a URL"
        return None

    def refuse_output(self, code: str | None = None, message: str | None = None) -> None:
        """Fail every task as Magnific does: FAILED with no reason at all (its safety checker
        is always on), so `code` and `message` have nowhere to go."""
        self.fail_tasks = True

    # ---- handlers -------------------------------------------------------------------------
    async def _create(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return self._unauthorized()
        resolution = request.match_info["resolution"]
        if resolution not in RESOLUTIONS:
            return web.json_response({"message": "Not found"}, status=404)
        body = request[JSON_BODY]
        wrong = self.validate(body)
        if wrong:
            return self._invalid(*wrong)
        for _ in range(self.foreign_on_create):
            other = MagnificTask(str(uuid.uuid4()), resolution, {**body, "prompt": "not ours"})
            self.tasks[other.task_id] = other
        task = MagnificTask(str(uuid.uuid4()), resolution, body)
        self.tasks[task.task_id] = task
        return web.json_response({"data": task.obj()})

    async def _list(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return self._unauthorized()
        # The newest tasks of the key, any resolution, first (as the list endpoints of
        # Magnific's API answer): `{"data":[task object, …]}`. One page: the page does not
        # give its size, so the fake keeps to a modest one, as paged APIs do (and a bench of
        # thousands of tasks does not list them all at every create).
        newest = list(itertools.islice(reversed(self.tasks.values()), LIST_PAGE))
        return web.json_response({"data": [t.obj() for t in newest]})

    async def _get(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return self._unauthorized()
        task = self.tasks.get(request.match_info["task_id"])
        if task is None:
            return web.json_response({"message": "Not found"}, status=404)
        self.advance(task)
        return web.json_response({"data": task.obj()})

    # ---- task life ------------------------------------------------------------------------
    def advance(self, task: MagnificTask) -> None:
        """One poll's worth of progress."""
        if task.status in ("COMPLETED", "FAILED"):
            return
        task.polls += 1
        if task.polls >= self.polls_to_finish:
            self.finish(task)
        else:
            task.status = "IN_PROGRESS"

    def finish(self, task: MagnificTask) -> None:
        if self.fail_tasks:
            task.status = "FAILED"
            return
        task.status = "COMPLETED"
        if not self.completed_without_urls:
            task.generated = [
                self.add_file(f"{task.task_id}.mp4", sample_video(), ttl=self.file_ttl)
            ]

    async def notify(self, task_id: str, *, times: int = 2) -> list[int]:
        """Finish the task and POST the bare task object to its webhook_url `times` times."""
        task = self.tasks[task_id]
        if task.status not in ("COMPLETED", "FAILED"):
            self.finish(task)
        return await self.send_callback(task.body["webhook_url"], task.obj(), times=times)
