"""How a job's row is written and read back (the only place that knows the columns' encodings)."""

from __future__ import annotations

import functools
import json
from collections.abc import Iterator, Sequence
from typing import Any, TypeVar

from bot.models import GenerationRequest
from bot.store.records import JobState, JobView

#: Rows one statement writes when a pass or an announcement changes many (well under both
#: backends' parameter limits: SQLite 32,766, asyncpg 32,767).
CHUNK = 500

T = TypeVar("T")


def chunks(items: Sequence[T]) -> Iterator[Sequence[T]]:
    """`items` in runs of `CHUNK`, one statement each."""
    for start in range(0, len(items), CHUNK):
        yield items[start:start + CHUNK]


#: Columns a transition or update may set, and how each is stored.
JSON_COLUMNS = frozenset({"role_ids", "result_meta", "context", "fleet"})
WRITABLE = frozenset(
    {
        "channel_id", "request", "model", "not_before", "task_id", "attempts", "audio_retried",
        "hold_result", "credits_charged", "result_path", "last_frame_path", "result_meta",
        "delivery_ref", "error_kind", "error_message", "context", "started_at", "finished_at",
        "moderator_id", "provider", "fleet",
    }
)


def encode(column: str, value: Any) -> Any:
    if isinstance(value, GenerationRequest):
        return value.model_dump_json()
    if column in JSON_COLUMNS:
        return json.dumps(list(value) if isinstance(value, tuple) else value)
    if isinstance(value, bool):
        return int(value)
    return value


@functools.lru_cache(maxsize=8192)
def _request(text: str) -> GenerationRequest:
    """A stored request, decoded once per distinct text: a job's row is read at every step and
    every queue view, and its request (the costliest column) only changes on the retry without
    audio. Callers never change a request in place (they `model_copy`)."""
    return GenerationRequest.model_validate_json(text)


def job_from_row(row: Any) -> JobView:
    """A job's row as its `JobView`.

    `row` is a driver's row or a dict of one (bot/store/transitions.py adds to it). It is
    copied to a dict first: `sqlite3.Row` finds a column by name by comparing it
    with every name before it, so reading 36 columns by name made half the cost of a decode.
    The JSON columns are mostly empty and are not parsed then. 17.0 → 10.8 µs a row (a job
    is decoded ~10 times, and a queue view decodes every waiting job).
    """
    r = row if isinstance(row, dict) else dict(zip(row.keys(), row, strict=True))
    return JobView(
        **{name: r[name] for name in _AS_STORED},
        role_ids=tuple(_json(r["role_ids"], [])),
        request=_request(r["request"]),
        state=JobState(r["state"]),
        audio_retried=bool(r["audio_retried"]),
        hold_result=bool(r["hold_result"]),
        forgotten=bool(r["forgotten"]),
        result_meta=_json(r["result_meta"], {}),
        context=_json(r["context"], {}),
        fleet=_json(r["fleet"], {}),
    )


#: `JobView` fields read as their columns store them (the others are decoded above).
_AS_STORED = (
    "id", "guild_id", "channel_id", "user_id", "provider", "model", "seq", "not_before",
    "task_id", "attempts", "credits_estimate", "credits_charged", "result_path",
    "last_frame_path", "delivery_ref", "error_kind", "error_message", "event_id", "created_at",
    "updated_at", "started_at", "finished_at", "moderator_id", "owner", "lease_until",
    "cancel_requested",
)


def _json(text: str | None, empty: Any) -> Any:
    """A JSON column's value, parsed only when it holds something; `empty` for NULL or ''."""
    if not text:
        return empty
    if text == "{}":
        return {}
    if text == "[]":
        return []
    return json.loads(text)
