"""The embedded provider's task bookkeeping (bot/providers/local.py): task ids from job keys,
how many renders run at once, and a render in flight."""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import threading
from dataclasses import dataclass, field

_SAFE_KEY = re.compile(r"^[A-Za-z0-9._-]{1,120}$")
TASK_ID = re.compile(r"^local-[A-Za-z0-9._-]{1,120}$")


def default_parallel_renders() -> int:
    """One render per core this process may use.

    Each render is one busy thread (the renderer encodes with a single x264 thread so that a seed
    gives the same file on every machine, see bot/media/render.py), so N cores run N renders
    at full speed; more would only make every render slower. Cores from the affinity mask, not
    the machine, so a container pinned to two cores runs two.
    """
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not on Linux
        return max(1, os.cpu_count() or 1)


def task_id_for(idempotency_key: str) -> str:
    """The task id of a job; keys that are not filename-safe are hashed so none escapes the dir."""
    if _SAFE_KEY.match(idempotency_key) and idempotency_key.strip("."):
        return f"local-{idempotency_key}"
    return "local-" + hashlib.sha256(idempotency_key.encode()).hexdigest()[:32]


@dataclass
class Render:
    """A render running in this process; `done` is written by the worker thread."""

    total: int
    done: int = 0
    started: bool = False
    stop: threading.Event = field(default_factory=threading.Event)
    task: asyncio.Task[None] | None = None


__all__ = ["TASK_ID", "Render", "default_parallel_renders", "task_id_for"]
