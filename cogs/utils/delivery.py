"""The engine's delivery port, implemented for Discord.

- One status message per job, edited as the job moves, at most one edit every few seconds
  (terminal news is never held back). While the interaction token is young the edit goes
  through the interaction webhook; after ~14 minutes (the token dies at 15) it goes through
  the channel API, which works for as long as the message exists.
- The finished video is posted in the job's channel (threads too) within the upload limit the
  interaction reported; a bigger file is transcoded to fit; if it still cannot fit, a link with
  its expiry and a last-frame thumbnail is posted instead. The videos of a result set go in
  one message, sharing the limit, each with its own Reroll/Extend/Animate buttons.
- Posting is idempotent per job: the message nonce is derived from the job id (Discord returns
  the first message for a repeated nonce), and before posting we look for a message of ours
  carrying the job's buttons, for a crash that happened longer ago than Discord remembers nonces.
- A personal job (the app installed to the user) is answered through the interaction webhook
  only, its video by DM once the token is gone: cogs/utils/installs.py.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import replace
from typing import Any

import discord

from bot.config import Settings
from bot.engine import EventKind, JobEvent, JobResult
from bot.guild import GuildSettings
from bot.i18n import DEFAULT, t
from bot.media.transcode import thumbnail
from bot.store import TERMINAL_STATES, JobMessage, JobState, JobView, Store
from bot.words import size

from .card_texts import hosted_note
from .cards import input_thumbnails, on_job_event
from .core import DiscordJobContext
from .finals import draft_buttons
from .installs import Postable, deliver_personal, is_personal_job, personal_status
from .layout import card_refused, custom_ids, result_card, status_card
from .messaging import (
    STATUS,
    UPLOAD_MARGIN,
    fit_upload,
    interaction_webhook,
    job_nonce,
    jump_url,
    result_channel,
    tell_requester,
    upload_limit,
)
from .texts import result_embed, status_text
from .views import result_view, status_view, video_filename

log = logging.getLogger(__name__)

STATUS_EDIT_INTERVAL = 3.0
TERMINAL = frozenset({EventKind.FAILED, EventKind.CANCELLED, EventKind.REJECTED,
                      EventKind.DELIVERED, EventKind.HELD, EventKind.SUCCEEDED})
ENDINGS = frozenset({EventKind.FAILED, EventKind.CANCELLED, EventKind.REJECTED,
                     EventKind.DELIVERED})
#: How far back a start looks for endings a crash left unsaid (older ones are history).
CATCH_UP_SECONDS = 6 * 3600


def ending_event(job: JobView, locale: object = DEFAULT) -> JobEvent:
    """The news of a finished job, rebuilt from its row (for a status another process's
    late edit overwrote)."""
    kind = {JobState.DELIVERED: EventKind.DELIVERED, JobState.FAILED: EventKind.FAILED,
            JobState.REJECTED: EventKind.REJECTED}.get(job.state, EventKind.CANCELLED)
    reason = job.delivery_ref if kind is EventKind.DELIVERED else job.error_message
    return JobEvent(kind, reason=reason or (t(locale, "replies.status.cancelled")
                                            if kind is EventKind.CANCELLED else ""))


class DiscordDelivery:
    """Status edits and result posts for the engine (see `bot.engine.Delivery`)."""

    def __init__(self, client: discord.Client, settings: Settings, store: Store) -> None:
        self.client = client
        self.settings = settings
        self.store = store
        self._last_edit: dict[str, float] = {}
        #: The newest news of each job not yet shown: (job, event, jump URL, final). Rendered
        #: when it is shown, so a throttled step costs nothing.
        self._latest: dict[str, tuple[JobView, JobEvent, str | None, bool]] = {}
        self._timers: dict[str, asyncio.Task[None]] = {}

    # ---- status message -------------------------------------------------------------------
    async def on_event(self, job: JobView, event: JobEvent) -> None:
        ctx = DiscordJobContext.of(job)
        jump = None
        if event.kind is EventKind.DELIVERED and event.reason and event.reason.isdigit():
            jump = jump_url(job.guild_id, await result_channel(self.store, job), event.reason)
        if event.kind is EventKind.REJECTED and event.reason:
            # The reason is for the requester, not for everyone reading the channel.
            told = await tell_requester(self.client, job, t(
                ctx.locale, "replies.status.not_approved", job=job.id[:8], reason=event.reason))
            if told:
                event = replace(event, reason=t(ctx.guild_locale, "replies.status.sent_privately"))
        await self.edit_status(job, event, jump, final=event.kind in TERMINAL)
        try:
            await on_job_event(self.client, self.store, self.settings.data_dir, job, event)
        except discord.HTTPException as exc:
            log.warning("moderation update for job %s failed: %s", job.id, exc)

    async def edit_status(self, job: JobView, event: JobEvent, jump: str | None, *,
                          final: bool = False) -> None:
        if not DiscordJobContext.of(job).status_message_id:
            return
        self._latest[job.id] = (job, event, jump, final)
        wait = self._last_edit.get(job.id, 0.0) + STATUS_EDIT_INTERVAL - time.monotonic()
        if wait > 0 and not final:
            if job.id not in self._timers:
                self._timers[job.id] = asyncio.create_task(self._flush_later(job.id, wait))
            return
        timer = self._timers.pop(job.id, None)
        if timer is not None and timer is not asyncio.current_task():
            timer.cancel()
        await self._flush(job.id)

    async def _flush_later(self, job_id: str, wait: float) -> None:
        await asyncio.sleep(wait)
        self._timers.pop(job_id, None)
        await self._flush(job_id)

    async def _flush(self, job_id: str) -> None:
        item = self._latest.pop(job_id, None)
        if item is None:
            return
        job, event, jump, final = item
        self._last_edit[job_id] = time.monotonic()
        if not final and await self._ended(job_id):
            return  # another process ended it and said so: news of a step is stale now
        # One read of the server's settings: cards or embeds, prompts hidden or not.
        guild = await self.store.guild_settings(job.guild_id)
        text = status_text(job, event, jump_url=jump, spoiler=guild.spoiler_prompts,
                           locale=DiscordJobContext.of(job).guild_locale)
        if is_personal_job(job):
            text = personal_status(job, event, text)
        said = True
        try:
            if self.wants_cards(guild):
                await self._edit_card(job, text, event, final)
            else:
                await self._edit_message(job, text, None if final else status_view(
                    job, DiscordJobContext.of(job).guild_locale))
        except discord.HTTPException as exc:
            log.warning("status edit for job %s failed: %s", job_id, exc)
            said = isinstance(exc, discord.NotFound)  # a deleted message needs no more words
        if final:
            self._last_edit.pop(job_id, None)
            if said and event is not None and event.kind in ENDINGS:
                # Recorded after the edit: a crash before it leaves the ending to `catch_up`.
                await self.store.set_job_message(JobMessage(
                    job.id, STATUS, job.channel_id,
                    str(DiscordJobContext.of(job).status_message_id)), now=time.time())
        elif (ended := await self._ended(job_id)) is not None:
            # It ended while this edit was on its way, maybe by another process whose final
            # edit landed first: say the end again, so the message never stays behind.
            await self._say_the_end(ended)

    async def _say_the_end(self, ended: JobView) -> None:
        jump = None
        if ended.state is JobState.DELIVERED and (ended.delivery_ref or "").isdigit():
            jump = jump_url(ended.guild_id, await result_channel(self.store, ended),
                            str(ended.delivery_ref))
        news = ending_event(ended, DiscordJobContext.of(ended).guild_locale)
        self._latest[ended.id] = (ended, news, jump, True)
        await self._flush(ended.id)

    async def catch_up(self) -> None:
        """At start: say the end on status messages whose job ended while the process that
        ended it died before its final edit (the ending is written first; the edit is then
        recorded as a `status` job message, so what lacks one was never said)."""
        since = time.time() - CATCH_UP_SECONDS
        for job in await self.store.jobs_without_message(STATUS, TERMINAL_STATES,
                                                         updated_since=since):
            if DiscordJobContext.of(job).status_message_id:
                await self._say_the_end(job)

    async def _ended(self, job_id: str) -> JobView | None:
        current = await self.store.get_job(job_id)
        return current if current is not None and current.terminal else None

    def wants_cards(self, guild: GuildSettings) -> bool:
        """Cards or embeds: the server's choice, else the bot's (cogs/utils/layout.py)."""
        return self.settings.seedance_result_cards if guild.cards is None else guild.cards

    async def _edit_card(self, job: JobView, text: str, event: JobEvent | None,
                         final: bool) -> None:
        """The status as a card; the text version where Discord refuses the card."""
        locale = DiscordJobContext.of(job).guild_locale
        try:
            await self._edit_message(job, None, status_card(job, text, event, final=final,
                                                            locale=locale))
        except discord.HTTPException as exc:
            if not card_refused(exc):
                raise
            log.info("status card of job %s refused (%s); showing text", job.id, exc)
            await self._edit_message(job, text, None if final else status_view(job, locale))

    async def _edit_message(self, job: JobView, text: str | None,
                            view: discord.ui.View | discord.ui.LayoutView | None) -> None:
        message_id = int(DiscordJobContext.of(job).status_message_id or 0)
        # A card carries no content: Discord refuses both on one message.
        kwargs: dict[str, Any] = {"content": text, "view": view}
        webhook = interaction_webhook(self.client, job)
        if webhook is not None:
            try:
                await webhook.edit_message(message_id, **kwargs)
                return
            except (discord.NotFound, discord.Forbidden, discord.HTTPException) as exc:
                # An expired or revoked token: the channel API still works.
                if getattr(exc, "status", 0) not in (401, 404):
                    raise
        if is_personal_job(job):
            return  # no channel API where the bot may not be (cogs/utils/installs.py)
        channel = self.client.get_partial_messageable(int(job.channel_id))
        await channel.get_partial_message(message_id).edit(**kwargs)

    # ---- the finished video ---------------------------------------------------------------
    async def deliver(self, job: JobView, result: JobResult) -> str:
        if is_personal_job(job):
            return await deliver_personal(self, self.client, self.store, job, result)
        channel = self.client.get_partial_messageable(
            int(await result_channel(self.store, job)))
        existing = await self._already_posted(channel, job.id)
        if existing is not None:
            return str(existing)
        message = await self.post_result(channel, job, result, upload_limit(job))
        return str(message.id)  # the engine then emits DELIVERED, which links the status here

    async def post_result(self, channel: Postable, job: JobView, result: JobResult,
                          limit: int) -> discord.Message:
        """The result as a card, or the embed where the card is refused or not wanted."""
        guild = await self.store.guild_settings(job.guild_id)
        if self.wants_cards(guild):
            try:
                return await self._post_card(channel, job, result, limit, guild)
            except discord.HTTPException as exc:
                if not card_refused(exc):
                    raise
                log.info("result card of job %s refused (%s); posting the embed", job.id, exc)
        return await self._post_within(channel, job, result, limit)

    async def already_posted(self, channel: discord.abc.Messageable,
                             job_id: str) -> int | None:
        return await self._already_posted(channel, job_id)

    async def _post_within(self, channel: Postable, job: JobView,
                           result: JobResult, limit: int) -> discord.Message:
        count = len(result.video_paths)
        locale = DiscordJobContext.of(job).guild_locale
        for attempt_limit in (limit, limit // 2):
            # One message takes the server's limit for all its files together.
            budget = (attempt_limit - UPLOAD_MARGIN) // count
            paths = [await fit_upload(video, budget) for video in result.video_paths]
            fitted = [p for p in paths if p is not None]
            if len(fitted) < count:
                break
            try:
                return await channel.send(
                    content=f"<@{job.user_id}>",
                    embed=result_embed(job, result, locale=locale),
                    files=[discord.File(p, filename=video_filename(job.id, i))
                           for i, p in enumerate(fitted, 1)],
                    view=result_view(job, count, draft_buttons(job, locale), locale),
                    nonce=job_nonce(job.id),
                )
            except discord.HTTPException as exc:
                if exc.status != 413 and exc.code != 40005:
                    raise
                log.info("upload of job %s refused as too large; trying smaller", job.id)
        return await self._post_link(channel, job, result, limit)

    async def _post_link(self, channel: Postable, job: JobView,
                         result: JobResult, limit: int) -> discord.Message:
        thumb_src = result.last_frame_path or result.video_path
        thumb = await asyncio.to_thread(
            thumbnail, thumb_src, result.video_path.with_name("thumbnail.jpg"))
        locale = DiscordJobContext.of(job).guild_locale
        embed = result_embed(job, result, too_large_for=limit, locale=locale)
        embed.set_image(url="attachment://thumbnail.jpg")
        return await channel.send(
            content=f"<@{job.user_id}>",
            embed=embed,
            file=discord.File(thumb, filename="thumbnail.jpg"),
            view=result_view(job, len(result.video_paths), draft_buttons(job, locale), locale),
            nonce=job_nonce(job.id),
        )

    async def _post_card(self, channel: Postable, job: JobView, result: JobResult, limit: int,
                         guild: GuildSettings) -> discord.Message:
        """The result as one card (cogs/utils/layout.py): the files when they fit together
        with the input thumbnails, else the gateway's hosted links."""
        inputs = await input_thumbnails(self.settings.seedance_data_dir, job)
        count = len(result.video_paths)
        spent = sum(p.stat().st_size for p in inputs)
        locale = DiscordJobContext.of(job).guild_locale

        def card(videos: list[str], note: str | None = None) -> discord.ui.LayoutView:
            return result_card(job, result, videos=videos, spoiler_prompt=guild.spoiler_prompts,
                               inputs=[f"attachment://{p.name}" for p in inputs],
                               extra=draft_buttons(job, locale), note=note, locale=locale)

        def thumbs() -> list[discord.File]:
            return [discord.File(p, filename=p.name) for p in inputs]

        for attempt_limit in (limit, limit // 2):
            budget = (attempt_limit - UPLOAD_MARGIN - spent) // count
            paths = [await fit_upload(video, budget) for video in result.video_paths]
            fitted = [p for p in paths if p is not None]
            if len(fitted) < count:
                break
            names = [video_filename(job.id, i) for i in range(1, count + 1)]
            try:
                return await channel.send(
                    files=[discord.File(p, filename=n) for p, n in zip(fitted, names,
                                                                         strict=True)]
                    + thumbs(),
                    view=card([f"attachment://{n}" for n in names]),
                    nonce=job_nonce(job.id))
            except discord.HTTPException as exc:
                if exc.status != 413 and exc.code != 40005:
                    raise
                log.info("upload of job %s refused as too large; trying smaller", job.id)
        urls = job.result_meta.get("video_urls") or job.result_meta.get("urls") or []
        links = [str(u) for u in urls if str(u).startswith("https://")]
        expires = job.result_meta.get("expires_at")
        note = hosted_note(job, size(result.video_path.stat().st_size), size(limit), links,
                           float(expires) if expires else None, locale)
        files = thumbs()
        shown = links[:count]
        if not shown:  # nothing hosted to show: a still of the last frame
            still = await asyncio.to_thread(
                thumbnail, result.last_frame_path or result.video_path,
                result.video_path.with_name("thumbnail.jpg"))
            files.append(discord.File(still, filename="thumbnail.jpg"))
            shown = ["attachment://thumbnail.jpg"]
        return await channel.send(files=files, view=card(shown, note), nonce=job_nonce(job.id))

    async def _already_posted(self, channel: discord.abc.Messageable,
                              job_id: str) -> int | None:
        """A message of ours carrying this job's result buttons, if a crash hid it from us."""
        me = self.client.user
        try:
            async for message in channel.history(limit=50):
                if me is not None and message.author.id != me.id:
                    continue
                # Cards nest their buttons in a container: look at every component.
                if f"sd:reroll:{job_id}" in custom_ids(message):
                    return message.id
        except (discord.Forbidden, discord.NotFound):
            return None
        return None
