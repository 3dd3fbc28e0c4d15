"""What bot/providers/runware.py reads from Runware's answers (docs/GATEWAYS.md#runware).

Every answer (create, getResponse, an error) is `{"data":[…],"errors":[…]}` with either part
missing or both present; a webhook body is one flat result object. An error may also come as a
`data` item with `"status":"error"` and a nested `error` object.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field, model_validator

from bot.providers.wire import Flag, Loose, Number, Objects, Text, Wire


class ItemError(Wire):
    code: Text = None
    message: Text = None


class Item(Wire):
    """One `data` or `errors` entry for a taskUUID: a result (`videoUUID`, `videoURL`, `seed`,
    `cost`), a progress report (`status`, `progress`) or an error (`code`, `message`,
    `parameter`, or a nested `error`)."""

    taskType: Text = None
    taskUUID: Text = None
    status: Text = None
    progress: Number = None
    videoUUID: Text = None
    videoURL: Text = None
    seed: Number = None
    cost: Number = None
    #: The safety check's verdict on this result (only when `safety.checkContent` was on).
    NSFWContent: Flag = None
    code: Text = None
    message: Text = None
    parameter: Text = None
    error: Loose[ItemError] = None

    @property
    def state(self) -> str:
        return (self.status or "").lower()

    def fields(self) -> tuple[str | None, str]:
        """(code, message) of an error entry, the nested `error` object first."""
        source = self.error or self
        code = source.code or self.code
        return (code or None), (source.message or self.message or "the task failed")


def _has_objects(value: Any) -> bool:
    return isinstance(value, list) and any(isinstance(i, dict) for i in value)


class Answer(Wire):
    """`{"data","errors"}` (a bare array is read as `data`); a flat object with a `taskUUID`
    and neither part is one result (the webhook's shape)."""

    data: Objects[Item] = Field(default_factory=list)
    errors: Objects[Item] = Field(default_factory=list)
    #: Only on a flat result object.
    taskUUID: Text = None

    @model_validator(mode="before")
    @classmethod
    def _shape(cls, value: Any) -> Any:
        if isinstance(value, list):
            return {"data": value}
        if isinstance(value, dict) and "taskUUID" in value and not (
            _has_objects(value.get("data")) or _has_objects(value.get("errors"))
        ):
            return {"data": [value], "taskUUID": value["taskUUID"]}
        return value

    @property
    def task(self) -> str | None:
        """The taskUUID the body names: at the top, else that of its first entry."""
        firsts = [group[0].taskUUID for group in (self.data, self.errors) if group]
        return self.taskUUID or next((uid for uid in firsts if uid), None)


class ErrorBody(Wire):
    """`{"errors":[{"code","message","parameter","taskUUID"}]}` (also seen as one `error`
    object), or a bare `{"message"}`."""

    errors: Objects[Item] = Field(default_factory=list)
    message: Text = None

    @model_validator(mode="before")
    @classmethod
    def _one_error(cls, value: Any) -> Any:
        if isinstance(value, dict) and not value.get("errors") and value.get("error"):
            single = value["error"]
            return {**value, "errors": [single] if isinstance(single, dict) else single}
        return value

    def first(self) -> tuple[str | None, str]:
        """(code, message) of the first error, naming the parameter it concerns."""
        if not self.errors:
            return None, self.message or ""
        first = self.errors[0]
        message = first.message or ""
        if first.parameter:
            message = f"{message} (parameter: {first.parameter})"
        return (first.code or None), message
