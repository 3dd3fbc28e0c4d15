"""What bot/providers/hiapi.py reads from HiAPI's answers (docs/GATEWAYS.md#hiapi).

Every answer is the envelope `{"code","message","data","error_code"}` whose `code` repeats the
HTTP status; the task (detail answer's `data`, or a callback body) lists its results in
`output[]` by type, each with its own `expireAt` (seconds, milliseconds or ISO 8601).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import BeforeValidator, Field, model_validator

from bot.providers.wire import Loose, Objects, Text, Wire


def _status_code(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def epoch(value: Any) -> float | None:
    """expireAt as unix seconds, from seconds, milliseconds or an ISO 8601 string."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        return float(value) / 1000.0 if value > 1e12 else float(value)
    if isinstance(value, str) and value.strip():
        text = value.strip()
        if text.replace(".", "", 1).isdigit():
            return epoch(float(text))
        try:
            return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
        except ValueError:
            return None
    return None


class Envelope(Wire):
    """`{"code","message","data","error_code"}`; a `code` of 400 or more is a failure even
    inside a 2xx answer. `data` is read by the caller (a task id, or a task)."""

    code: Annotated[int | None, BeforeValidator(_status_code)] = None
    message: Text = None
    error_code: Text = None
    data: Any = None

    @property
    def failed(self) -> bool:
        return self.code is not None and self.code >= 400


class Created(Wire):
    """The create answer's `data`: `{"taskId"}`."""

    taskId: Text = None


class Output(Wire):
    """One result: its URL, its type (video, image, audio, first_frame, last_frame, thumbnail;
    a missing type reads as video) and when the URL expires."""

    url: str | None = None  # an item without a URL string is skipped
    type: Text = None
    expireAt: Annotated[float | None, BeforeValidator(epoch)] = None

    @property
    def kind(self) -> str:
        return (self.type or "video").lower()


class TaskError(Wire):
    code: Text = None
    message: Text = None


class Task(Wire):
    """A task: the detail answer's `data`, or a callback body. Statuses are read lower-cased
    by the caller; `error` only on `fail`, `output` only on `success`."""

    taskId: Text = None
    status: Text = None
    error: Loose[TaskError] = None
    output: Objects[Output] = Field(default_factory=list)


class CallbackBody(Task):
    """A callback body: exactly the detail answer's `data`, or (accepted too) wrapped in `data`
    like the detail answer."""

    @model_validator(mode="before")
    @classmethod
    def _unwrap(cls, value: Any) -> Any:
        if isinstance(value, dict) and "taskId" not in value and isinstance(
            value.get("data"), dict
        ):
            return value["data"]
        return value
