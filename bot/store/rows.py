"""How a job's row is written and read back (the only place that knows the columns' encodings)."""

from __future__ import annotations

import functools
import json
from typing import Any

from bot.models import GenerationRequest
from bot.store.records import JobState, JobView

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
    return JobView(
        id=row["id"],
        guild_id=row["guild_id"],
        channel_id=row["channel_id"],
        user_id=row["user_id"],
        role_ids=tuple(json.loads(row["role_ids"])),
        request=_request(row["request"]),
        provider=row["provider"],
        model=row["model"],
        state=JobState(row["state"]),
        seq=row["seq"],
        not_before=row["not_before"],
        task_id=row["task_id"],
        attempts=row["attempts"],
        audio_retried=bool(row["audio_retried"]),
        hold_result=bool(row["hold_result"]),
        credits_estimate=row["credits_estimate"],
        credits_charged=row["credits_charged"],
        result_path=row["result_path"],
        last_frame_path=row["last_frame_path"],
        result_meta=json.loads(row["result_meta"]),
        delivery_ref=row["delivery_ref"],
        error_kind=row["error_kind"],
        error_message=row["error_message"],
        context=json.loads(row["context"]),
        event_id=row["event_id"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        started_at=row["started_at"],
        finished_at=row["finished_at"],
        moderator_id=row["moderator_id"],
        forgotten=bool(row["forgotten"]),
        owner=row["owner"],
        lease_until=row["lease_until"],
        cancel_requested=row["cancel_requested"],
        fleet=json.loads(row["fleet"] or "{}"),
    )
