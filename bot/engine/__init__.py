"""The engine: durable per-guild fair queue, quota ledger, restart recovery, delivery port.

Public API (the CLI and the cogs call these; nothing here imports discord):

    engine = Engine(settings, store, delivery=..., providers=name -> Provider | mapping,
                    http=new_client(), limits=EngineLimits(), clock=time.time,
                    sleep=asyncio.sleep, callbacks=None)
    await engine.start()          # resumes every unfinished job from its row, starts scheduling
    await engine.stop()           # cancels runners; safe at any moment (rows say where to resume)
    job = await engine.enqueue(request, guild_id=, channel_id=, user_id=, role_ids=(),
                               context=None, needs_approval=False, event_id=None,
                               hold_result=False, enforce_quota=True, per_minute=None)
                                  # row written + credits reserved before it returns, after
                                  # every guard passed in the same transaction; raises the
                                  # Refusals QuotaExceeded / QueueFull / RateLimited, or
                                  # InvalidInput
    await engine.approve(job_id, moderator_id) / reject(job_id, moderator_id, reason)
    text = await engine.cancel(job_id, by_user_id, moderator=False)  # says what is still billed
    entries = await engine.queue(guild_id)     # [QueueEntry(position, eta, job)], 0 = running
    credits = await engine.estimate(request)
    status = await engine.remaining(user_id, guild_id, role_ids)     # QuotaStatus for /quota
    job = await engine.wait(job_id)            # until delivered/failed/cancelled/rejected
    job = await engine.job(job_id)
    await engine.on_callback(job_id, task_state)   # the webhook receiver's sink
    removed = await engine.cleanup()               # retention: call daily
    await engine.discard_task(job)                 # the provider may drop its copy
    engine.inputs_dir / engine.provider(name)      # where inputs go; a provider by name

The delivery port (`Delivery`) receives `on_event(job, JobEvent)` for queued(position, eta),
started, progress(percent), retrying(reason), succeeded(result), held, failed(reason),
cancelled(reason), rejected(reason), delivered; and `deliver(job, JobResult) -> ref`, which
must be idempotent per `job.id` (use it as the Discord message nonce; the CLI checks its output
file). Guild settings live in the store: `store.guild_settings(guild_id)`,
`store.update_guild_settings(guild_id, change)`; quota limits: `store.set_quota_limit(...)`.

Caps: jobs in flight per gateway account come from SEEDANCE_GATEWAY_CONCURRENCY (else
bot/engine/caps.py's defaults, else `EngineLimits.gateway_in_flight`); running and waiting jobs
per server and per member from the server's `GuildSettings.limits` (bot/guild.py), each unset
one from `EngineLimits`. Who pays when a job ends is one table: bot/engine/refunds.py.
"""

from bot.engine.admission import QueueFull, RateLimited
from bot.engine.engine import CallbackUrls, Engine, JobNotFound, NotAllowed
from bot.engine.events import Delivery, EventKind, JobEvent, JobResult, QueueEntry
from bot.engine.policies import PollPolicy, submission_key
from bot.engine.quota import QuotaExceeded, QuotaStatus, QuotaWindow, window_bounds
from bot.engine.scheduler import EngineLimits, FairQueue
from bot.store import JobState, JobView

__all__ = [
    "CallbackUrls",
    "Delivery",
    "Engine",
    "EngineLimits",
    "EventKind",
    "FairQueue",
    "JobEvent",
    "JobNotFound",
    "JobResult",
    "JobState",
    "JobView",
    "NotAllowed",
    "PollPolicy",
    "QueueEntry",
    "QueueFull",
    "QuotaExceeded",
    "QuotaStatus",
    "QuotaWindow",
    "RateLimited",
    "submission_key",
    "window_bounds",
]
