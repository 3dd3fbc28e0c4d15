"""Durable state: the one home of SQL (numbered migrations in `migrations/`, WAL, aiosqlite)."""

from bot.store.db import Store
from bot.store.records import (
    ACTIVE_STATES,
    IN_FLIGHT_STATES,
    RUNNING_STATES,
    TERMINAL_STATES,
    WAITING_STATES,
    BlockRule,
    CheckResult,
    EventRow,
    EventStats,
    JobMessage,
    JobState,
    JobView,
    LedgerLine,
    NewJob,
    QuotaLimitRow,
    Timing,
    Transition,
    UsageCheck,
)
from bot.store.schema import migrations

__all__ = [
    "ACTIVE_STATES",
    "IN_FLIGHT_STATES",
    "RUNNING_STATES",
    "TERMINAL_STATES",
    "WAITING_STATES",
    "BlockRule",
    "CheckResult",
    "EventRow",
    "EventStats",
    "JobMessage",
    "JobState",
    "JobView",
    "LedgerLine",
    "NewJob",
    "QuotaLimitRow",
    "Store",
    "Timing",
    "Transition",
    "UsageCheck",
    "migrations",
]
