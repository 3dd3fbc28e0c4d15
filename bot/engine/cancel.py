"""Cancelling a job wherever it stands, and saying honestly what is still billed.

Waiting: it simply ends, its credits return. Submitting or generating in this process: the
runner stops it (at the gateway where it can). Driven by another live process: that process is
asked through the job's row (`Store.request_cancel`; its keeper, bot/engine/claims.py, carries
it out) and the answer is read from the row. Driven by nobody (its process died): this process
takes it over first. Downloading or later: too late, the video is made.
"""

from __future__ import annotations

import asyncio
import time

from bot.errors import Refusal, SeedanceError
from bot.i18n import Said
from bot.store import WAITING_STATES, JobState, JobView, Store

from .claims import known_dead
from .events import EventKind, JobEvent
from .machine import JobMachine
from .queue import QueueView
from .refunds import Outcome
from .runner import Runners

#: How long a cancel waits for another process to carry it out before answering "cancelling".
CANCEL_ELSEWHERE_WAIT = 20.0


class JobNotFound(SeedanceError):
    def __init__(self, job_id: str) -> None:
        super().__init__(f"There is no job {job_id}.")


class NotAllowed(Refusal):
    """The caller may not act on this job (cogs check moderators themselves)."""


class Canceller:
    """`Engine.cancel` (see the module docstring)."""

    def __init__(self, store: Store, *, machine: JobMachine, runner: Runners, queue: QueueView,
                 process: str, ttl: float) -> None:
        self._store = store
        self._machine = machine
        self._runner = runner
        self._queue = queue
        self._process = process
        self._ttl = ttl

    async def get(self, job_id: str) -> JobView:
        job = await self._store.get_job(job_id)
        if job is None:
            raise JobNotFound(job_id)
        return job

    async def cancel(self, job_id: str, by_user_id: str, *, moderator: bool = False) -> str:
        job = await self.get(job_id)
        if not moderator and str(by_user_id) != job.user_id:
            raise NotAllowed(key="errors.job.cancel_not_yours")
        who = f"cancelled by {by_user_id}"
        if job.terminal:
            return Said("core.cancel.already_over", state=job.state.value)
        if job.state in WAITING_STATES:
            moved = await self._machine.move(
                job, JobState.CANCELLED, Outcome.CANCELLED, detail=who,
                events=[JobEvent(EventKind.CANCELLED, reason=Said("core.event.cancelled"))],
            )
            if moved is None:
                return await self.cancel(job_id, by_user_id, moderator=moderator)
            await self._queue.announce()
            return Said("core.cancel.before_start", credits=job.credits_estimate)
        if job.state in (JobState.SUBMITTING, JobState.GENERATING) \
                and job.owner != self._process:
            if not await self._orphaned(job):
                return await self._cancel_elsewhere(job, str(by_user_id))
            taken = await self._store.claim(job.id, self._process, self._ttl,
                                           replacing=job.owner)
            if taken is None:  # another process took it over meanwhile: ask that one
                return await self.cancel(job_id, by_user_id, moderator=moderator)
            job = taken
        if job.state is JobState.SUBMITTING:
            said = await self._runner.cancel_submitting(job, who)
            if said is None:  # it moved on meanwhile: look again
                return await self.cancel(job_id, by_user_id, moderator=moderator)
            return said
        if job.state is JobState.GENERATING:
            await self._runner.stop(job_id)
            return await self._runner.cancel_at_gateway(await self.get(job_id), who)
        return Said("core.cancel.too_late_spent",
                    credits=job.credits_charged or job.credits_estimate)

    async def _orphaned(self, job: JobView) -> bool:
        """Nobody drives `job` now: released, its lease ran out, or its process is gone."""
        if job.owner is None or job.lease_until is None or known_dead(job.owner, self._process):
            return True
        return job.lease_until < await self._store.db_now()

    async def _cancel_elsewhere(self, job: JobView, by: str) -> str:
        """Ask the process driving `job` to cancel it, and say what came of it."""
        if not await self._store.request_cancel(job.id, f"cancelled by {by}"):
            return await self.cancel(job.id, by, moderator=True)
        deadline = time.monotonic() + CANCEL_ELSEWHERE_WAIT
        while time.monotonic() < deadline:
            current = await self.get(job.id)
            if current.state not in (JobState.SUBMITTING, JobState.GENERATING):
                return await self._cancel_outcome(current)
            await asyncio.sleep(0.1)
        return Said("core.cancel.elsewhere")

    async def _cancel_outcome(self, job: JobView) -> str:
        if job.state is JobState.CANCELLED:
            charged = [ln for ln in await self._store.ledger(job.id) if ln.kind == "commit"]
            if charged:
                return Said("core.cancel.billed", provider=job.provider,
                            credits=charged[0].credits)
            return Said("core.cancel.returned", credits=job.credits_estimate)
        if job.terminal:
            return Said("core.cancel.already_over", state=job.state.value)
        return Said("core.cancel.too_late_spent",
                    credits=job.credits_charged or job.credits_estimate)


__all__ = ["CANCEL_ELSEWHERE_WAIT", "Canceller", "JobNotFound", "NotAllowed"]
