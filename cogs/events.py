"""`/event …`: a time-boxed contest in one channel, with its own credits and a gallery thread.

The rules (length, review, one event per channel, when a summary is due) are the EventService's
(bot/service/events.py); this cog creates the gallery thread, posts and renders:
- `start` has the service write the event row *before* creating the gallery thread, so a crash
  can never leave a thread nobody knows about; a thread made just before a crash is adopted at
  the next start.
- Intake closes at the end time even across restarts: `/video` refuses once it has passed, and
  a 15 s loop closes due events and posts their summaries.
- The summary carries a nonce derived from the event id and its message id is stored only
  after posting, so a crash in between re-posts nothing.

`/event status` is for everyone, so the group has no default permissions (Discord applies
them to a whole command); `start` and `end` check Manage Server at run time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import TYPE_CHECKING, Any, Literal

import discord
from discord import app_commands
from discord.ext import commands, tasks

from bot.errors import Refusal
from bot.guild import FixedSettings, ReviewMode
from bot.i18n import DEFAULT, say, t
from bot.service import EventService, Standing, VoteService, intake_closed_at
from bot.service.events import UNPOSTABLE, ChannelBusy
from bot.store import EventRow, EventStats
from cogs.utils.acks import defer
from cogs.utils.core import requester_of
from cogs.utils.messaging import NO_PINGS, event_nonce
from cogs.utils.texts import (
    clip,
    duration_words,
    standings_block,
    timestamp,
    winners_block,
)

if TYPE_CHECKING:
    from cogs.app import SeedanceBot

log = logging.getLogger(__name__)

ModerationChoice = Literal["off", "prompts", "results", "both"]
RatioChoice = Literal["16:9", "4:3", "1:1", "3:4", "9:16", "21:9", "9:21", "adaptive"]
ResolutionChoice = Literal["480p", "720p", "1080p"]
ProviderChoice = Literal["local", "anyfast", "runware", "magnific", "hiapi"]

def gallery_name(name: str) -> str:
    return clip(f"🎬 {name}", 100)


def bold(text: str) -> str:
    return f"**{discord.utils.escape_markdown(text)}**"


def announcement_text(event: EventRow, lang: object = DEFAULT) -> str:
    """The channel's announcement (public: the server's language)."""
    gallery = (f"<#{event.thread_id}>" if event.thread_id
               else t(lang, "cogs.events.this_channel"))
    return t(lang, "cogs.events.announcement", name=bold(event.name),
             channel=event.channel_id, until=timestamp(event.ends_at, "f"),
             relative=timestamp(event.ends_at), credits=event.credits_per_user,
             review=t(lang, f"cogs.events.review.{ReviewMode.of(event.moderation).value}"),
             fixed=fixed_line(event, lang), gallery=gallery)


def review_mode(event: EventRow, lang: object = DEFAULT) -> str:
    """The event's review setting as one word (`off`, `prompts`, …) in the reader's language."""
    return t(lang, f"cogs.review_mode.{ReviewMode.of(event.moderation).value}")


def fixed_line(event: EventRow, lang: object = DEFAULT) -> str:
    """The settings the event fixes, as a bullet line ("" when it fixes none)."""
    words = FixedSettings.from_stored(dict(event.fixed)).words()
    return t(lang, "cogs.events.fixed", words=words) + "\n" if words else ""


def stats_line(stats: EventStats, lang: object = DEFAULT) -> str:
    return t(lang, "cogs.events.stats", entries=stats.entries, posted=stats.posted,
             participants=stats.participants, credits=stats.credits_used)


def summary_text(event: EventRow, stats: EventStats, *, waiting_review: int = 0,
                 unfinished: int = 0, winners: list[Standing] | None = None,
                 lang: object = DEFAULT) -> str:
    """The summary, exactly from `event_stats` (entries are jobs asked for in the event), and
    the winners by votes (bot/service/votes.py) when `winners` is given; public, so in the
    server's language."""
    ended = intake_closed_at(event)
    lines = [
        t(lang, "cogs.events.summary.ended", name=bold(event.name)),
        t(lang, "cogs.events.summary.entries", entries=stats.entries, posted=stats.posted,
          rejected=stats.rejected),
        t(lang, "cogs.events.summary.participants", count=stats.participants),
        t(lang, "cogs.events.summary.credits", count=stats.credits_used),
        t(lang, "cogs.events.summary.duration", duration=duration_words(ended - event.created_at),
          start=timestamp(event.created_at, "f"), end=timestamp(ended, "f")),
    ]
    other = stats.entries - stats.posted - stats.rejected - waiting_review - unfinished
    if other > 0:
        lines.append(t(lang, "cogs.events.summary.failed", count=other))
    if waiting_review:
        lines.append(t(lang, "cogs.events.summary.waiting_review", count=waiting_review))
    if unfinished:
        lines.append(t(lang, "cogs.events.summary.unfinished", count=unfinished))
    if winners is not None:
        lines.append(winners_block(event, winners))
    return clip("\n".join(lines), 2000)


