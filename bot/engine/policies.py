"""Timing and retry rules: when to poll, how long to back off, which key to submit with."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

from bot.errors import GatewayError


@dataclass(frozen=True)
class PollPolicy:
    """First poll near the typical time, then a growing interval up to a ceiling.

    A 60 s task with a 60 s typical time is polled at about 45, 55 and 70 s: three polls. With
    callbacks the same schedule is stretched `callback_factor` times: polling is only a fallback.
    """

    first_fraction: float = 0.75
    first_min: float = 0.5
    first_max: float = 60.0
    step_max: float = 10.0
    factor: float = 1.5
    ceiling: float = 30.0
    callback_factor: float = 4.0

    def delays(self, typical: float, *, callbacks: bool = False, resumed: bool = False) -> (
        Iterator[float]
    ):
        """Seconds to wait before each poll; endless. A resumed job is polled at once."""
        stretch = self.callback_factor if callbacks else 1.0
        first = min(max(typical * self.first_fraction, self.first_min), self.first_max)
        yield 0.0 if resumed else first * stretch
        step = min(max(typical / 6, 1.0), self.step_max)
        while True:
            yield min(step, self.ceiling) * stretch
            step *= self.factor


def backoff(attempt: int, *, base: float, cap: float, hint: float | None = None) -> float:
    """Exponential wait before retry `attempt` (1-based), at least the gateway's hint."""
    delay = min(cap, base * (2 ** max(0, attempt - 1)))
    return max(delay, hint or 0.0)


def submission_key(job_id: str, *, without_audio: bool) -> str:
    """The idempotency key for a job's create call.

    The job id itself, so a resubmission after a crash is recognised by gateways that dedupe
    (Runware's taskUUID). The retry without audio is a different request and needs a different,
    still deterministic, key: a UUID4-shaped hash of the job id.
    """
    if not without_audio:
        return job_id
    digest = bytearray(hashlib.sha256(f"{job_id}:no-audio".encode()).digest()[:16])
    digest[6] = (digest[6] & 0x0F) | 0x40  # version 4
    digest[8] = (digest[8] & 0x3F) | 0x80  # RFC 4122 variant
    return str(uuid.UUID(bytes=bytes(digest)))


def resubmit_is_safe(error: GatewayError, *, idempotent: bool) -> bool:
    """May a failed create be sent again? Only if it provably did not create a task.

    429 and 503 mean the gateway did not take the work, a missing status means the request
    never left; anything else (500, 502, 504, timeouts) might have created a task, which only an
    idempotent provider can safely repeat.
    """
    if not error.retryable:
        return False
    return idempotent or error.status in (None, 429, 503)
