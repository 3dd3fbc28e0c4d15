"""The engine: a durable job state machine driven by a fair scheduler and one runner per job.

Every step is a row change committed *before* the side effect it announces (`submitting`
before the create call, `generating` with the task id right after it, `downloading` with the
result URLs, `ready` with the files, `delivered` with the post's reference), so a job can be
resumed from its row after any crash, and nothing is sent, charged or posted twice.

Queue positions are announced coalesced: every row change bumps a generation counter
(`_notify`); the first change after a quiet spell is announced at once, further ones at most
once per `EngineLimits.announce_interval` by a background announcer. The rows of the queue are
kept as a snapshot tagged with the generation they were read at, so `queue()` and the
announcer re-read the table only when something changed.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import httpx

from bot.config import Settings
from bot.errors import (
    AudioModerationError,
    DownloadError,
    GatewayError,
    InvalidInput,
    Problem,
    RealFaceError,
    RefusedDownload,
    ResultExpiredError,
    SeedanceError,
    TaskFailedError,
    TaskNotFoundError,
    scrub,
)
from bot.media.fetch import download as fetch_download
from bot.media.fetch import safe_url
from bot.media.probe import UnreadableMedia, probe_file_async
from bot.models import GenerationRequest, MediaKind, TaskState, TaskStatus
from bot.pricing import credits_for
from bot.providers.base import Capabilities, Provider
from bot.store import (
    ACTIVE_STATES,
    RUNNING_STATES,
    WAITING_STATES,
    CheckResult,
    JobState,
    JobView,
    NewJob,
    Store,
)
from bot.store.db import LedgerKind
from bot.words import a

from .events import Delivery, EventKind, JobEvent, JobResult, QueueEntry
from .policies import PollPolicy, backoff, resubmit_is_safe, submission_key
from .quota import (
    QuotaExceeded,
    QuotaStatus,
    QuotaWindow,
    checks_for,
    resolve_limits,
    window_of,
)
from .scheduler import EngineLimits, FairQueue, estimate_finish

log = logging.getLogger(__name__)

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]
Downloader = Callable[..., Awaitable[int]]


class CallbackUrls(Protocol):
    """The part of the webhook receiver the engine needs (bot/webhooks.py implements it)."""

    def url_for(self, provider: str, job_id: str) -> str: ...


class JobNotFound(SeedanceError):
    def __init__(self, job_id: str) -> None:
        super().__init__(f"There is no job {job_id}.")


class NotAllowed(SeedanceError):
    """The caller may not act on this job (cogs check moderators themselves)."""


class QueueFull(SeedanceError):
    """The user already has as many jobs waiting as the per-user cap allows."""


#: A downloaded input no job refers to is deleted by retention once this old: intake writes the
#: file a moment before the job's row, so a fresh one may be about to be used.
ORPHAN_INPUT_SECONDS = 3600.0

#: A snapshot older than this is re-read even if this engine changed nothing (another process,
#: e.g. the CLI, may have written to the same database).
_SNAPSHOT_MAX_AGE = 5.0


@dataclass
class _QueueSnapshot:
    """Queued and running rows as read at `generation`; the fair order is cached per tick."""

    generation: int
    loaded_at: float
    queued: list[JobView]
    running: list[JobView]
    order_tick: int = -1
    ordered: list[JobView] = field(default_factory=list)


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
    ) -> None:
        self.settings = settings
        self.store = store
        self.delivery = delivery
        self.limits = limits or EngineLimits()
        self.poll_policy = poll_policy or PollPolicy()
        self._providers_source = providers
        self._providers: dict[str, Provider] = {}
        self._http = http
        self._clock = clock
        self._sleep = sleep
        self._callbacks = callbacks
        self._downloader = downloader
        self._policy = settings.network_policy()
        self._inputs_dir = inputs_dir or settings.data_dir / "cache"
        self._fair = FairQueue()
        self._runners: dict[str, asyncio.Task[None]] = {}
        self._scheduler: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._changed: dict[str, asyncio.Event] = {}
        self._inbox: dict[str, asyncio.Queue[TaskState]] = {}
        self._cancel_requested: dict[str, asyncio.Future[str | None]] = {}
        self._announced: dict[str, int] = {}
        self._announce_lock = asyncio.Lock()
        self._announcer: asyncio.Task[None] | None = None
        self._next_announce = float("-inf")  # engine clock: no pass before this
        self._generation = 0  # bumped on every job change (see _notify)
        self._announced_gen = 0  # the generation the last announcement was computed from
        self._moved: dict[str, int] = {}  # job id -> generation of its latest change
        self._snapshot: _QueueSnapshot | None = None
        self._expected: dict[tuple[str, str, int], float] = {}
        self._started = False

    # ---- lifecycle ------------------------------------------------------------------------
    async def start(self) -> None:
        """Resume every unfinished job from its row, then start scheduling."""
        if self._started:
            return
        self._started = True
        for job in await self.store.jobs(ACTIVE_STATES):
            self._spawn(job.id, resumed=True)
        self._scheduler = asyncio.create_task(self._schedule_loop(), name="engine-scheduler")
        self._wake.set()

    async def stop(self) -> None:
        """Stop scheduling and cancel runners. Safe at any point: rows say where to resume."""
        self._started = False
        tasks = list(self._runners.values())
        for background in (self._scheduler, self._announcer):
            if background is not None:
                tasks.append(background)
        self._scheduler = self._announcer = None
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._runners.clear()

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
                [Problem("provider", f"{name!r} is not available here; pick another provider")]
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
    ) -> JobView:
        """Write the job and reserve its credits (atomically) before returning it.

        Raises `QuotaExceeded` (nothing written) or `QueueFull`. `hold_result` keeps the
        finished video for a moderator (`held`) instead of posting it; `enforce_quota=False`
        still books the credits in the ledger but skips the limits (the operator's CLI).
        """
        guild_id, user_id = str(guild_id), str(user_id)
        provider = self._provider_or_invalid(request.provider)
        waiting = await self.store.jobs(WAITING_STATES, guild_id=guild_id, user_id=user_id)
        if len(waiting) >= self.limits.user_queued:
            raise QueueFull(
                f"You already have {len(waiting)} videos waiting; wait for one to start or "
                "cancel one first."
            )
        credits = credits_for(request, self.settings.prices)
        now = self._clock()
        applicable = resolve_limits(
            await self.store.quota_limits(guild_id),
            user_id=user_id,
            role_ids=[str(r) for r in role_ids],
            event_id=event_id,
            default_user_daily=self.settings.seedance_user_daily_credits,
            default_guild_monthly=self.settings.seedance_guild_monthly_credits,
        )
        checks = (
            checks_for(applicable, guild_id=guild_id, user_id=user_id, event_id=event_id, now=now)
            if enforce_quota
            else []
        )
        new = NewJob(
            id=str(uuid.uuid4()),
            guild_id=guild_id,
            channel_id=str(channel_id),
            user_id=user_id,
            role_ids=tuple(str(r) for r in role_ids),
            request=request,
            provider=request.provider,
            model=request.model or provider.default_model,
            state=JobState.AWAITING_APPROVAL if needs_approval else JobState.QUEUED,
            credits_estimate=credits,
            context=dict(context or {}),
            event_id=event_id,
            hold_result=hold_result,
        )
        exceeded = await self.store.create_job(new, checks, now=now)
        if isinstance(exceeded, CheckResult):  # (no admission caps asked for here)
            raise QuotaExceeded(window_of(exceeded.check, applicable, exceeded.used, now), credits)
        self._notify(new.id)
        job = await self._get(new.id)
        if needs_approval:
            await self._emit(job, JobEvent(EventKind.AWAITING_APPROVAL))
        else:
            await self._announce()
            self._wake.set()
        return job

    async def job(self, job_id: str) -> JobView | None:
        return await self.store.get_job(job_id)

    async def wait(self, job_id: str) -> JobView:
        """Until the job is delivered, failed, cancelled or rejected."""
        while True:
            changed = self._changed.setdefault(job_id, asyncio.Event())
            job = await self._get(job_id)
            if job.terminal:
                return job
            await changed.wait()

    async def approve(self, job_id: str, moderator_id: str) -> JobView:
        """Let a job awaiting approval into the queue, or post a held result."""
        job = await self._get(job_id)
        now = self._clock()
        detail = f"approved by {moderator_id}"
        if job.state is JobState.AWAITING_APPROVAL:
            moved = await self.store.transition(
                job_id, JobState.QUEUED, now=now, from_states=[job.state], detail=detail,
                moderator_id=str(moderator_id),
            )
            if moved:
                self._notify(job_id)
                await self._announce()
                self._wake.set()
                return moved
        elif job.state is JobState.HELD:
            # A held result is charged when a moderator lets it out, not before.
            moved = await self.store.transition(
                job_id, JobState.READY, now=now, from_states=[job.state], detail=detail,
                ledger="commit", moderator_id=str(moderator_id),
            )
            if moved:
                self._notify(job_id)
                if self._started:
                    self._spawn(job_id, resumed=False)
                return moved
        raise NotAllowed(f"This job is {job.state.value}; there is nothing to approve.")

    async def reject(self, job_id: str, moderator_id: str, reason: str) -> JobView:
        """Refuse a job awaiting approval or a held result; the requester's credits come back
        either way (the server, not the requester, absorbs a rejected render), and a rejected
        video's files are deleted at once."""
        job = await self._get(job_id)
        if job.state not in (JobState.AWAITING_APPROVAL, JobState.HELD):
            raise NotAllowed(f"This job is {job.state.value}; there is nothing to reject.")
        moved = await self.store.transition(
            job_id, JobState.REJECTED, now=self._clock(), from_states=[job.state],
            detail=f"rejected by {moderator_id}: {reason}", ledger="release",
            error_kind="rejected", error_message=reason, finished_at=self._clock(),
            moderator_id=str(moderator_id), result_path=None, last_frame_path=None,
        )
        if moved is None:
            return await self.reject(job_id, moderator_id, reason)
        shutil.rmtree(self._job_dir(job_id), ignore_errors=True)
        self._notify(job_id)
        await self._emit(moved, JobEvent(EventKind.REJECTED, reason=reason))
        return moved

    async def cancel(self, job_id: str, by_user_id: str, *, moderator: bool = False) -> str:
        """Cancel as far as possible and say, for a person, what is still billed."""
        job = await self._get(job_id)
        if not moderator and str(by_user_id) != job.user_id:
            raise NotAllowed("Only the person who asked for this video can cancel it.")
        who = f"cancelled by {by_user_id}"
        if job.terminal:
            return f"Nothing to cancel: this job is already {job.state.value}."
        if job.state in WAITING_STATES:
            moved = await self._finish(
                job, JobState.CANCELLED, ledger="release", detail=who,
                from_states=WAITING_STATES,
            )
            if moved is None:
                return await self.cancel(job_id, by_user_id, moderator=moderator)
            await self._emit(moved, JobEvent(EventKind.CANCELLED, reason="Cancelled."))
            await self._announce()
            self._wake.set()
            return f"Cancelled before it started; {job.credits_estimate} credits returned."
        if job.state is JobState.SUBMITTING:
            if job_id in self._runners:
                # The create call is on its way: the runner cancels once the gateway names the
                # task, and answers here (None: the create failed or was requeued; look again).
                pending = self._cancel_requested.get(job_id)
                if pending is None:
                    pending = asyncio.get_running_loop().create_future()
                    self._cancel_requested[job_id] = pending
                # If the runner took the request between the two reads, await its answer.
                moved_on = (await self._get(job_id)).state is not JobState.SUBMITTING
                if moved_on and self._cancel_requested.pop(job_id, None) is not None:
                    return await self.cancel(job_id, by_user_id, moderator=moderator)
                outcome = await asyncio.shield(pending)
                if outcome is not None:
                    return outcome
                return await self.cancel(job_id, by_user_id, moderator=moderator)
            else:
                moved = await self._finish(
                    job, JobState.CANCELLED, ledger="release", detail=who,
                    from_states=[JobState.SUBMITTING],
                )
                if moved is None:
                    return await self.cancel(job_id, by_user_id, moderator=moderator)
                reason = (
                    f"Cancelled; {job.credits_estimate} credits returned (if the request had "
                    "already reached the gateway before a restart, the gateway may still bill it)."
                )
                await self._emit(moved, JobEvent(EventKind.CANCELLED, reason=reason))
                return reason
        if job.state is JobState.GENERATING:
            await self._stop_runner(job_id)
            return await self._cancel_at_gateway(await self._get(job_id), who)
        return (
            "Too late to cancel: the video is already made and "
            f"{job.credits_charged or job.credits_estimate} credits were spent."
        )

    async def queue(self, guild_id: str) -> list[QueueEntry]:
        """The guild's running jobs (position 0) and waiting jobs in start order, with ETAs.

        Cheap when nothing changed since the last look: rows come from the snapshot, only the
        ETAs are recomputed (they move with the clock).
        """
        entries = await self._queue_entries(await self._queue_snapshot())
        return [e for e in entries if e.job.guild_id == str(guild_id)]

    async def remaining(
        self, user_id: str, guild_id: str, role_ids: Sequence[str] = (),
        event_id: str | None = None,
    ) -> QuotaStatus:
        now = self._clock()
        guild_id, user_id = str(guild_id), str(user_id)
        applicable = resolve_limits(
            await self.store.quota_limits(guild_id),
            user_id=user_id,
            role_ids=[str(r) for r in role_ids],
            event_id=event_id,
            default_user_daily=self.settings.seedance_user_daily_credits,
            default_guild_monthly=self.settings.seedance_guild_monthly_credits,
        )
        windows: list[QuotaWindow] = []
        for check in checks_for(
            applicable, guild_id=guild_id, user_id=user_id, event_id=event_id, now=now
        ):
            windows.append(window_of(check, applicable, await self.store.usage(check), now))
        return QuotaStatus(tuple(windows))

    async def on_callback(self, job_id: str, state: TaskState) -> None:
        """The webhook receiver's sink: a gateway told us about a task (maybe twice)."""
        job = await self.store.get_job(job_id)
        # SUBMITTING too: a fast gateway may call back before the create's answer is written.
        if job is None or job.state not in (JobState.SUBMITTING, JobState.GENERATING):
            return
        if job.task_id and state.task_id and state.task_id != job.task_id:
            return  # about an earlier attempt (e.g. before the retry without audio)
        self._inbox.setdefault(job_id, asyncio.Queue()).put_nowait(state)

    async def cleanup(self, *, days: int | None = None) -> int:
        """Delete what retention no longer keeps; returns how many files went.

        Each job finished more than `days` ago (default: SEEDANCE_RETENTION_DAYS) loses its
        folder, its downloaded input copies and the provider's copy of its task, once. Input
        copies no kept job refers to (refused uploads among them) go once an hour old.
        """
        keep = self.settings.seedance_retention_days if days is None else days
        cutoff = self._clock() - keep * 86400
        kept = {Path(ref.local_path).resolve()
                for request in await self.store.requests_kept(cutoff)
                for ref in request.references if ref.local_path}
        removed = 0
        for job in await self.store.finished_before(cutoff):
            removed += await asyncio.to_thread(self._remove_files, job, kept)
            await self.discard_task(job)
            await self.store.mark_cleaned(job.id, now=self._clock())
        removed += await asyncio.to_thread(
            _sweep, self.inputs_dir, time.time() - ORPHAN_INPUT_SECONDS, kept)
        return removed

    @property
    def inputs_dir(self) -> Path:
        """Where this engine's downloaded inputs are kept (bot/intake.py writes there). Each
        database has its own: retention deletes the copies no job of *its* database needs."""
        return self._inputs_dir

    def _remove_files(self, job: JobView, kept: set[Path]) -> int:
        """The job's folder and its input copies under `inputs_dir` that no kept job needs."""
        removed = 0
        folder = self._job_dir(job.id)
        if folder.exists():
            removed += sum(1 for p in folder.rglob("*") if p.is_file())
            shutil.rmtree(folder, ignore_errors=True)
        root = self.inputs_dir.resolve()
        for ref in job.request.references:
            if not ref.local_path:
                continue
            path = Path(ref.local_path).resolve()
            if path.is_relative_to(root) and path not in kept and path.is_file():
                path.unlink(missing_ok=True)
                removed += 1
        return removed

    # ---- scheduling -----------------------------------------------------------------------
    async def _schedule_loop(self) -> None:
        while True:
            self._wake.clear()
            try:
                delay = await self._schedule_once()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("scheduling failed; trying again shortly")
                delay = 1.0
            await self._wait_wake(delay)

    async def _wait_wake(self, delay: float | None) -> None:
        waiter = asyncio.ensure_future(self._wake.wait())
        if delay is None:
            await waiter
            return
        sleeper = asyncio.ensure_future(self._sleep(delay))
        try:
            await asyncio.wait({waiter, sleeper}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            waiter.cancel()
            sleeper.cancel()

    async def _schedule_once(self) -> float | None:
        now = self._clock()
        generation = self._generation
        rows = await self.store.jobs([JobState.QUEUED, *RUNNING_STATES])
        queued = [j for j in rows if j.state is JobState.QUEUED]
        running = [j for j in rows if j.state is not JobState.QUEUED]
        started_rows: list[JobView] = []
        for job in self._fair.pick(queued, running, self.limits, now):
            started = await self.store.transition(
                job.id, JobState.SUBMITTING, now=now, from_states=[JobState.QUEUED],
                detail=f"attempt {job.attempts + 1}", attempts=job.attempts + 1, started_at=now,
            )
            if started is None:
                continue
            started_rows.append(started)
            self._announced.pop(job.id, None)
            self._notify(job.id)
            await self._emit(started, JobEvent(EventKind.STARTED))
            self._spawn(job.id, resumed=False)
        if self._generation == generation + len(started_rows):
            # Nothing but our own starts changed since the read: the queue is known without
            # reading it again.
            gone = {j.id for j in started_rows}
            self._snapshot = _QueueSnapshot(
                self._generation, now, [j for j in queued if j.id not in gone],
                running + started_rows,
            )
        await self._announce()
        later = [j.not_before - now for j in queued if j.not_before > now]
        return min(later) if later else None

    async def _expected_seconds(self, job: JobView) -> float:
        key = (job.provider, job.request.resolution.value, job.request.duration)
        if key not in self._expected:
            recent = await self.store.recent_durations(*key)
            if recent:
                self._expected[key] = float(statistics.median(recent))
            else:
                try:
                    caps = self.provider(job.provider).capabilities(job.model)
                    self._expected[key] = caps.typical_seconds
                except Exception:
                    self._expected[key] = 90.0
        return self._expected[key]

    async def _queue_snapshot(self) -> _QueueSnapshot:
        """Queued and running rows, re-read only if a job changed (or the copy is old).

        Tagged with the generation seen *before* the read: a change committed during the read
        bumps the generation after its commit, so a snapshot can never look newer than it is.
        """
        now = self._clock()
        snapshot = self._snapshot
        if (
            snapshot is not None
            and snapshot.generation == self._generation
            and now - snapshot.loaded_at < _SNAPSHOT_MAX_AGE
        ):
            return snapshot
        generation = self._generation
        rows = await self.store.jobs([JobState.QUEUED, *RUNNING_STATES])
        snapshot = _QueueSnapshot(
            generation, now,
            [j for j in rows if j.state is JobState.QUEUED],
            [j for j in rows if j.state is not JobState.QUEUED],
        )
        self._snapshot = snapshot
        return snapshot

    async def _queue_entries(self, snapshot: _QueueSnapshot) -> list[QueueEntry]:
        now = self._clock()
        if snapshot.order_tick != self._fair.tick:
            snapshot.ordered = self._fair.order(snapshot.queued)
            snapshot.order_tick = self._fair.tick
        expected: dict[tuple[str, str, int], float] = {}
        for job in (*snapshot.queued, *snapshot.running):
            key = (job.provider, job.request.resolution.value, job.request.duration)
            if key not in expected:
                expected[key] = await self._expected_seconds(job)
        finish = estimate_finish(
            snapshot.ordered, snapshot.running, self.limits,
            lambda j: expected[(j.provider, j.request.resolution.value, j.request.duration)],
            now,
        )
        entries = [QueueEntry(0, finish[j.id], j) for j in snapshot.running]
        position: dict[str, int] = {}
        for job in snapshot.ordered:
            position[job.guild_id] = position.get(job.guild_id, 0) + 1
            entries.append(QueueEntry(position[job.guild_id], finish[job.id], job))
        return entries

    async def _announce(self) -> None:
        """Announce queue positions now if the last pass is old enough, else soon.

        A burst of enqueues thus costs one pass per `announce_interval`, not one per enqueue,
        while the first job after a quiet spell learns its place before `enqueue` returns.
        """
        if self._generation == self._announced_gen:
            return
        now = self._clock()
        if not self._announce_lock.locked() and now >= self._next_announce:
            self._next_announce = now + self.limits.announce_interval
            await self._announce_positions()
        elif self._announcer is None or self._announcer.done():
            self._announcer = asyncio.create_task(self._announce_loop(), name="engine-announcer")

    async def _announce_loop(self) -> None:
        """Catch up with the changes a throttled `_announce` left behind, then end."""
        try:
            while self._generation != self._announced_gen:
                wait = self._next_announce - self._clock()
                if wait > 0:
                    await self._sleep(wait)
                    continue
                self._next_announce = self._clock() + self.limits.announce_interval
                await self._announce_positions()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("announcing queue positions failed; the next change retries")

    async def _announce_positions(self) -> None:
        """Tell each waiting job its place when it changed (the queue moved).

        Serialised, so two passes cannot both announce the same move. A job that changed
        after the snapshot (started, cancelled) is skipped: its news is already out, and a late
        "queued" must not overwrite it; the change itself calls for the next pass.
        """
        async with self._announce_lock:
            snapshot = await self._queue_snapshot()
            entries = await self._queue_entries(snapshot)
            self._announced_gen = snapshot.generation
            self._moved = {k: g for k, g in self._moved.items() if g > snapshot.generation}
            for entry in entries:
                job = entry.job
                if entry.position == 0 or self._announced.get(job.id) == entry.position:
                    continue
                if self._moved.get(job.id, 0) > snapshot.generation:
                    continue
                self._announced[job.id] = entry.position
                await self._emit(
                    job, JobEvent(EventKind.QUEUED, position=entry.position, eta=entry.eta)
                )

    # ---- runners --------------------------------------------------------------------------
    def _spawn(self, job_id: str, *, resumed: bool) -> None:
        if job_id in self._runners and not self._runners[job_id].done():
            return
        task = asyncio.create_task(self._run(job_id, resumed=resumed), name=f"job-{job_id}")
        self._runners[job_id] = task

    async def _stop_runner(self, job_id: str) -> None:
        task = self._runners.pop(job_id, None)
        if task is not None and task is not asyncio.current_task():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def _run(self, job_id: str, *, resumed: bool) -> None:
        job: JobView | None = None
        try:
            while True:
                job = await self.store.get_job(job_id)
                if job is None or job.state not in ACTIVE_STATES:
                    return
                if job.state is JobState.SUBMITTING:
                    await self._submit(job, resumed=resumed)
                elif job.state is JobState.GENERATING:
                    await self._generate(job, resumed=resumed)
                elif job.state is JobState.DOWNLOADING:
                    await self._download(job)
                else:
                    await self._deliver(job)
                resumed = False
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.exception("job %s stopped by an unexpected error", job_id)
            if job is not None:
                current = await self.store.get_job(job_id)
                if current is not None and not current.terminal:
                    spent = current.state in (JobState.DOWNLOADING, JobState.READY)
                    await self._fail(
                        current, "internal",
                        f"An internal error stopped this job ({type(exc).__name__}).",
                        ledger="commit" if spent else "release",
                    )
        finally:
            if self._runners.get(job_id) is asyncio.current_task():
                del self._runners[job_id]
            pending = self._cancel_requested.pop(job_id, None)
            if pending is not None and not pending.done():
                pending.set_result(None)  # the canceller looks at the job again
            self._inbox.pop(job_id, None)
            self._wake.set()

    async def _submit(self, job: JobView, *, resumed: bool) -> None:
        provider = self.provider(job.provider)
        idempotent = bool(getattr(provider, "idempotent_submit", False))
        if resumed and not idempotent:
            await self._fail(
                job, "uncertain_submit",
                f"The request may have been sent to {job.provider} just before a restart; it "
                "was not retried to avoid double billing. Your credits were returned.",
                ledger="release",
            )
            return
        caps = provider.capabilities(job.model)
        callback_url = (
            self._callbacks.url_for(job.provider, job.id)
            if self._callbacks is not None and caps.webhooks
            else None
        )
        request = job.request
        if request.model is None and job.model:
            request = request.model_copy(update={"model": job.model})
        try:
            submitted = await provider.submit(
                request,
                idempotency_key=submission_key(job.id, without_audio=job.audio_retried),
                callback_url=callback_url,
            )
        except GatewayError as err:
            if resubmit_is_safe(err, idempotent=idempotent) and (
                job.attempts <= self.limits.submit_retries
            ):
                delay = backoff(
                    job.attempts, base=self.limits.retry_base, cap=self.limits.retry_cap,
                    hint=err.retry_after,
                )
                why = f"{self._reason(err)}; trying again in {delay:.0f} s"
                moved = await self.store.transition(
                    job.id, JobState.QUEUED, now=self._clock(),
                    from_states=[JobState.SUBMITTING], detail=f"retry: {why}",
                    not_before=self._clock() + delay,
                )
                if moved:
                    self._notify(job.id)
                    await self._emit(moved, JobEvent(EventKind.RETRYING, reason=why))
                return
            await self._fail_gateway(job, err)
            return
        except InvalidInput as err:
            await self._fail(job, "invalid_input", str(err), ledger="release")
            return
        moved = await self.store.transition(
            job.id, JobState.GENERATING, now=self._clock(), from_states=[JobState.SUBMITTING],
            detail=f"task {submitted.task_id}", task_id=submitted.task_id,
        )
        if moved is None:
            return
        self._notify(job.id)
        if submitted.state is not None:
            self._inbox.setdefault(job.id, asyncio.Queue()).put_nowait(submitted.state)
        pending = self._cancel_requested.pop(job.id, None)
        if pending is not None:
            outcome = await self._cancel_at_gateway(moved, "cancelled while it was being sent")
            if not pending.done():
                pending.set_result(outcome)

    async def _generate(self, job: JobView, *, resumed: bool) -> None:
        provider = self.provider(job.provider)
        assert job.task_id is not None, "generating without a task id"
        caps = provider.capabilities(job.model)
        delays = self.poll_policy.delays(
            await self._expected_seconds(job),
            callbacks=self._callbacks is not None and caps.webhooks,
            resumed=resumed,
        )
        inbox = self._inbox.setdefault(job.id, asyncio.Queue())
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
                    if err.retryable and errors <= self.limits.poll_errors:
                        due = self._clock() + backoff(
                            errors, base=self.limits.retry_base, cap=self.limits.retry_cap,
                            hint=err.retry_after,
                        )
                        continue
                    # We lost sight of the task, not the task itself: it runs on and is billed,
                    # unless the gateway says it does not know it.
                    refunded = isinstance(err, TaskNotFoundError)
                    await self._fail(
                        job, err.kind,
                        f"{self._reason(err)} — lost track of the task at {job.provider}; it "
                        "may still finish and be billed there.",
                        ledger="release" if refunded else "commit",
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
                    await self._emit(job, JobEvent(EventKind.PROGRESS, percent=float(percent)))
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
            await self._fail(
                job, "task_failed", f"{job.provider} reported success but gave no video.",
                ledger="commit",
            )
            return
        now = self._clock()
        meta = {
            "video_urls": list(result.video_urls),
            "last_frame_url": result.last_frame_url,
            "seed": result.seed,
            "cost": result.cost,
            "expires_at": result.expires_at,
        }
        moved = await self.store.transition(
            job.id, JobState.DOWNLOADING, now=now, from_states=[JobState.GENERATING],
            detail="result ready at the gateway", result_meta=meta,
        )
        if moved is None:
            return
        self._notify(job.id)
        if job.started_at is not None:
            key = (job.provider, job.request.resolution.value, job.request.duration)
            await self.store.record_duration(*key, max(0.0, now - job.started_at), now=now)
            self._expected.pop(key, None)

    async def _task_failed(self, job: JobView, error: GatewayError) -> None:
        if (
            isinstance(error, AudioModerationError)
            and job.request.audio
            and not job.audio_retried
        ):
            why = (
                "The gateway flagged the generated sound; trying once more without audio "
                "(no extra charge)."
            )
            moved = await self.store.transition(
                job.id, JobState.SUBMITTING, now=self._clock(),
                from_states=[JobState.GENERATING], detail=f"retry without audio: {error}",
                request=job.request.model_copy(update={"audio": False}), audio_retried=True,
                task_id=None, attempts=job.attempts + 1, started_at=self._clock(),
            )
            if moved:
                self._notify(job.id)
                await self._emit(moved, JobEvent(EventKind.RETRYING, reason=why))
            return
        await self._fail_gateway(job, error)

    async def _download(self, job: JobView) -> None:
        provider = self.provider(job.provider)
        caps = provider.capabilities(job.model)
        meta = dict(job.result_meta)
        refreshed = looked_again = False
        expires = meta.get("expires_at")
        if expires is not None and expires <= self._clock() and job.task_id:
            meta = await self._refresh(job, provider, meta)
            refreshed = True
        folder = self._job_dir(job.id)
        folder.mkdir(parents=True, exist_ok=True)
        attempt = 0
        while True:
            attempt += 1
            try:
                videos, frame = await self._fetch_results(job, caps, meta, folder)
                break
            except RefusedDownload as err:
                # Never fetched as it is. The URL may come from a forged callback: the gateway's
                # own answer to a poll is the authority, once.
                if not looked_again and job.task_id:
                    looked_again = True
                    state = await self._look_again(job, provider)
                    if state is not None and not state.done:
                        await self._back_to_generating(job, err)
                        return
                    fresh = _result_meta(meta, state)
                    if fresh is not None and fresh["video_urls"] != meta.get("video_urls"):
                        meta = fresh
                        await self.store.update_job(job.id, now=self._clock(), result_meta=meta)
                        continue
                await self._fail(
                    job, "bad_result",
                    f"{job.provider} reported the video done (so it bills for it), but its "
                    f"result cannot be used ({self._reason(err)}). Nothing was delivered; "
                    "your credits were returned.", ledger="release",
                )
                shutil.rmtree(folder, ignore_errors=True)
                return
            except ResultExpiredError as err:
                if refreshed or not job.task_id:
                    await self._fail(
                        job, err.kind,
                        "The video was made but its link expired before it could be fetched "
                        f"({self._reason(err)}).", ledger="commit",
                    )
                    return
                meta = await self._refresh(job, provider, meta)
                refreshed = True
            except (DownloadError, GatewayError, OSError) as err:
                if attempt >= self.limits.download_attempts:
                    await self._fail(
                        job, "download",
                        f"The video was made but could not be downloaded: {self._reason(err)}",
                        ledger="commit",
                    )
                    return
                await self._sleep(
                    backoff(attempt, base=self.limits.retry_base, cap=self.limits.retry_cap)
                )
        to_state = JobState.HELD if job.hold_result else JobState.READY
        moved = await self.store.transition(
            job.id, to_state, now=self._clock(), from_states=[JobState.DOWNLOADING],
            detail="files on disk", ledger=None if job.hold_result else "commit",
            result_path=str(videos[0]),
            last_frame_path=str(frame) if frame else None, result_meta=meta,
        )
        if moved is None:
            return
        self._notify(job.id)
        await self.discard_task(moved)
        result = self._result(moved)
        await self._emit(moved, JobEvent(EventKind.SUCCEEDED, result=result))
        if to_state is JobState.HELD:
            await self._emit(moved, JobEvent(EventKind.HELD, result=result))

    async def _fetch_results(
        self, job: JobView, caps: Capabilities, meta: Mapping[str, Any], folder: Path
    ) -> tuple[list[Path], Path | None]:
        """Download every result and prove each is what it claims (a video, an image) from its
        bytes before the job moves on; raises `RefusedDownload` otherwise."""
        hosts = self.settings.result_hosts(job.provider) or caps.result_hosts
        root = caps.result_files
        videos: list[Path] = []
        for i, url in enumerate(meta.get("video_urls") or []):
            name = "video.mp4" if i == 0 else f"video_{i + 1}.mp4"
            dest = await self._fetch(url, folder / name, hosts, root)
            await _prove(dest, url, MediaKind.VIDEO)
            videos.append(dest)
        if not videos:
            raise RefusedDownload("the gateway named no video")
        frame = None
        url = meta.get("last_frame_url")
        if job.request.return_last_frame and url:
            frame = await self._fetch(url, folder / f"last_frame{_suffix(url, '.png')}",
                                      hosts, root)
            await _prove(frame, url, MediaKind.IMAGE)
        return videos, frame

    async def _look_again(self, job: JobView, provider: Provider) -> TaskState | None:
        """The gateway's own view of the task (None when it cannot be asked)."""
        assert job.task_id is not None
        try:
            return await provider.poll(job.task_id)
        except GatewayError as err:
            log.info("could not look again at the task of %s: %s", job.id, err)
            return None

    async def _back_to_generating(self, job: JobView, err: Exception) -> None:
        """A "done" that the gateway itself does not confirm (a forged or stray callback):
        drop it and follow the task again."""
        log.warning("job %s: dropped a result the gateway does not confirm (%s)", job.id,
                    self._reason(err))
        moved = await self.store.transition(
            job.id, JobState.GENERATING, now=self._clock(), from_states=[JobState.DOWNLOADING],
            detail=f"result not confirmed by {job.provider}; following the task again",
            result_meta={},
        )
        if moved is not None:
            self._notify(job.id)

    async def _refresh(
        self, job: JobView, provider: Provider, meta: dict[str, Any]
    ) -> dict[str, Any]:
        """Ask the gateway again for the task, hoping for fresh result URLs."""
        state = await self._look_again(job, provider)
        fresh = _result_meta(meta, state)
        if fresh is None:
            return meta
        await self.store.update_job(job.id, now=self._clock(), result_meta=fresh)
        return fresh

    async def _fetch(
        self, url: str, dest: Path, hosts: tuple[str, ...], root: Path | None
    ) -> Path:
        """Stream one file to `dest` under the address rules; it appears only when whole.

        `file://` results are read only inside the task's own folder of the provider that
        declares one (the embedded renderer); nothing else of the data folder is reachable.
        """
        download = self._downloader or fetch_download
        await download(
            self._http, url, dest, max_bytes=self.settings.seedance_max_download_bytes,
            policy=self._policy, allowed_hosts=hosts, file_root=root,
        )
        return dest

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

    async def _deliver(self, job: JobView) -> None:
        result = self._result(job)
        last_error: Exception | None = None
        for attempt in range(1, self.limits.delivery_attempts + 1):
            try:
                ref = await self.delivery.deliver(job, result)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                last_error = exc
                log.warning("delivery of %s failed (attempt %d): %s", job.id, attempt, exc)
                await self._sleep(
                    backoff(attempt, base=self.limits.retry_base, cap=self.limits.retry_cap)
                )
                continue
            moved = await self.store.transition(
                job.id, JobState.DELIVERED, now=self._clock(), from_states=[JobState.READY],
                detail="delivered", delivery_ref=str(ref), finished_at=self._clock(),
            )
            if moved:
                self._notify(job.id)
                await self._emit(moved, JobEvent(EventKind.DELIVERED, reason=str(ref)))
            return
        await self._fail(
            job, "delivery",
            f"The video is ready but could not be posted ({last_error}); it is kept at "
            f"{job.result_path}.",
        )

    async def _cancel_at_gateway(self, job: JobView, detail: str) -> str:
        """Stop a task the gateway already has; say honestly what is still billed."""
        if job.state is not JobState.GENERATING or not job.task_id:
            self._spawn(job.id, resumed=True)  # the runner was stopped; let the job go on
            return "Too late to cancel: the video is already made."
        provider = self.provider(job.provider)
        try:
            stopped = await provider.cancel(job.task_id)
        except GatewayError as err:
            log.info("cancel of %s at %s failed: %s", job.id, job.provider, err)
            stopped = False
        if stopped:
            reason = f"Cancelled at {job.provider}; {job.credits_estimate} credits returned."
            ledger: LedgerKind = "release"
        else:
            reason = (
                f"Cancelled, but {job.provider} cannot stop a task it has started, so it is "
                f"still billed: {job.credits_estimate} credits were spent. Nothing will be posted."
            )
            ledger = "commit"
        moved = await self._finish(
            job, JobState.CANCELLED, ledger=ledger, detail=detail,
            from_states=[JobState.GENERATING],
        )
        if moved is None:
            self._spawn(job.id, resumed=True)
            return "Too late to cancel: the job moved on."
        await self._emit(moved, JobEvent(EventKind.CANCELLED, reason=reason))
        return reason

    # ---- endings and helpers --------------------------------------------------------------
    async def _finish(
        self, job: JobView, state: JobState, *, ledger: LedgerKind | None, detail: str,
        from_states: Iterable[JobState], **fields: Any,
    ) -> JobView | None:
        moved = await self.store.transition(
            job.id, state, now=self._clock(), from_states=from_states, detail=detail,
            ledger=ledger, finished_at=self._clock(), **fields,
        )
        if moved is not None:
            self._announced.pop(job.id, None)
            self._notify(job.id)
            self._wake.set()  # a slot or a queue place may have opened
            await self.discard_task(moved)
        return moved

    async def _fail(
        self, job: JobView, kind: str, message: str, *, ledger: LedgerKind | None = None
    ) -> None:
        message = scrub(message, self.settings.secrets())
        moved = await self._finish(
            job, JobState.FAILED, ledger=ledger, detail=f"{kind}: {message}",
            from_states=[job.state], error_kind=kind, error_message=message,
        )
        if moved is not None:
            await self._emit(moved, JobEvent(EventKind.FAILED, reason=message))

    async def _fail_gateway(self, job: JobView, err: GatewayError) -> None:
        reason = self._reason(err)
        if isinstance(err, RealFaceError):
            reason += " (inputs that look like a real person are refused; this is final)"
        await self._fail(job, err.kind, reason, ledger="release" if err.refunded else "commit")

    def _reason(self, err: Exception) -> str:
        return scrub(str(err), self.settings.secrets())

    def _result(self, job: JobView) -> JobResult:
        folder = self._job_dir(job.id)
        videos = sorted(folder.glob("video*.mp4"), key=lambda p: (len(p.name), p.name))
        if not videos and job.result_path:
            videos = [Path(job.result_path)]
        meta = job.result_meta
        return JobResult(
            video_paths=tuple(videos),
            last_frame_path=Path(job.last_frame_path) if job.last_frame_path else None,
            cost=meta.get("cost"),
            seed=meta.get("seed"),
            credits=job.credits_charged or job.credits_estimate,
        )

    def _job_dir(self, job_id: str) -> Path:
        return self.settings.data_dir / "jobs" / job_id

    async def _get(self, job_id: str) -> JobView:
        job = await self.store.get_job(job_id)
        if job is None:
            raise JobNotFound(job_id)
        return job

    def _notify(self, job_id: str) -> None:
        """Call after every change to a job's row: wakes `wait` and marks the queue stale."""
        self._generation += 1
        self._moved[job_id] = self._generation
        event = self._changed.pop(job_id, None)
        if event is not None:
            event.set()

    async def _emit(self, job: JobView, event: JobEvent) -> None:
        """Tell the delivery layer; its failures never stop a job."""
        try:
            await self.delivery.on_event(job, event)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("delivery.on_event failed for %s (%s)", job.id, event.kind)


def _sweep(folder: Path, older_than: float, kept: set[Path]) -> int:
    """Delete files of `folder` last written before `older_than` that no kept job needs."""
    removed = 0
    if not folder.is_dir():
        return 0
    for path in folder.iterdir():
        try:
            if (path.is_file() and path.resolve() not in kept
                    and path.stat().st_mtime < older_than):
                path.unlink()
                removed += 1
        except OSError:
            continue
    return removed


def _result_meta(meta: Mapping[str, Any], state: TaskState | None) -> dict[str, Any] | None:
    """`meta` with the result URLs of a successful `state` (None when it has none)."""
    if state is None or state.status is not TaskStatus.SUCCEEDED or state.result is None:
        return None
    if not state.result.video_urls:
        return None
    return {
        **meta,
        "video_urls": list(state.result.video_urls),
        "last_frame_url": state.result.last_frame_url or meta.get("last_frame_url"),
        "expires_at": state.result.expires_at,
    }


async def _prove(path: Path, url: str, kind: MediaKind) -> None:
    """Refuse a downloaded result whose bytes are not a `kind` we can read (it is deleted)."""
    try:
        facts = await probe_file_async(path)
    except UnreadableMedia as exc:
        facts = None
        why = str(exc)
    if facts is not None:
        if facts.kind is kind and (kind is not MediaKind.VIDEO or facts.format in ("mp4", "mov")):
            return
        why = f"it is {a(facts.format.upper() + ' ' + facts.kind.value)}, not {a(kind.value)}"
    path.unlink(missing_ok=True)
    raise RefusedDownload(f"{safe_url(url)} is not a real {kind.value} ({why})")


def _suffix(url: str, default: str) -> str:
    path = url.split("?", 1)[0].rsplit("/", 1)[-1]
    suffix = Path(path).suffix.lower()
    return suffix if suffix in (".png", ".jpg", ".jpeg", ".webp") else default


__all__ = [
    "CallbackUrls",
    "Engine",
    "JobNotFound",
    "NotAllowed",
    "QueueFull",
]
