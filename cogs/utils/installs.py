"""Delivering a personal job: one asked through the app installed to the user (a DM, a group
DM, a server that did not install the app; cogs/utils/core.py `is_personal`).

Discord's rules for such answers: they go through the interaction's webhook only (the bot may
not be in the channel at all), at most 5 follow-ups per interaction where the app is not
present, and the token dies after 15 minutes. So:

- the deferred response is the status message (edited through the webhook while the token
  lives; after that the status stays as it was: no channel API where the bot is not a member);
- the video is a follow-up, claimed in the job's row before it is sent
  (`Store.claim_followup`), so a restart never sends it twice nor past the limit; a claim a
  crash left unrecorded may or may not have been sent, so nothing is sent again (`unsure`: the
  status says `/my-videos` attaches it);
- a job that outlives the token (or has no follow-up left, or whose follow-up Discord refused)
  sends the video to the user's DMs through the REST API, with the job's nonce and a look at
  the DM's history first, like every result post (cogs/utils/delivery.py), so it arrives once;
- with DMs closed (Discord's 50007) the job records it (`dm_closed`) and the video waits for
  `/my-videos` (cogs/installs.py), which the status told about while it could.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Protocol

import discord

from bot.engine import EventKind, JobEvent, JobResult
from bot.store import JobView, Store

from . import install_texts
from .core import DiscordJobContext
from .messaging import DEFAULT_UPLOAD_LIMIT, interaction_webhook, upload_limit

log = logging.getLogger(__name__)

#: Discord's follow-up limit for an interaction where the app is not in the server.
MAX_FOLLOWUPS = 5
#: Discord's code for a DM the user does not accept ("Cannot send messages to this user").
DMS_CLOSED = 50007
#: `delivery_ref`s of a personal job whose video was shown nowhere: `/my-videos` attaches it.
UNDELIVERED = "my-videos"
UNSURE = "unsure"


class Followups:
    """An interaction's webhook as a place to post: follow-ups carry no nonce (the claim in
    the row stands for it) and are private where the interaction's answers must be."""

    def __init__(self, webhook: discord.Webhook, ephemeral: bool) -> None:
        self.webhook = webhook
        self.ephemeral = ephemeral

    async def send(self, **kwargs: Any) -> discord.Message:
        kwargs.pop("nonce", None)
        return await self.webhook.send(wait=True, ephemeral=self.ephemeral, **kwargs)


#: Where a result can be posted: a channel (a DM too), or an interaction's follow-ups.
Postable = discord.abc.Messageable | Followups


class ResultPoster(Protocol):
    """What this module needs of `DiscordDelivery` (no import of it: no circle)."""

    async def post_result(self, channel: Postable, job: JobView, result: JobResult,
                          limit: int) -> discord.Message: ...

    async def already_posted(self, channel: discord.abc.Messageable,
                             job_id: str) -> int | None: ...


def is_personal_job(job: JobView) -> bool:
    return DiscordJobContext.of(job).personal


def personal_status(job: JobView, event: JobEvent, text: str) -> str:
    """A personal job's status says where its video goes if it outlives the token, and
    where to fetch one that could not be shown."""
    locale = DiscordJobContext.of(job).guild_locale  # the status's own language
    if event.kind is EventKind.DELIVERED and event.reason in (UNDELIVERED, UNSURE):
        return f"{text}\n{install_texts.fetch_it(locale, unsure=event.reason == UNSURE)}"
    if job.terminal or event.kind in (EventKind.FAILED, EventKind.CANCELLED,
                                      EventKind.REJECTED, EventKind.DELIVERED):
        return text
    return f"{text}\n{install_texts.personal_hint(locale)}"


async def deliver_personal(poster: ResultPoster, client: discord.Client, store: Store,
                           job: JobView, result: JobResult) -> str:
    """Post a personal job's video once: a follow-up while the token lives, else by DM, else
    kept for `/my-videos`. Returns the delivery reference (`followup:<id>`, `dm:<id>`, or
    `my-videos` / `unsure`: shown nowhere)."""
    job = await store.get_job(job.id) or job  # the claims as written, not as first read
    ctx = DiscordJobContext.of(job)
    if "result" in (job.context.get("followups_sent") or []) and not ctx.followup_refused:
        # Claimed by a run that stopped before it was recorded: maybe posted, maybe not.
        # Never twice (not by DM either): the status says /my-videos attaches it.
        log.warning("job %s: its result follow-up may or may not have been sent", job.id)
        return UNSURE
    webhook = interaction_webhook(client, job)
    if webhook is not None and await store.claim_followup(
            job.id, "result", limit=MAX_FOLLOWUPS, now=time.time()):
        try:
            message = await poster.post_result(
                Followups(webhook, ctx.ephemeral), job, result, upload_limit(job))
            return f"followup:{message.id}"
        except discord.HTTPException as exc:
            # Refused, so not posted: written down, and the DM is the way now.
            log.warning("result follow-up of job %s refused (%s); sending by DM", job.id, exc)
            await store.merge_context(job.id, {"followup_refused": True}, now=time.time())
    return await _by_dm(poster, client, store, job, result)


async def _by_dm(poster: ResultPoster, client: discord.Client, store: Store, job: JobView,
                 result: JobResult) -> str:
    if DiscordJobContext.of(job).dm_closed:
        return UNDELIVERED
    user = client.get_user(int(job.user_id)) or await client.fetch_user(int(job.user_id))
    channel = await user.create_dm()  # POST /users/@me/channels
    existing = await poster.already_posted(channel, job.id)
    if existing is not None:
        return f"dm:{existing}"
    try:
        message = await poster.post_result(channel, job, result,
                                           min(upload_limit(job), DEFAULT_UPLOAD_LIMIT))
    except discord.Forbidden as exc:
        if exc.code != DMS_CLOSED:
            raise
        log.info("job %s: the user's DMs are closed; the video waits for /my-videos", job.id)
        await store.merge_context(job.id, {"dm_closed": True}, now=time.time())
        return UNDELIVERED
    return f"dm:{message.id}"
