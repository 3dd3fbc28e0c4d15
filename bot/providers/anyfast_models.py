"""What bot/providers/anyfast.py reads from Anyfast's answers (docs/GATEWAYS.md#anyfast).

Two error shapes reach us: Anyfast's own `{"code","message","data"}` and the wrapped upstream's
(Volcengine Ark) `{"error":{"code","message","type"}}`. Task ids come as `task_id`, `id` or
inside `data`; the poll answer nests the upstream task in the task (`data.data`).
"""

from __future__ import annotations

from typing import Any

from pydantic import model_validator

from bot.providers.wire import Loose, Number, Percent, Text, Wire


class ArkError(Wire):
    """The upstream's error object, `{"error":{"code","message","param","type"}}`."""

    code: Text = None
    type: Text = None
    message: Text = None


class ErrorBody(Wire):
    """Any answer that may say what went wrong: `{"code","message"}` or `{"error":{…}}`, where
    `error` may also be a bare string."""

    code: Text = None
    message: Text = None
    error: Loose[ArkError | str] = None

    def fields(self) -> tuple[str | None, str]:
        """(code, message); the upstream's object wins, its `type` standing in for a code."""
        if isinstance(self.error, ArkError):
            return (self.error.code or self.error.type or None), self.error.message or ""
        if isinstance(self.error, str):
            return None, self.error
        return (self.code if self.code not in (None, "") else None), self.message or ""


def error_fields(body: Any) -> tuple[str | None, str]:
    """(code, message) of any error body: either JSON shape, plain text, or nothing usable."""
    if isinstance(body, str):
        return None, body.strip()
    if not isinstance(body, dict):
        return None, ""
    return ErrorBody.model_validate(body).fields()


class TaskIds(Wire):
    """Where a task id may be: `task_id` first, then `id` (both seen, in two styles)."""

    task_id: Text = None
    id: Text = None

    @property
    def ident(self) -> str | None:
        return self.task_id or self.id or None


class CreateAnswer(TaskIds, ErrorBody):
    """`{"id","task_id","object","model","status","progress","created_at"}`, or the ids
    inside `data`; without any id the body is read as an error."""

    progress: Percent = None
    data: Loose[TaskIds] = None

    @property
    def task(self) -> str | None:
        return self.ident or (self.data.ident if self.data else None)


class UpstreamContent(Wire):
    video_url: Text = None
    last_frame_url: Text = None


class UpstreamError(Wire):
    code: Text = None
    message: Text = None


class Upstream(Wire):
    """The wrapped upstream task (`data.data`): where the video, the seed and a failure's
    upstream code are."""

    content: Loose[UpstreamContent] = None
    seed: Number = None
    error: Loose[UpstreamError] = None


class Task(Wire):
    """Anyfast's task: `status` (many spellings), `progress` ("50%" or 50), `result_url`,
    `fail_reason` (a copy of the URL on success: read only on failure) and the upstream."""

    task_id: Text = None
    status: Text = None
    progress: Percent = None
    result_url: Text = None
    fail_reason: Text = None
    finish_time: Number = None
    data: Loose[Upstream] = None

    @property
    def upstream(self) -> Upstream:
        return self.data or Upstream()


class PollAnswer(ErrorBody):
    """`{"code","message","data":{task}}`; a bare task (with `status` at the top and no task
    object in `data`) is read as the task itself. No task: an error said inside a 200."""

    data: Loose[Task] = None
    #: Only where a callback body names its task at the top without a task object.
    task_id: Text = None

    @model_validator(mode="before")
    @classmethod
    def _bare(cls, value: Any) -> Any:
        if isinstance(value, dict) and not isinstance(value.get("data"), dict) and (
            "status" in value
        ):
            return {"data": value}
        return value


class AssetAnswer(ErrorBody):
    """`{"Id"}` as the page shows, or the same inside `Result` or `data`."""

    Id: Text = None
    Result: Loose[AssetAnswer] = None
    data: Loose[AssetAnswer] = None

    @property
    def ident(self) -> str | None:
        return (self.Id or (self.Result.Id if self.Result else None)
                or (self.data.Id if self.data else None) or None)