@app_commands.guild_only()
class Events(commands.GroupCog, group_name="event",
             group_description="Time-boxed video events with their own credits and gallery"):
    def __init__(self, bot: SeedanceBot) -> None:
        self.bot = bot
        self._lock = asyncio.Lock()  # one closer at a time: the loop and /event end
        self._adopted = False
        super().__init__()

    @property
    def events(self) -> EventService:
        return self.bot.core.services.events

    @property
    def votes(self) -> VoteService:
        return self.bot.core.services.votes

    async def cog_load(self) -> None:
        self.ticker.start()

    async def cog_unload(self) -> None:
        self.ticker.cancel()

    async def _say(self, interaction: discord.Interaction[Any], text: str) -> None:
        text = clip(text, 2000)
        if interaction.response.is_done():
            await interaction.followup.send(text, ephemeral=True, allowed_mentions=NO_PINGS)
        else:
            await interaction.response.send_message(text, ephemeral=True,
                                                    allowed_mentions=NO_PINGS)

    # ---- /event start -----------------------------------------------------------------------
    @app_commands.command(name="start", description="Start an event in a channel (Manage Server)")
    @app_commands.describe(
        name="The event's name (shown in the announcement and the gallery thread)",
        credits="Credits each person may spend in this event (separate from daily credits)",
        channel="Where entries are made (default: this channel)",
        hours="How long it runs: hours (added to minutes)",
        minutes="How long it runs: minutes (added to hours; fractions allowed)",
        moderation="Review for entries (default: the server's moderation setting)",
        ratio="Fix the aspect ratio of every entry",
        resolution="Fix the resolution of every entry",
        duration="Fix the length (seconds) of every entry",
        audio="Fix sound on or off for every entry",
        watermark="Fix the gateway's watermark on or off for every entry",
        provider="Fix the gateway (default: the server's when a model is fixed)",
        model="Fix the model (of the gateway), e.g. seedance for Seedance 2.0 on Anyfast",
    )
    @app_commands.checks.has_permissions(manage_guild=True)
    async def start(
        self, interaction: discord.Interaction[Any],
        name: app_commands.Range[str, 1, 80],
        credits: app_commands.Range[int, 1, 1_000_000],
        channel: discord.TextChannel | None = None,
        hours: app_commands.Range[float, 0, 720] = 0.0,
        minutes: app_commands.Range[float, 0, 43200] = 0.0,
        moderation: ModerationChoice | None = None,
        ratio: RatioChoice | None = None,
        resolution: ResolutionChoice | None = None,
        duration: app_commands.Range[int, 4, 15] | None = None,
        audio: bool | None = None,
        watermark: bool | None = None,
        provider: ProviderChoice | None = None,
        model: app_commands.Range[str, 1, 100] | None = None,
    ) -> None:
        await defer(interaction, ephemeral=True, thinking=True)
        lang, public = interaction.locale, interaction.guild_locale
        target = channel or interaction.channel
        if not isinstance(target, discord.TextChannel):
            await self._say(interaction, t(lang, "cogs.events.which_channel"))
            return
        try:
            fixed = FixedSettings(ratio=ratio, resolution=resolution, duration=duration,
                                  audio=audio, watermark=watermark, provider=provider,
                                  model=model)
            event = await self.events.start(
                requester_of(interaction), name=name, credits=credits,
                channel_id=str(target.id), seconds=hours * 3600 + minutes * 60,
                moderation=ReviewMode(moderation) if moderation else None, fixed=fixed)
        except ChannelBusy as exc:
            running = exc.running
            what = (t(lang, "cogs.events.busy_which", name=bold(running.name),
                      until=timestamp(running.ends_at, "f")) if running else "")
            await self._say(interaction, t(lang, "cogs.events.busy", channel=target.mention,
                                           which=what))
            return
        except Refusal as exc:
            await self._say(interaction, say(exc, lang))
            return
        try:
            thread = await target.create_thread(
                name=gallery_name(event.name), type=discord.ChannelType.public_thread,
                auto_archive_duration=10080,
                reason=t(public, "cogs.events.gallery_reason", name=event.name))
        except discord.HTTPException as exc:
            await self.events.not_started(event)
            await self._say(interaction, t(lang, "cogs.events.no_thread",
                                           channel=target.mention,
                                           error=exc.text or exc.status))
            return
        event = await self.events.attach_gallery(event, str(thread.id))
        announced = await self._announce(event, target, thread, public)
        note = "" if announced else t(lang, "cogs.events.not_announced")
        await self._say(interaction, t(lang, "cogs.events.started", name=bold(event.name),
                                       channel=target.mention,
                                       until=timestamp(event.ends_at, "f"),
                                       relative=timestamp(event.ends_at),
                                       credits=event.credits_per_user,
                                       review=review_mode(event, lang), gallery=thread.mention,
                                       note=note, fixed=fixed_line(event, lang)).strip())

    async def _announce(self, event: EventRow, channel: discord.abc.Messageable,
                        thread: discord.abc.Messageable, lang: object) -> bool:
        with contextlib.suppress(discord.HTTPException):
            await thread.send(t(lang, "cogs.events.gallery_intro", name=bold(event.name),
                                until=timestamp(event.ends_at, "f")),
                              nonce=event_nonce("g", event.id), allowed_mentions=NO_PINGS)
        try:
            await channel.send(announcement_text(event, lang),
                               nonce=event_nonce("a", event.id), allowed_mentions=NO_PINGS)
        except discord.HTTPException as exc:
            log.warning("announcement of event %s failed: %s", event.id, exc)
            return False
        return True

    # ---- /event status ----------------------------------------------------------------------
    @app_commands.command(name="status", description="The running event: entries so far and "
                                                     "your credits left")
    async def status(self, interaction: discord.Interaction[Any]) -> None:
        await defer(interaction, ephemeral=True, thinking=True)
        lang = interaction.locale
        who = requester_of(interaction)
        shown = await self.events.status(who)
        if not shown:
            text = t(lang, "cogs.events.none_running")
            last = await self.events.last_ended(who)
            if last is not None:
                event, stats = last
                text += t(lang, "cogs.events.last_one", name=bold(event.name),
                          ended=timestamp(intake_closed_at(event), "f"),
                          stats=stats_line(stats, lang),
                          winners=winners_block(event, await self.votes.winners(event)))
            await self._say(interaction, text)
            return
        parts = []
        for item in shown[:5]:
            event = item.event
            mine = (t(lang, "cogs.events.credits_left", left=item.credits_left,
                      credits=event.credits_per_user) if item.credits_left is not None
                    else t(lang, "cogs.events.credits_unlimited"))
            gallery = (t(lang, "cogs.events.gallery_link", thread=event.thread_id)
                       if event.thread_id else "")
            ending = (t(lang, "cogs.events.ended_summary_coming") if item.ended
                      else t(lang, "cogs.events.ends", until=timestamp(event.ends_at, "f"),
                             relative=timestamp(event.ends_at)))
            parts.append(t(lang, "cogs.events.status_item", name=bold(event.name),
                           channel=event.channel_id, gallery=gallery, ending=ending,
                           review=review_mode(event, lang), fixed=fixed_line(event, lang),
                           stats=stats_line(item.stats, lang), mine=mine,
                           standings=standings_block(event, await self.votes.top(event))))
        if len(shown) > 5:
            parts.append(t(lang, "cogs.events.more", count=len(shown) - 5))
        await self._say(interaction, "\n\n".join(parts))

    # ---- /event end -------------------------------------------------------------------------
    @app_commands.command(name="end", description="Close an event's entries and post its "
                                                  "summary (Manage Server)")
    @app_commands.describe(event="Which event (default: this channel's, or the only one)")
    @app_commands.checks.has_permissions(manage_guild=True)
    async def end(self, interaction: discord.Interaction[Any], event: str | None = None) -> None:
        await defer(interaction, ephemeral=True, thinking=True)
        lang = interaction.locale
        try:
            chosen = await self.events.choose(requester_of(interaction), event)
        except Refusal as exc:
            await self._say(interaction, say(exc, lang))
            return
        closed, outcome = await self.finish(chosen, now=time.time(), reader=lang)
        await self._say(interaction, t(lang, "cogs.events.closed", name=bold(closed.name),
                                       outcome=outcome))

    @end.autocomplete("event")
    async def _end_choices(self, interaction: discord.Interaction[Any],
                           current: str) -> list[app_commands.Choice[str]]:
        events = await self.events.open_events(str(interaction.guild_id))
        needle = current.casefold()
        return [app_commands.Choice(name=clip(e.name, 100), value=e.id)
                for e in events if needle in e.name.casefold()][:25]

    # ---- closing and the summary ------------------------------------------------------------
    @tasks.loop(seconds=15)
    async def ticker(self) -> None:
        """Close events past their end time and post summaries a crash or a wait left unposted."""
        now = time.time()
        if not self._adopted:
            self._adopted = True
            await self._adopt_orphans(now)
        for event in await self.events.due(now):
            try:
                await self.finish(event, now=now)
            except Exception:  # one broken event must not stop the others ending
                log.exception("closing event %s failed", event.id)

    @ticker.before_loop
    async def _wait_ready(self) -> None:
        await self.bot.wait_until_ready()

    def _server_locale(self, guild_id: str) -> object:
        """The server's language for posts made without an interaction (None: English)."""
        guild = self.bot.get_guild(int(guild_id))
        return guild.preferred_locale if guild is not None else None

    async def finish(self, event: EventRow, *, now: float,
                     reader: object = DEFAULT) -> tuple[EventRow, str]:
        """Close intake (once) and post the summary (in the server's language) when its numbers
        are final.

        Returns the event as stored and a sentence, in the `reader`'s language, saying where
        the summary is (or why not yet).
        """
        async with self._lock:
            closing = await self.events.close(event, now=now)
            current = closing.event
            if closing.summarised:
                return current, t(reader, "cogs.events.outcome.posted_already")
            if not closing.summary_due:
                return current, t(reader, "cogs.events.outcome.later",
                                  where=current.thread_id or current.channel_id,
                                  count=closing.unfinished)
            stats = closing.stats
            public = self._server_locale(current.guild_id)
            ref = await self._post_summary(current, summary_text(
                current, stats, waiting_review=closing.waiting_review,
                unfinished=closing.unfinished, winners=await self.votes.winners(current),
                lang=public), stats, public)
            if ref is None:
                return current, t(reader, "cogs.events.outcome.retry")
            await self.events.summary_posted(current, ref)
            if ref == UNPOSTABLE:
                return current, t(reader, "cogs.events.outcome.unpostable",
                                  stats=stats_line(stats, reader))
            where = current.thread_id or current.channel_id
            return current, t(reader, "cogs.events.outcome.link",
                              link=f"https://discord.com/channels/{current.guild_id}/{where}/{ref}")

    async def _post_summary(self, event: EventRow, text: str, stats: EventStats,
                            lang: object) -> str | None:
        """Post the summary (gallery thread, else the channel) and a pointer in the channel.
        The message id, or None to retry later; `UNPOSTABLE` when nowhere will ever take it."""
        gid = int(event.guild_id)
        targets = [t for t in (event.thread_id, event.channel_id) if t]
        summary: discord.Message | None = None
        where = ""
        for target in targets:
            channel = self.bot.get_partial_messageable(int(target), guild_id=gid)
            try:
                summary = await channel.send(text, nonce=event_nonce("s", event.id),
                                             allowed_mentions=NO_PINGS)
                where = target
                break
            except (discord.NotFound, discord.Forbidden) as exc:
                log.warning("summary of event %s can't go to %s: %s", event.id, target, exc)
            except discord.HTTPException as exc:
                log.warning("summary of event %s failed, will retry: %s", event.id, exc)
                return None
        if summary is None:
            return UNPOSTABLE
        if where != event.channel_id:
            link = f"https://discord.com/channels/{gid}/{where}/{summary.id}"
            pointer = t(lang, "cogs.events.pointer", name=bold(event.name),
                        entries=stats.entries, participants=stats.participants, link=link)
            channel = self.bot.get_partial_messageable(int(event.channel_id), guild_id=gid)
            try:
                await channel.send(pointer, nonce=event_nonce("p", event.id),
                                   allowed_mentions=NO_PINGS)
            except discord.HTTPException as exc:
                log.warning("pointer to the summary of event %s failed: %s", event.id, exc)
        return str(summary.id)

    async def _adopt_orphans(self, now: float) -> None:
        """An open event without a thread: the crash came between creating the thread and
        storing it. Adopt the thread by its name (ours), or make one."""
        for guild in self.bot.guilds:
            for event in await self.events.orphans(str(guild.id), now):
                channel = guild.get_channel(int(event.channel_id))
                if not isinstance(channel, discord.TextChannel):
                    continue
                me = self.bot.user
                thread = next((t for t in channel.threads if t.name == gallery_name(event.name)
                               and me is not None and t.owner_id == me.id), None)
                try:
                    if thread is None:
                        thread = await channel.create_thread(
                            name=gallery_name(event.name),
                            type=discord.ChannelType.public_thread, auto_archive_duration=10080,
                            reason=t(guild.preferred_locale, "cogs.events.gallery_reason",
                                     name=event.name))
                    await self.events.attach_gallery(event, str(thread.id))
                    log.info("event %s: gallery thread %s adopted", event.id, thread.id)
                except discord.HTTPException as exc:
                    log.warning("event %s has no gallery thread: %s", event.id, exc)


async def setup(bot: SeedanceBot) -> None:
    await bot.add_cog(Events(bot))
