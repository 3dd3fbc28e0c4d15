"""Following a task the gateway has: polls, callbacks, progress, and how it ended.

Polls come on a `PollPolicy` schedule (stretched when the gateway calls back, so polling is
only a fallback); a callback's state, put in the job's inbox by `Engine.on_callback`, is read
as soon as it arrives. Transient poll errors are retried with backoff (`poll_errors` in a row at
most). The task's end moves the job: DOWNLOADING with the result URLs, SUBMITTING again for the
one retry without audio, or FAILED (bot/engine/refunds.py says who pays).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from bot.errors import AudioModerationError, GatewayError, TaskFailedError
from bot.i18n import Said
from bot.models import TaskState, TaskStatus
from bot.providers.base import Provider
from bot.store import JobState, JobView

from .events import EventKind, JobEvent
from .machine import JobMachine
from .policies import PollPolicy
from .queue import Durations
from .refunds import Outcome, gateway_outcome
from .scheduler import EngineLimits

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]
Backoff = Callable[..., float]


class TaskFollower:
    """Drives a GENERATING job until its task ends (see the module docstring)."""

    def __init__(
        self, *, machine: JobMachine, durations: Durations, limits: EngineLimits,
        poll_policy: PollPolicy, callbacks: bool, clock: Clock, sleep: Sleep, backoff: Backoff,
    ) -> None:
        self._machine = machine
        self._durations = durations
        self._limits = limits
        self._poll_policy = poll_policy
        self._callbacks = callbacks  # the engine hands gateways a callback URL
        self._clock = clock
        self._sleep = sleep
        self._backoff = backoff

    async def follow(
        self, job: JobView, provider: Provider, inbox: asyncio.Queue[TaskState], *,
        resumed: bool,
    ) -> None:
        """Until the task succeeds (DOWNLOADING), fails, or is lost sight of (FAILED)."""
        assert job.task_id is not None, "generating without a task id"
        caps = provider.capabilities(job.model)
        delays = self._poll_policy.delays(
            await self._durations.expected(job),
            callbacks=self._callbacks and caps.webhooks,
            resumed=resumed,
        )
        # Gateways that return several videos per task need to know how many to wait for;
        # the job's row says, so any process following the task (after a restart or a
        # takeover) knows as well as the one that created it.
        expect = getattr(provider, "expect_results", None)
        if expect is not None:
            expect(job.task_id, job.request)
        errors = 0
        # The poll schedule advances only on real polls: a "still running" from the create
        # answer or a callback must not pull the next poll earlier.
        due = self._clock() + next(delays)
        last_percent: int | None = None
        while True:
            state = await self._next_state(inbox, max(0.0, due - self._clock()))
            polled = state is None
            if state is None:
                try:
                    state = await provider.poll(job.task_id)
                    errors = 0
                except GatewayError as err:
                    errors += 1
                    if err.retryable and errors <= self._limits.poll_errors:
                        due = self._clock() + self._backoff(
                            errors, base=self._limits.retry_base, cap=self._limits.retry_cap,
                            hint=err.retry_after,
                        )
                        continue
                    # We lost sight of the task, not the task itself: it runs on and is billed,
                    # unless the gateway says it does not know it (see refunds.py, `poll`).
                    await self._machine.fail(
                        job, gateway_outcome("poll", err), err.kind,
                        f"{err} — lost track of the task at {job.provider}; it may still "
                        "finish and be billed there.", error=err,
                    )
                    return
            if state.task_id and state.task_id != job.task_id:
                if polled:
                    due = self._clock() + next(delays)
                continue
            if state.progress is not None and state.status is TaskStatus.RUNNING:
                percent = int(state.progress)
                if percent != last_percent:
                    last_percent = percent
                    await self._machine.emit(
                        job, JobEvent(EventKind.PROGRESS, percent=float(percent)))
            if state.status is TaskStatus.SUCCEEDED and not polled and (
                    state.result is None
                    or len(state.result.video_urls) < job.request.results):
                # A callback that saw only part of a set (the others reached another
                # process): the gateway has them all, so look now.
                due = self._clock()
                continue
            if state.status is TaskStatus.SUCCEEDED:
                await self._succeeded(job, state)
                return
            if state.status is TaskStatus.FAILED:
                error = state.error
                if not isinstance(error, GatewayError):
                    error = TaskFailedError(
                        str(error) if error else "the task failed", provider=job.provider
                    )
                await self._task_failed(job, error)
                return
            if state.retry_after is not None:
                due = self._clock() + state.retry_after
            elif polled:
                due = self._clock() + next(delays)

    async def _next_state(self, inbox: asyncio.Queue[TaskState], delay: float) -> (
        TaskState | None
    ):
        """A callback's state if one arrives within `delay`, else None (time to poll)."""
        if not inbox.empty():
            return inbox.get_nowait()
        getter = asyncio.ensure_future(inbox.get())
        sleeper = asyncio.ensure_future(self._sleep(delay))
        try:
            await asyncio.wait({getter, sleeper}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            sleeper.cancel()
            if not getter.done():
                getter.cancel()
        if getter.done() and not getter.cancelled():
            return getter.result()
        return None

    async def _succeeded(self, job: JobView, state: TaskState) -> None:
        result = state.result
        if result is None or not result.video_urls:
            await self._machine.fail(
                job, Outcome.NO_VIDEO, "task_failed",
                f"{job.provider} reported success but gave no video.",
            )
            return
        now = self._clock()
        meta = {
            "video_urls": list(result.video_urls),
            "last_frame_url": result.last_frame_url,
            "flagged": list(result.flagged),
            "seed": result.seed,
            "cost": result.cost,
            "expires_at": result.expires_at,
        }
        timing = (None if job.started_at is None
                  else self._durations.timing(job, now - job.started_at))
        moved = await self._machine.move(
            job, JobState.DOWNLOADING, Outcome.RESULT_READY,
            detail="result ready at the gateway", result_meta=meta, timing=timing,
        )
        if moved is not None and timing is not None:
            self._durations.written(timing)

    async def _task_failed(self, job: JobView, error: GatewayError) -> None:
        if isinstance(error, AudioModerationError) and job.request.audio and not job.audio_retried:
            why = Said("core.event.without_audio")
            await self._machine.move(
                job, JobState.SUBMITTING, Outcome.RETRY_WITHOUT_AUDIO,
                detail=f"retry without audio: {error}",
                events=[JobEvent(EventKind.RETRYING, reason=why)],
                request=job.request.model_copy(update={"audio": False}), audio_retried=True,
                task_id=None, attempts=job.attempts + 1, started_at=self._clock(),
            )
            return
        await self._machine.fail_gateway(job, "task", error)


__all__ = ["TaskFollower"]
