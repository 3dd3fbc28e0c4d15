"""What bot/providers/magnific.py reads from Magnific's answers (docs/GATEWAYS.md#magnific).

Create, poll and webhook all carry the same task object, `{"task_id","status","generated"}`,
wrapped in `data` (create, poll) or bare (webhook). Errors come as `{"message"}` or as
problem+json, with or without a `problem` wrapper.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field, model_validator

from bot.providers.wire import Loose, Objects, Text, Wire


class InvalidParam(Wire):
    name: Text = None
    reason: Text = None


class Problem(Wire):
    """problem+json: a message, perhaps a code, and the parameters it refused."""

    message: Text = None
    code: Text = None
    invalid_params: Objects[InvalidParam] = Field(default_factory=list)


class ErrorBody(Problem):
    """`{"message"}`, `{"problem":{…}}` or the problem unwrapped."""

    problem: Loose[Problem] = None

    def text(self) -> tuple[str, str | None]:
        """(message, code), naming the refused parameters when listed.

        Raises ValueError when the body says nothing (the transport then words the error
        from the HTTP status alone).
        """
        inner: Problem = self.problem or self
        message = (inner.message or self.message or "").strip()
        code = inner.code or self.code
        named = [f"{p.name}: {p.reason}" if p.reason else p.name
                 for p in inner.invalid_params if p.name]
        if named:
            message = f"{message or 'invalid parameters'} ({'; '.join(named)})"
        elif ":attribute" in message:
            # The gateway's template was not filled in; say so rather than show a riddle.
            message = f"{message} (Magnific did not say which parameter)"
        if not message:
            raise ValueError("error body has no message")
        return message, code


class TaskObject(Wire):
    """The task, from a `{"data": task}` answer or bare (the webhook's shape). A body without
    a `status` is not a task."""

    task_id: Text = None
    status: Text
    generated: list[Any] | None = None

    @model_validator(mode="before")
    @classmethod
    def _unwrap(cls, value: Any) -> Any:
        if isinstance(value, dict) and isinstance(value.get("data"), dict):
            return value["data"]
        return value

    @property
    def urls(self) -> list[str]:
        """The result URLs `generated` lists (anything that is not a URL string is skipped)."""
        return [u for u in self.generated or [] if isinstance(u, str) and u]


class TaskList(Wire):
    """The list endpoint's answer, `{"data":[task, …]}`: each item a task object as create and
    poll give it. Items without a status or an id are skipped, not fatal."""

    data: list[Any] = Field(default_factory=list)

    def ids(self) -> list[str]:
        """Every listed item's id, without reading the task (items `tasks` skips included: a
        snapshot that knows more ids adopts less, bot/engine/recovery.py)."""
        return [item["task_id"] for item in self.data
                if isinstance(item, dict) and isinstance(item.get("task_id"), str)
                and item["task_id"]]

    def tasks(self) -> list[TaskObject]:
        out = []
        for item in self.data:
            if not isinstance(item, dict):
                continue
            try:
                task = TaskObject.model_validate(item)
            except ValueError:
                continue
            if task.task_id:
                out.append(task)
        return out
