"""The plain records the store hands out: a job as a row, a quota check, a ledger line.

They live beside the store (not in the engine) so the store never imports the engine; the
engine re-exports them as its public vocabulary.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from bot.models import GenerationRequest


class JobState(StrEnum):
    """A job's durable state. Each one is written before the side effect it names."""

    AWAITING_APPROVAL = "awaiting_approval"
    QUEUED = "queued"
    SUBMITTING = "submitting"  # the create call may be on its way to the gateway
    GENERATING = "generating"  # the gateway task id is stored
    DOWNLOADING = "downloading"  # result URLs stored; fetching them
    HELD = "held"  # file on disk, waiting for a moderator before posting
    READY = "ready"  # file on disk, to be posted
    DELIVERED = "delivered"  # posted; delivery reference stored
    FAILED = "failed"
    CANCELLED = "cancelled"
    REJECTED = "rejected"


TERMINAL_STATES = frozenset(
    {JobState.DELIVERED, JobState.FAILED, JobState.CANCELLED, JobState.REJECTED}
)
#: States holding a gateway slot (the create may be in flight, or the task exists).
IN_FLIGHT_STATES = frozenset({JobState.SUBMITTING, JobState.GENERATING})
#: States that count as "running" for the per-guild and per-user caps.
RUNNING_STATES = frozenset({JobState.SUBMITTING, JobState.GENERATING, JobState.DOWNLOADING})
#: States a runner task drives forward (resumed on start).
ACTIVE_STATES = frozenset(
    {JobState.SUBMITTING, JobState.GENERATING, JobState.DOWNLOADING, JobState.READY}
)
WAITING_STATES = frozenset({JobState.AWAITING_APPROVAL, JobState.QUEUED})


@dataclass(frozen=True)
class JobView:
    """One job as stored. Immutable: re-read it from the store to see a newer state."""

    id: str
    guild_id: str
    channel_id: str
    user_id: str
    role_ids: tuple[str, ...]
    request: GenerationRequest
    provider: str
    model: str | None
    state: JobState
    seq: int
    not_before: float = 0.0
    task_id: str | None = None
    attempts: int = 0
    audio_retried: bool = False
    hold_result: bool = False
    credits_estimate: int = 0
    credits_charged: int = 0
    result_path: str | None = None
    last_frame_path: str | None = None
    result_meta: dict[str, Any] = field(default_factory=dict)
    delivery_ref: str | None = None
    error_kind: str | None = None
    error_message: str | None = None
    context: dict[str, Any] = field(default_factory=dict)
    event_id: str | None = None
    created_at: float = 0.0
    updated_at: float = 0.0
    started_at: float | None = None
    finished_at: float | None = None
    moderator_id: str | None = None
    forgotten: bool = False
    owner: str | None = None  # the process driving the job now (active states)
    lease_until: float | None = None  # by the database's clock; then anyone may take it over
    cancel_requested: str | None = None  # who asked its owner to cancel it
    #: Failover (bot/engine/fleet.py): {"order": gateways, "moves": [...], "note": why it
    #: moved, "waiting_since": t}; empty for a job bound to one gateway.
    fleet: dict[str, Any] = field(default_factory=dict)

    @property
    def terminal(self) -> bool:
        return self.state in TERMINAL_STATES


@dataclass(frozen=True)
class Timing:
    """How long a finished generation took, kept for ETAs (`gateway_durations`): written with
    the state change that ends the task (`Store.transition`), so it is counted once, or not at
    all when the change was not made."""

    provider: str
    resolution: str
    duration: int
    seconds: float


@dataclass(frozen=True)
class Transition:
    job_id: str
    from_state: str | None
    to_state: str
    at: float
    detail: str


@dataclass(frozen=True)
class LedgerLine:
    job_id: str
    user_id: str
    guild_id: str
    event_id: str | None
    kind: str  # reserve | commit | release
    credits: int
    at: float
    reserved_at: float


@dataclass(frozen=True)
class UsageCheck:
    """One quota window to check inside the reservation transaction.

    Usage is the sum of reservations minus releases whose reservation time is at or after
    `since`, filtered by guild (always), by user (when set) and by event (when set).
    """

    name: str  # "user daily", "guild monthly", "event"
    guild_id: str
    limit: int  # < 0: unlimited
    since: float = 0.0
    user_id: str | None = None
    event_id: str | None = None
    outside_events: bool = False  # count only spending outside events (the daily window)


