"""What the engine tells the outside world, and the small port the CLI and Discord implement."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Protocol, runtime_checkable

from bot.store import JobView


class EventKind(StrEnum):
    AWAITING_APPROVAL = "awaiting_approval"
    QUEUED = "queued"  # position, eta
    STARTED = "started"
    PROGRESS = "progress"  # percent
    RETRYING = "retrying"  # reason
    SUCCEEDED = "succeeded"  # result (files on disk)
    HELD = "held"  # result on disk, waiting for a moderator
    FAILED = "failed"  # reason
    CANCELLED = "cancelled"  # reason (what is still billed)
    REJECTED = "rejected"  # reason
    DELIVERED = "delivered"  # reason holds the delivery reference


@dataclass(frozen=True)
class JobResult:
    """The finished files and what they cost. Paths are under data_dir/jobs/<job id>/."""

    video_paths: tuple[Path, ...]
    last_frame_path: Path | None = None
    cost: float | None = None  # the gateway's own unit, when it says
    seed: int | None = None
    credits: int = 0

    @property
    def video_path(self) -> Path:
        return self.video_paths[0]


@dataclass(frozen=True)
class JobEvent:
    kind: EventKind
    position: int | None = None  # 1-based place in the guild's queue
    eta: float | None = None  # seconds from now until the video should be ready
    percent: float | None = None
    reason: str | None = None  # for a person; already scrubbed of secrets
    result: JobResult | None = None
    extra: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class QueueEntry:
    position: int  # 0: running; 1…: waiting, in the order they will start
    eta: float  # seconds from now until done (estimate)
    job: JobView


@runtime_checkable
class Delivery(Protocol):
    """Where results and news go. Implemented by the CLI and the Discord layer.

    `deliver` must be idempotent per `job.id`: after a crash between posting and the engine
    recording the reference, it is called again for the same job and must find the earlier
    post (Discord: the message nonce = job id; CLI: the output file) and return its reference.
    """

    async def on_event(self, job: JobView, event: JobEvent) -> None: ...

    async def deliver(self, job: JobView, result: JobResult) -> str: ...
