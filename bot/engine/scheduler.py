"""Fair order of waiting jobs: round-robin across guilds, then across users inside a guild.

The database keeps the jobs and their `seq` (arrival order); this module only decides who goes
next. Each guild and each (guild, user) remembers when it was last served; the one served
longest ago (never served first, ties by oldest job) goes next, so a user with twenty jobs
waiting delays another user's single job by at most one slot. Caps apply per gateway (in
flight), per guild (running) and per user (running); the per-user queued cap is checked at
enqueue. The memory of who was served is per process: after a restart ties fall back to `seq`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from bot.store import IN_FLIGHT_STATES, JobView


@dataclass(frozen=True)
class EngineLimits:
    """Caps and retry bounds. The defaults suit one bot on one small server."""

    gateway_in_flight: int = 4  # per provider: jobs submitting or generating
    guild_running: int = 2  # per guild: jobs submitting, generating or downloading
    user_running: int = 1
    user_queued: int = 5  # waiting (queued or awaiting approval) per user per guild
    submit_retries: int = 3  # transient create failures before the job fails
    poll_errors: int = 8  # consecutive failed polls before the job fails
    download_attempts: int = 3
    delivery_attempts: int = 5
    retry_base: float = 2.0  # seconds, doubled per attempt
    retry_cap: float = 60.0


class FairQueue:
    """Chooses which queued jobs start now, and predicts the order of the rest."""

    def __init__(self) -> None:
        self._tick = 0
        self._guild_served: dict[str, int] = {}
        self._user_served: dict[tuple[str, str], int] = {}

    def _next(
        self,
        jobs: Sequence[JobView],
        guild_served: dict[str, int],
        user_served: dict[tuple[str, str], int],
    ) -> JobView:
        first_seq: dict[str, int] = {}
        for job in jobs:
            first_seq.setdefault(job.guild_id, job.seq)
        guild = min(first_seq, key=lambda g: (guild_served.get(g, -1), first_seq[g]))
        in_guild = [j for j in jobs if j.guild_id == guild]
        user_seq: dict[str, int] = {}
        for job in in_guild:
            user_seq.setdefault(job.user_id, job.seq)
        user = min(
            user_seq, key=lambda u: (user_served.get((guild, u), -1), user_seq[u])
        )
        return next(j for j in in_guild if j.user_id == user)

    def pick(
        self,
        queued: Sequence[JobView],
        running: Iterable[JobView],
        limits: EngineLimits,
        now: float,
    ) -> list[JobView]:
        """The jobs to start now, in start order; remembers them as served."""
        running = list(running)
        gateway = Counter(j.provider for j in running if j.state in IN_FLIGHT_STATES)
        guild = Counter(j.guild_id for j in running)
        user = Counter((j.guild_id, j.user_id) for j in running)
        chosen: list[JobView] = []
        pending = sorted((j for j in queued if j.not_before <= now), key=lambda j: j.seq)
        while True:
            eligible = [
                j for j in pending
                if gateway[j.provider] < limits.gateway_in_flight
                and guild[j.guild_id] < limits.guild_running
                and user[(j.guild_id, j.user_id)] < limits.user_running
            ]
            if not eligible:
                return chosen
            job = self._next(eligible, self._guild_served, self._user_served)
            self._tick += 1
            self._guild_served[job.guild_id] = self._tick
            self._user_served[(job.guild_id, job.user_id)] = self._tick
            gateway[job.provider] += 1
            guild[job.guild_id] += 1
            user[(job.guild_id, job.user_id)] += 1
            chosen.append(job)
            pending.remove(job)

    def order(self, queued: Sequence[JobView]) -> list[JobView]:
        """The order the waiting jobs would start in if slots opened one at a time."""
        guild_served = dict(self._guild_served)
        user_served = dict(self._user_served)
        tick = self._tick
        pending = sorted(queued, key=lambda j: j.seq)
        ordered: list[JobView] = []
        while pending:
            job = self._next(pending, guild_served, user_served)
            tick += 1
            guild_served[job.guild_id] = tick
            user_served[(job.guild_id, job.user_id)] = tick
            ordered.append(job)
            pending.remove(job)
        return ordered


def estimate_finish(
    ordered: Sequence[JobView],
    running: Sequence[JobView],
    limits: EngineLimits,
    expected: Callable[[JobView], float],
    now: float,
) -> dict[str, float]:
    """Seconds from now until each job (running or waiting) should be done.

    A greedy simulation: each waiting job starts when its gateway, its guild and its user all
    have a free slot, and takes its expected duration (recent real durations, else typical).
    """
    finish: dict[str, float] = {}
    gateway: dict[str, list[float]] = {}
    guild: dict[str, list[float]] = {}
    user: dict[tuple[str, str], list[float]] = {}

    def slots(table: dict[Any, list[float]], key: object, cap: int) -> list[float]:
        if key not in table:
            table[key] = [0.0] * max(1, cap)
        result: list[float] = table[key]
        return result

    def occupy(free: list[float], until: float) -> None:
        free.remove(min(free))
        free.append(until)

    for job in running:
        started = job.started_at if job.started_at is not None else now
        done = max(0.0, started + expected(job) - now)
        finish[job.id] = done
        for table, key, cap in (
            (gateway, job.provider, limits.gateway_in_flight),
            (guild, job.guild_id, limits.guild_running),
            (user, (job.guild_id, job.user_id), limits.user_running),
        ):
            occupy(slots(table, key, cap), done)
    for job in ordered:
        free = [
            slots(gateway, job.provider, limits.gateway_in_flight),
            slots(guild, job.guild_id, limits.guild_running),
            slots(user, (job.guild_id, job.user_id), limits.user_running),
        ]
        start = max(max(0.0, job.not_before - now), *(min(f) for f in free))
        done = start + expected(job)
        finish[job.id] = done
        for f in free:
            occupy(f, done)
    return finish