@dataclass(frozen=True)
class CheckResult:
    check: UsageCheck
    used: int


@dataclass(frozen=True)
class Admission:
    """Caps `Store.create_job` checks after the quota, in the same transaction as the insert,
    so two enqueues at once cannot both take the last place. None (or 0): no cap."""

    guild_queued: int | None = None  # the guild's jobs waiting (queued or awaiting approval)
    user_queued: int | None = None  # the member's jobs waiting in that guild
    per_minute: int | None = None  # the member's jobs created in that guild in the last 60 s


@dataclass(frozen=True)
class AdmissionRefused:
    """The admission cap a new job would break: which one, its limit, and the count found."""

    cap: str  # guild_queued | user_queued | per_minute
    limit: int
    count: int


@dataclass(frozen=True)
class QuotaLimitRow:
    scope: str  # user | guild | role | event
    guild_id: str
    subject_id: str
    credits: int
    window: str  # day | month | event


@dataclass(frozen=True)
class NewJob:
    """What `Store.create_job` needs; the store assigns `seq` and writes the first transition."""

    id: str
    guild_id: str
    channel_id: str
    user_id: str
    role_ids: tuple[str, ...]
    request: GenerationRequest
    provider: str
    model: str | None
    state: JobState
    credits_estimate: int
    context: dict[str, Any] = field(default_factory=dict)
    event_id: str | None = None
    hold_result: bool = False
    fleet: dict[str, Any] = field(default_factory=dict)  # {"order": [...]}: may fail over


@dataclass(frozen=True)
class BlockRule:
    """A prompt rule of a guild: a whole word (any case) or a Python regular expression."""

    id: int
    guild_id: str
    kind: str  # word | regex
    pattern: str
    added_by: str
    created_at: float


@dataclass(frozen=True)
class UserBlock:
    guild_id: str
    user_id: str
    reason: str
    blocked_by: str
    at: float


@dataclass(frozen=True)
class EventRow:
    """A UGC event: intake in one channel until `ends_at`, results in a gallery thread."""

    id: str
    guild_id: str
    name: str
    channel_id: str
    ends_at: float
    credits_per_user: int
    moderation: str  # off | prompts | results | both
    thread_id: str | None = None
    state: str = "open"  # open | closed
    created_by: str = ""
    created_at: float = 0.0
    closed_at: float | None = None
    summary_ref: str | None = None
    #: The settings the event fixes for every entry (bot/guild.py FixedSettings, as stored).
    fixed: Mapping[str, Any] = field(default_factory=dict)

    @property
    def open(self) -> bool:
        return self.state == "open"


@dataclass(frozen=True)
class EventStats:
    """What an event's summary says: entries are jobs asked for, posted are delivered ones."""

    entries: int
    posted: int
    rejected: int
    participants: int
    credits_used: int


@dataclass(frozen=True)
class JobMessage:
    job_id: str
    kind: str
    channel_id: str
    message_id: str


@dataclass
class Served:
    """The fair queue's memory: when each server and each member of a server was last served
    (the scheduler's tick then), and the tick. Kept in the database so every process and every
    restart goes on with the same turns (bot/engine/scheduler.py)."""

    guilds: dict[str, int] = field(default_factory=dict)
    users: dict[tuple[str, str], int] = field(default_factory=dict)
    tick: int = 0


@dataclass(frozen=True)
class RunningCounts:
    """How many jobs hold a slot, across every process: in flight per gateway (submitting or
    generating), running per server and per member of a server (also downloading)."""

    gateways: dict[str, int] = field(default_factory=dict)
    guilds: dict[str, int] = field(default_factory=dict)
    users: dict[tuple[str, str], int] = field(default_factory=dict)


@dataclass(frozen=True)
class QueuedRow:
    """A queued job as the scheduler reads it: only what the fair order and the caps need (its
    request is not decoded, so a pass over thousands of waiting jobs stays cheap)."""

    id: str
    guild_id: str
    user_id: str
    provider: str
    seq: int
    not_before: float
    attempts: int


@dataclass(frozen=True)
class SchedulePass:
    """What one scheduling pass did: the jobs it started (claimed by the caller), the waiting
    jobs as it saw them (minus those), and the served memory it left."""

    started: list[JobView]
    waiting: list[QueuedRow]
    served: Served
