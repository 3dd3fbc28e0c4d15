"""The engine's facade: a durable job state machine driven by a fair scheduler, one runner per job.

Every step is a row change committed *before* the side effect it announces (`submitting`
before the create call, `generating` with the task id right after it, `downloading` with the
result URLs, `ready` with the files, `delivered` with the post's reference), so a job can be
resumed from its row after any crash, and nothing is sent, charged or posted twice.

The parts, each in its module: `JobMachine` (machine.py) makes every change and announces it,
settling credits by the table in refunds.py; `Dispatcher` (dispatch.py) starts queued jobs as
the caps allow (scheduler.py picks fairly, caps.py reads the caps); `Runners` (runner.py) drive
each active job, `ResultFetcher` (results.py) fetches and proves its files; `QueueView`
(queue.py) tells waiting jobs their place under each server's caps; admission.py and quota.py
decide whether a job may be written; retention.py deletes what is no longer kept; `Fleet`
(fleet.py) keeps gateway health and fails jobs over. This class wires them and is the API.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import httpx

from bot.config import Settings
from bot.errors import InvalidInput, Problem
from bot.i18n import Said
from bot.models import GenerationRequest, TaskState
from bot.pricing import credits_for
from bot.providers.base import Provider
from bot.store import CheckResult, JobState, JobView, NewJob, Store

from . import retention
from .admission import QueueFull, admission_for, applicable_limits, refusal
from .cancel import Canceller, JobNotFound, NotAllowed
from .caps import CapsReader
from .claims import Keeper, encode_state, process_id
from .dispatch import Dispatcher
from .events import Delivery, EventKind, JobEvent, QueueEntry
from .fleet import Fleet, foreign_callback
from .follow import TaskFollower
from .machine import JobMachine
from .policies import PollPolicy, backoff
from .queue import Durations, QueueView
from .quota import QuotaExceeded, QuotaStatus, QuotaWindow, checks_for, window_of
from .refunds import Outcome
from .results import ResultFetcher, job_dir
from .runner import Runners
from .scheduler import EngineLimits, FairQueue

log = logging.getLogger(__name__)

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]
Downloader = Callable[..., Awaitable[int]]


class CallbackUrls(Protocol):
    """The part of the webhook receiver the engine needs (bot/webhooks.py implements it)."""

    def url_for(self, provider: str, job_id: str) -> str: ...


def _backoff(attempt: int, **kw: Any) -> float:
    """`backoff` (policies.py) looked up when called: launchers cutting every retry wait to
    zero patch `bot.engine.engine.backoff` (tests/fakes/instant_retries.py)."""
    return backoff(attempt, **kw)


class Engine:
    """Runs jobs from enqueue to delivery. See the package docstring for the public API."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        *,
        delivery: Delivery,
        providers: Callable[[str], Provider] | Mapping[str, Provider],
        http: httpx.AsyncClient,
        limits: EngineLimits | None = None,
        clock: Clock = time.time,
        sleep: Sleep = asyncio.sleep,
        callbacks: CallbackUrls | None = None,
        poll_policy: PollPolicy | None = None,
        downloader: Downloader | None = None,
        inputs_dir: Path | None = None,
        process: str | None = None,
        own_jobs_only: bool = False,
    ) -> None:
        self.settings = settings
        self.store = store
        self.delivery = delivery
        self.limits = limits or EngineLimits()
        self.poll_policy = poll_policy or PollPolicy()
        self._providers_source = providers
        self._providers: dict[str, Provider] = {}
        self._clock = clock
        self._inputs_dir = inputs_dir or settings.data_dir / "cache"
        self._started = False
        self.process = process or process_id()
        # The CLI's engine runs only what it enqueued or adopted (`adopt`): each `generate` on
        # a shared folder renders its own video and exits as soon as that is written.
        self._own: set[str] = set()
        scope = self._own.__contains__ if own_jobs_only else None
        wake = asyncio.Event()
        fair = FairQueue()
        self._caps = CapsReader(settings, self.limits, store)
        durations = Durations(store, self.provider)
        self._queue = QueueView(
            store, fair=fair, caps=self._caps, durations=durations, clock=clock, sleep=sleep,
            emit=lambda job, event: self._machine.emit(job, event),
            announce_interval=self.limits.announce_interval,
        )
        self._machine = JobMachine(
            store, clock=clock, delivery=delivery, queue=self._queue, wake=wake,
            discard=self.discard_task, owner=self.process, ttl=self.limits.lease_ttl,
            secrets=settings.secrets(),
        )
        results = ResultFetcher(
            settings, store, machine=self._machine, http=http, limits=self.limits, clock=clock,
            sleep=sleep, backoff=_backoff, downloader=downloader,
        )
        follower = TaskFollower(
            machine=self._machine, durations=durations, limits=self.limits,
            poll_policy=self.poll_policy, callbacks=callbacks is not None,
            clock=clock, sleep=sleep, backoff=_backoff,
        )
        self.fleet = Fleet(store, machine=self._machine, ceiling=self._caps.ceiling,  # health
                           ceilings=self._caps.ceilings, provider=self.provider,
                           settings=settings, clock=clock)
        self._runner = Runners(
            store, machine=self._machine, provider=self.provider, results=results,
            follower=follower, delivery=delivery, limits=self.limits,
            callback_url=callbacks.url_for if callbacks is not None else None, fleet=self.fleet,
            clock=clock, sleep=sleep, backoff=_backoff, wake=wake, secrets=settings.secrets())
        self._dispatch = Dispatcher(
            store, fair=fair, caps=self._caps, machine=self._machine, queue=self._queue,
            spawn=lambda job: self._runner.spawn(job.id, resumed=False, claimed=job), wake=wake,
            clock=clock, sleep=sleep, scope=scope,
        )
        self._canceller = Canceller(
            store, machine=self._machine, runner=self._runner, queue=self._queue,
            process=self.process, ttl=self.limits.lease_ttl)
        self._keeper = Keeper(
            store, owner=self.process, ttl=self.limits.lease_ttl,
            interval=self.limits.claim_interval,
            resume=lambda job_id: self._runner.spawn(job_id, resumed=True),
            running=lambda: self._runner.tasks.keys(), deliver=self._runner.deliver_state,
            stranded=lambda: self._runner.stranded,
            cancel=lambda job_id, by: self.cancel(job_id, by, moderator=True), wake=wake,
            scope=scope,
        )

    # ---- lifecycle ------------------------------------------------------------------------
    async def start(self) -> None:
        """Resume unfinished jobs nobody else drives (bot/engine/claims.py), then schedule."""
        if self._started:
            return
        self._started = True
        await self._keeper.start()
        self._dispatch.start()

    async def stop(self) -> None:
        """Stop scheduling and cancel runners, then let go of this process's jobs so another
        process takes them over at once. Safe at any point: rows say where to resume."""
        self._started = False
        await asyncio.gather(self._runner.stop_all(), self._dispatch.stop(), self._queue.stop())
        await self._keeper.stop()

    # Runner, scheduler and keeper tasks: crash tests cancel them as a SIGKILL would end them.
    _runners = property(lambda self: self._runner.tasks)
    _scheduler = property(lambda self: self._dispatch.task)
    _keeper_task = property(lambda self: self._keeper.task)

    def provider(self, name: str) -> Provider:
        if name not in self._providers:
            source = self._providers_source
            if isinstance(source, Mapping):
                self._providers[name] = source[name]  # KeyError: unknown here
            else:
                self._providers[name] = source(name)
        return self._providers[name]

    def _provider_or_invalid(self, name: str) -> Provider:
        try:
            return self.provider(name)
        except (KeyError, ValueError) as exc:
            raise InvalidInput(
                [Problem.keyed(Said("errors.subject.provider"), "errors.request.no_provider",
                               name=repr(name))]
            ) from exc

    # ---- public API -----------------------------------------------------------------------
    async def estimate(self, request: GenerationRequest) -> int:
        return credits_for(request, self.settings.prices)

    async def enqueue(
        self,
        request: GenerationRequest,
        *,
        guild_id: str,
        channel_id: str,
        user_id: str,
        role_ids: Sequence[str] = (),
        context: Mapping[str, Any] | None = None,
        needs_approval: bool = False,
        event_id: str | None = None,
        hold_result: bool = False,
        enforce_quota: bool = True,
        per_minute: int | None = None,
        gateways: Sequence[str] = (),
        job_id: str | None = None,
    ) -> JobView:
        """Write the job and reserve its credits (atomically) before returning it.

        Raises (nothing written) `QuotaExceeded`, `QueueFull` (the server's or the member's
        waiting jobs are at their cap: `GuildLimits.queued` / `user_queued`, else the engine's)
        or `RateLimited` (the member created `per_minute` jobs in this server in the last 60 s
        of the engine clock; None or 0: no rate). `hold_result` keeps the finished video for a
        moderator (`held`) instead of posting it; `enforce_quota=False` still books the credits
        in the ledger but skips the credit limits (the operator's CLI). `gateways`: the ordered
        gateways the job may fail over to (bot/engine/fleet.py), its own first. `job_id`: an
        id the caller derived, so a repeated request writes no second job (the insert fails).
        """
        guild_id, user_id = str(guild_id), str(user_id)
        provider = self._provider_or_invalid(request.provider)
        credits = credits_for(request, self.settings.prices)
        now = self._clock()
        roles = tuple(str(r) for r in role_ids)
        applicable = await applicable_limits(
            self.settings, self.store, guild_id=guild_id, user_id=user_id, role_ids=roles,
            event_id=event_id, now=now,
        )
        checks = (
            checks_for(applicable, guild_id=guild_id, user_id=user_id, event_id=event_id, now=now)
            if enforce_quota
            else []
        )
        new = NewJob(
            id=job_id or str(uuid.uuid4()),
            guild_id=guild_id,
            channel_id=str(channel_id),
            user_id=user_id,
            role_ids=roles,
            request=request,
            provider=request.provider,
            model=request.model or provider.default_model,
            state=JobState.AWAITING_APPROVAL if needs_approval else JobState.QUEUED,
            credits_estimate=credits,
            context=dict(context or {}),
            event_id=event_id,
            hold_result=hold_result, fleet={"order": list(gateways)} if gateways else {},
        )
        admission = admission_for(self.limits, await self._caps.guild(guild_id), per_minute)
        self._own.add(new.id)
        written = await self._machine.create(new, checks, admission, now=now)
        if isinstance(written, CheckResult):
            raise QuotaExceeded(window_of(written.check, applicable, written.used, now), credits)
        if not isinstance(written, JobView):
            raise refusal(written)
        return written

    def adopt(self, job_ids: Sequence[str]) -> None:
        """Let an engine that runs only its own jobs run these too (jobs an earlier, dead
        process left: the CLI finishes them)."""
        self._own.update(job_ids)

    async def job(self, job_id: str) -> JobView | None:
        return await self.store.get_job(job_id)

    async def wait(self, job_id: str) -> JobView:
        """Until the job is delivered, failed, cancelled or rejected — by this process or any
        other (their changes are seen by looking again every `claim_interval`)."""
        while True:
            changed = self._machine.changed(job_id)
            job = await self._get(job_id)
            if job.terminal and not self._machine.announcing(job_id):
                return job
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), self.limits.claim_interval)

    async def approve(self, job_id: str, moderator_id: str) -> JobView:
        """Let a job awaiting approval into the queue, or post a held result (it is charged
        then: a held result is charged when a moderator lets it out, not before)."""
        job = await self._get(job_id)
        to_state = {JobState.AWAITING_APPROVAL: JobState.QUEUED,
                    JobState.HELD: JobState.READY}.get(job.state)
        moved = None if to_state is None else await self._machine.move(
            job, to_state, Outcome.APPROVED, detail=f"approved by {moderator_id}",
            moderator_id=str(moderator_id),
        )
        if moved is None:
            raise NotAllowed(key="errors.job.nothing_to_approve", state=job.state.value)
        if to_state is JobState.QUEUED:
            await self._queue.announce()
        elif self._started:
            self._runner.spawn(job_id, resumed=False)
        return moved

    async def reject(self, job_id: str, moderator_id: str, reason: str) -> JobView:
        """Refuse a job awaiting approval or a held result; the requester's credits come back
        either way (the server, not the requester, absorbs a rejected render), and a rejected
        video's files are deleted at once."""
        job = await self._get(job_id)
        if job.state not in (JobState.AWAITING_APPROVAL, JobState.HELD):
            raise NotAllowed(key="errors.job.nothing_to_reject", state=job.state.value)
        moved = await self._machine.move(
            job, JobState.REJECTED, Outcome.REJECTED,
            detail=f"rejected by {moderator_id}: {reason}",
            error_kind="rejected", error_message=reason, moderator_id=str(moderator_id),
            result_path=None, last_frame_path=None,
        )
        if moved is None:
            return await self.reject(job_id, moderator_id, reason)
        shutil.rmtree(job_dir(self.settings, job_id), ignore_errors=True)
        await self._machine.emit(moved, JobEvent(EventKind.REJECTED, reason=reason))
        return moved

    async def cancel(self, job_id: str, by_user_id: str, *, moderator: bool = False) -> str:
        """Cancel as far as possible and say, for a person, what is still billed (cancel.py;
        a job another process drives is cancelled by that process)."""
        return await self._canceller.cancel(job_id, by_user_id, moderator=moderator)

    async def queue(self, guild_id: str) -> list[QueueEntry]:
        """The guild's running jobs (position 0) and waiting jobs in start order, with ETAs
        under the guild's own caps. Cheap when nothing changed since the last look."""
        entries = await self._queue.entries()
        return [e for e in entries if e.job.guild_id == str(guild_id)]

    async def remaining(
        self, user_id: str, guild_id: str, role_ids: Sequence[str] = (),
        event_id: str | None = None,
    ) -> QuotaStatus:
        now = self._clock()
        guild_id, user_id = str(guild_id), str(user_id)
        applicable = await applicable_limits(
            self.settings, self.store, guild_id=guild_id, user_id=user_id,
            role_ids=[str(r) for r in role_ids], event_id=event_id, now=now,
        )
        windows: list[QuotaWindow] = []
        for check in checks_for(
            applicable, guild_id=guild_id, user_id=user_id, event_id=event_id, now=now
        ):
            windows.append(window_of(check, applicable, await self.store.usage(check), now))
        return QuotaStatus(tuple(windows))

    async def on_callback(self, job_id: str, state: TaskState) -> None:
        """The receiver's sink (news maybe twice); a held job's runner view stands for its row."""
        job = self._runner.view(job_id) if self._keeper.holds(job_id) else None
        job = job or await self.store.get_job(job_id)
        # SUBMITTING too: a fast gateway may call back before the create's answer is written.
        if job is None or job.state not in (JobState.SUBMITTING, JobState.GENERATING) \
                or foreign_callback(job, state):  # an earlier task, or a gateway it left
            return
        if job.owner == self.process and job_id in self._runner.tasks:
            self._runner.deliver_state(job_id, state)
        else:  # another process drives it (or will): the news waits in the database for it
            await self.store.record_update(job_id, encode_state(state), now=self._clock())

    async def cleanup(self, *, days: int | None = None) -> int:
        """Delete what retention no longer keeps; returns how many files went (retention.py).

        Each job finished more than `days` ago (default: SEEDANCE_RETENTION_DAYS) loses its
        folder, its downloaded input copies and the provider's copy of its task, once.
        """
        return await retention.cleanup(
            self.settings, self.store, inputs_dir=self.inputs_dir, days=days, now=self._clock(),
            discard=self.discard_task,
        )

    @property
    def inputs_dir(self) -> Path:
        """Where this engine's downloaded inputs are kept (bot/intake.py writes there). Each
        database has its own: retention deletes the copies no job of *its* database needs."""
        return self._inputs_dir

    async def discard_task(self, job: JobView) -> None:
        """The provider's copy of the job's task is no longer needed (ours is on disk, or the
        job ended, or its owner deleted their data): let it go. Best effort; retention tries
        again."""
        if not job.task_id:
            return
        try:
            await self.provider(job.provider).discard(job.task_id)
        except Exception:
            log.warning("could not discard task %s of job %s", job.task_id, job.id,
                        exc_info=True)

    async def _get(self, job_id: str) -> JobView:
        return await self._canceller.get(job_id)


__all__ = ["CallbackUrls", "Engine", "JobNotFound", "NotAllowed", "QueueFull"]
