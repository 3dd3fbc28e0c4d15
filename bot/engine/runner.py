"""One runner per active job: submit, follow the task, fetch its files, deliver.

A runner reads the job's row and does what its state calls for, over and over, until the job
is no longer active: SUBMITTING sends the create call, GENERATING follows the task
(bot/engine/follow.py: polls, or callbacks put in the job's inbox), DOWNLOADING fetches and
proves the files (bot/engine/results.py), READY posts them. Each step ends in a
`JobMachine.move`, so a runner cancelled at any point (stop, crash) is resumed from the row by
the next `Engine.start`.

Create calls per job, worst case. The one retry budget of a create is the durable requeue
here: a create refused in a way that provably made no task (429, 503, or no answer at all; any
retryable error for a gateway whose creates are idempotent, see `resubmit_is_safe`) goes back to
the queue after a backoff that honours the gateway's `retry_after`, while
`attempts <= submit_retries`. So the engine calls `provider.submit` at most
1 + `EngineLimits.submit_retries` times per job, plus one for the announced retry without audio
(it counts in the same `attempts`), plus, for an idempotent gateway only, one per restart that
finds the job in SUBMITTING (the same idempotency key: the gateway answers with the task it
already has). Gateway clients are to make each call a single HTTP attempt (the transport in
bot/providers/http.py retrying no create), so that this budget is the only one.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from bot.errors import GatewayError, InvalidInput, scrub
from bot.i18n import Said
from bot.models import TaskState
from bot.providers.base import Provider
from bot.store import ACTIVE_STATES, JobState, JobView, Store
from bot.store.database import is_outage

from .events import Delivery, EventKind, JobEvent
from .fleet import Fleet
from .follow import TaskFollower
from .inputs import missing_files, restore_library_files
from .machine import JobMachine
from .policies import resubmit_is_safe, submission_key
from .recovery import LISTED_BEFORE, TaskRecovery, lists_tasks, may_have_created
from .refunds import Outcome
from .results import ResultFetcher, job_result
from .scheduler import EngineLimits

log = logging.getLogger(__name__)

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]
Backoff = Callable[..., float]
CallbackUrl = Callable[[str, str], str]


class Runners:
    """The runner tasks of this engine, one per active job (see the module docstring)."""

    def __init__(
        self, store: Store, *, machine: JobMachine, provider: Callable[[str], Provider],
        results: ResultFetcher, follower: TaskFollower, delivery: Delivery,
        limits: EngineLimits, callback_url: CallbackUrl | None, clock: Clock, sleep: Sleep,
        backoff: Backoff, wake: asyncio.Event, secrets: tuple[str, ...],
        fleet: Fleet | None = None,
    ) -> None:
        self._store = store
        self._machine = machine
        self._provider = provider
        self._results = results
        self._delivery = delivery
        self._follower = follower
        self._limits = limits
        self._callback_url = callback_url
        self._clock = clock
        self._sleep = sleep
        self._backoff = backoff
        self._wake = wake
        self._secrets = secrets
        self._fleet = fleet  # gateway health and failover (fleet.py)
        self.tasks: dict[str, asyncio.Task[None]] = {}
        self._inbox: dict[str, asyncio.Queue[TaskState]] = {}
        self._views: dict[str, JobView] = {}
        self._cancel_requested: dict[str, asyncio.Future[str | None]] = {}
        self._recovery = TaskRecovery(store, clock)
        #: Runners that ended on a database outage, their jobs still claimed (claims.py).
        self.stranded = 0

    # ---- tasks ----------------------------------------------------------------------------
    def spawn(self, job_id: str, *, resumed: bool, claimed: JobView | None = None) -> None:
        """Drive the job; `claimed`: its row as this process's claim just wrote it, which
        the first step takes as the later steps take their last move's (no read)."""
        if job_id in self.tasks and not self.tasks[job_id].done():
            return
        self.tasks[job_id] = asyncio.create_task(
            self._run(job_id, resumed=resumed, claimed=claimed), name=f"job-{job_id}")

    async def stop(self, job_id: str) -> None:
        task = self.tasks.pop(job_id, None)
        if task is not None and task is not asyncio.current_task():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def stop_all(self) -> None:
        tasks = list(self.tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self.tasks.clear()
        if self._fleet is not None:
            await self._fleet.drain()

    def view(self, job_id: str) -> JobView | None:
        """The job's row as its runner here took it at its current step (None: no runner)."""
        return self._views.get(job_id)

    def deliver_state(self, job_id: str, state: TaskState) -> None:
        """A gateway's news about the job's task (a callback): the runner reads it next."""
        self._inbox.setdefault(job_id, asyncio.Queue()).put_nowait(state)

    async def _run(self, job_id: str, *, resumed: bool, claimed: JobView | None) -> None:
        job: JobView | None = None
        written: JobView | None = claimed
        try:
            while True:
                # The row as this step's last move wrote it (moves come last in a step), else
                # as it is now: one read per step saved, most of a job's reads.
                job = written or await self._store.get_job(job_id)
                if job is None or job.state not in ACTIVE_STATES:
                    return
                if job.owner != self._machine.owner:
                    return  # another process took it over (this one was presumed dead)
                self._views[job_id] = job
                self._machine.begin_step(job_id)
                try:
                    if job.state is JobState.SUBMITTING:
                        await self._submit(job, resumed=resumed)
                    elif job.state is JobState.GENERATING:
                        await self._follower.follow(
                            job, self._provider(job.provider),
                            self._inbox.setdefault(job.id, asyncio.Queue()), resumed=resumed)
                    elif job.state is JobState.DOWNLOADING:
                        await self._results.download(job, self._provider(job.provider))
                    else:
                        await self._deliver(job)
                finally:
                    written = self._machine.end_step(job_id)
                resumed = False
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if is_outage(exc):  # the keeper resumes it when the database is back
                log.warning("job %s waits: the database is away (%s)", job_id, exc)
                self.stranded += 1
                return
            log.exception("job %s stopped by an unexpected error", job_id)
            if job is not None:
                current = await self._store.get_job(job_id)
                if current is not None and not current.terminal \
                        and current.owner in (None, self._machine.owner):
                    await self._machine.fail(
                        current, Outcome.INTERNAL, "internal",
                        f"An internal error stopped this job ({type(exc).__name__}).",
                    )
        finally:
            if self.tasks.get(job_id) is asyncio.current_task():
                del self.tasks[job_id]
            pending = self._cancel_requested.pop(job_id, None)
            if pending is not None and not pending.done():
                pending.set_result(None)  # the canceller looks at the job again
            self._inbox.pop(job_id, None)
            self._views.pop(job_id, None)
            self._wake.set()

    # ---- SUBMITTING -----------------------------------------------------------------------
    async def _submit(self, job: JobView, *, resumed: bool) -> None:
        provider = self._provider(job.provider)
        idempotent = bool(getattr(provider, "idempotent_submit", False))
        listing = lists_tasks(provider, job.model)
        if resumed and not idempotent and not (listing and LISTED_BEFORE not in job.result_meta):
            # (A listing gateway's job without a snapshot never sent its create: send it.)
            if listing and await self._adopt(job, provider, "after a restart"):
                return
            await self._machine.fail(
                job, Outcome.UNCERTAIN_SUBMIT, "uncertain_submit",
                f"The request may have been sent to {job.provider} just before a restart; it "
                "was not retried to avoid double billing. Your credits were returned.",
            )
            return
        fleet = self._fleet
        if fleet is not None and fleet.fails_over(job) \
                and not await fleet.admit(job, resumed=resumed):
            return  # its gateway's circuit is open: moved on to another, or waiting
        caps = provider.capabilities(job.model)
        callback_url = (
            self._callback_url(job.provider, job.id)
            if self._callback_url is not None and caps.webhooks
            else None
        )
        request = job.request
        if missing_files(request):  # made on another host: its library files (inputs.py)
            await restore_library_files(self._store, request)
        if request.model is None and job.model:
            request = request.model_copy(update={"model": job.model})
        if listing:  # written before the create is sent (bot/engine/recovery.py)
            job = await self._recovery.snapshot(job, provider)
        try:
            submitted = await provider.submit(
                request,
                idempotency_key=submission_key(job.id, without_audio=job.audio_retried),
                callback_url=callback_url,
            )
        except GatewayError as err:
            circuit = None if fleet is None else await fleet.record(job.provider, err)
            if fleet is not None and fleet.should_move(
                    job, err, circuit, budget_left=job.attempts <= self._limits.submit_retries,
                    resumed=resumed):
                await fleet.move_on(job, self._reason(err))
                return
            if resubmit_is_safe(err, idempotent=idempotent) and (
                job.attempts <= self._limits.submit_retries
            ):
                delay = self._backoff(
                    job.attempts, base=self._limits.retry_base, cap=self._limits.retry_cap,
                    hint=err.retry_after,
                )
                why = Said("core.event.retry_in", reason=self._reason(err), seconds=f"{delay:.0f}")
                await self._machine.move(
                    job, JobState.QUEUED, Outcome.RETRY, detail=f"retry: {why}",
                    events=[JobEvent(EventKind.RETRYING, reason=why)],
                    not_before=self._clock() + delay,
                    **(fleet.pin(job, err) if fleet is not None else {}),
                )
                return
            if listing and may_have_created(err) and await self._adopt(
                    job, provider, f"its answer was lost: {self._reason(err)}"):
                return
            await self._machine.fail_gateway(job, "create", err)
            return
        except InvalidInput as err:
            await self._machine.fail(job, Outcome.INVALID_INPUT, "invalid_input", str(err))
            return
        await self._created(job, submitted.task_id, submitted.state,
                            detail=f"task {submitted.task_id}")

    async def _adopt(self, job: JobView, provider: Provider, why: str) -> bool:
        """Follow the task the gateway's list proves is this job's (bot/engine/recovery.py);
        False when it proves none."""
        found = await self._recovery.find(job, provider)
        if found is None:
            return False
        await self._created(job, found.task_id, found,
                            detail=f"task {found.task_id} recovered from {job.provider}'s task "
                                   f"list ({why})")
        return True

    async def _created(self, job: JobView, task_id: str, state: TaskState | None, *,
                       detail: str) -> None:
        fleet = self._fleet
        fields = fleet.created(job) if fleet is not None else {}
        if LISTED_BEFORE in job.result_meta:
            # The task is known: the list snapshot that could have found it (recovery.py) has
            # no use left, and it is the row's largest part (a listing gateway's page of ids),
            # read back with every later move and lease renewal, and kept with the history.
            fields["result_meta"] = {k: v for k, v in job.result_meta.items()
                                     if k != LISTED_BEFORE}
        moved = await self._machine.move(
            job, JobState.GENERATING, Outcome.CREATED, detail=detail, task_id=task_id,
            **fields,
        )
        if fleet is not None:
            fleet.succeeded(job.provider)
        if moved is None:
            return
        if state is not None:
            self.deliver_state(job.id, state)
        pending = self._cancel_requested.pop(job.id, None)
        if pending is not None:
            outcome = await self.cancel_at_gateway(moved, "cancelled while it was being sent")
            if not pending.done():
                pending.set_result(outcome)

    async def cancel_submitting(self, job: JobView, who: str) -> str | None:
        """Cancel a job whose create may be on its way; None: look at the job again (it moved
        on: the create failed, was requeued, or the runner ended).

        With a runner driving the create, it cancels once the gateway names the task and
        answers here. Without one (a restart left the row in SUBMITTING), the job ends now."""
        if job.id in self.tasks:
            pending = self._cancel_requested.get(job.id)
            if pending is None:
                pending = asyncio.get_running_loop().create_future()
                self._cancel_requested[job.id] = pending
            # If the runner took the request between the two reads, await its answer.
            current = await self._store.get_job(job.id)
            moved_on = current is None or current.state is not JobState.SUBMITTING
            if moved_on and self._cancel_requested.pop(job.id, None) is not None:
                return None
            return await asyncio.shield(pending)
        reason = Said("core.cancel.after_restart", credits=job.credits_estimate)
        moved = await self._machine.move(
            job, JobState.CANCELLED, Outcome.CANCELLED, detail=who,
            events=[JobEvent(EventKind.CANCELLED, reason=reason)],
        )
        return None if moved is None else reason

    async def cancel_at_gateway(self, job: JobView, detail: str) -> str:
        """Stop a task the gateway already has; say honestly what is still billed."""
        if job.state is not JobState.GENERATING or not job.task_id:
            self.spawn(job.id, resumed=True)  # the runner was stopped; let the job go on
            return Said("core.cancel.too_late")
        try:
            stopped = await self._provider(job.provider).cancel(job.task_id)
        except GatewayError as err:
            log.info("cancel of %s at %s failed: %s", job.id, job.provider, err)
            stopped = False
        if stopped:
            reason = Said("core.cancel.stopped", provider=job.provider,
                          credits=job.credits_estimate)
        else:
            reason = Said("core.cancel.billed", provider=job.provider,
                          credits=job.credits_estimate)
        moved = await self._machine.move(
            job, JobState.CANCELLED,
            Outcome.CANCELLED_STOPPED if stopped else Outcome.CANCELLED_BILLED, detail=detail,
            events=[JobEvent(EventKind.CANCELLED, reason=reason)],
        )
        if moved is None:
            self.spawn(job.id, resumed=True)
            return Said("core.cancel.moved_on")
        return reason

    # ---- READY ----------------------------------------------------------------------------
    async def _deliver(self, job: JobView) -> None:
        result = job_result(self._results.settings, job)
        if not result.video_paths or not all(p.exists() for p in result.video_paths):
            # Made and fetched by a process on another host, which died before posting: the
            # files are there, not here. Fetch them again (the gateway still has them).
            await self._machine.move(
                job, JobState.DOWNLOADING, Outcome.FILES_ELSEWHERE,
                detail="the files are on another host; fetching them again",
                result_meta={**job.result_meta, "released": True})  # no second review
            return
        last_error: Exception | None = None
        for attempt in range(1, self._limits.delivery_attempts + 1):
            try:
                ref = await self._delivery.deliver(job, result)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                last_error = exc
                log.warning("delivery of %s failed (attempt %d): %s", job.id, attempt, exc)
                await self._sleep(self._backoff(
                    attempt, base=self._limits.retry_base, cap=self._limits.retry_cap))
                continue
            await self._machine.move(
                job, JobState.DELIVERED, Outcome.DELIVERED, detail="delivered",
                events=[JobEvent(EventKind.DELIVERED, reason=str(ref))], delivery_ref=str(ref),
            )
            return
        await self._machine.fail(
            job, Outcome.DELIVERY_FAILED, "delivery",
            f"The video is ready but could not be posted ({last_error}); it is kept at "
            f"{job.result_path}.",
        )

    def _reason(self, err: Exception) -> str:
        return scrub(str(err), self._secrets)


__all__ = ["Runners"]
