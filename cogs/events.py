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
from bot.i18n import say
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

MODERATION_WORDS = {
    ReviewMode.OFF: "none — videos appear as soon as they are made",
    ReviewMode.PROMPTS: "moderators approve each prompt before it is generated",
    ReviewMode.RESULTS: "moderators approve each video before it appears",
    ReviewMode.BOTH: "moderators approve each prompt, and each video before it appears",
}


def gallery_name(name: str) -> str:
    return clip(f"🎬 {name}", 100)


def bold(text: str) -> str:
    return f"**{discord.utils.escape_markdown(text)}**"


def announcement_text(event: EventRow) -> str:
    gallery = f"<#{event.thread_id}>" if event.thread_id else "this channel"
    return (
        f"🎬 {bold(event.name)} is open! Make your entry with `/video` in <#{event.channel_id}> "
        f"until {timestamp(event.ends_at, 'f')} ({timestamp(event.ends_at)}).\n"
        f"• Credits: **{event.credits_per_user}** per person for this event (separate from "
        "daily credits)\n"
        f"• Review: {MODERATION_WORDS[ReviewMode.of(event.moderation)]}\n"
        f"{fixed_line(event)}"
        f"• Entries appear in {gallery}"
    )


def fixed_line(event: EventRow) -> str:
    """The settings the event fixes, as a bullet line ("" when it fixes none)."""
    words = FixedSettings.from_stored(dict(event.fixed)).words()
    return f"• Fixed for every entry: {words}\n" if words else ""


def stats_line(stats: EventStats) -> str:
    return (f"**{stats.entries}** entries, **{stats.posted}** posted, "
            f"**{stats.participants}** participants, **{stats.credits_used}** credits used")


def summary_text(event: EventRow, stats: EventStats, *, waiting_review: int = 0,
                 unfinished: int = 0, winners: list[Standing] | None = None) -> str:
    """The summary, exactly from `event_stats` (entries are jobs asked for in the event), and
    the winners by votes (bot/service/votes.py) when `winners` is given."""
    ended = intake_closed_at(event)
    lines = [
        f"🏁 {bold(event.name)} has ended.",
        f"• Entries: **{stats.entries}** (posted {stats.posted}, rejected {stats.rejected})",
        f"• Participants: **{stats.participants}**",
        f"• Credits used: **{stats.credits_used}**",
        f"• Duration: {duration_words(ended - event.created_at)} "
        f"({timestamp(event.created_at, 'f')} – {timestamp(ended, 'f')})",
    ]
    other = stats.entries - stats.posted - stats.rejected - waiting_review - unfinished
    if other > 0:
        lines.append(f"• Failed or cancelled: {other}")
    if waiting_review:
        lines.append(f"• Still waiting for review: {waiting_review} (they appear here if "
                     "approved; not counted above)")
    if unfinished:
        lines.append(f"• Still being made: {unfinished} (not counted above)")
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
        target = channel or interaction.channel
        if not isinstance(target, discord.TextChannel):
            await self._say(interaction, "Say which text channel the event is in (`channel:`).")
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
            what = (f" ({bold(running.name)}, until {timestamp(running.ends_at, 'f')})"
                    if running else "")
            await self._say(interaction, f"{target.mention} already has an open event{what}. "
                            "End it with `/event end` first.")
            return
        except Refusal as exc:
            await self._say(interaction, say(exc, interaction.locale))
            return
        try:
            thread = await target.create_thread(
                name=gallery_name(event.name), type=discord.ChannelType.public_thread,
                auto_archive_duration=10080, reason=f"Gallery of the event {event.name}")
        except discord.HTTPException as exc:
            await self.events.not_started(event)
            await self._say(interaction, f"I couldn't create the gallery thread in "
                            f"{target.mention} ({exc.text or exc.status}); the bot needs "
                            "*Create Public Threads* and *Send Messages in Threads* there. "
                            "The event was not started.")
            return
        event = await self.events.attach_gallery(event, str(thread.id))
        announced = await self._announce(event, target, thread)
        note = "" if announced else (" I couldn't post the announcement in the channel; "
                                     "check my permissions there.")
        await self._say(interaction, f"Started {bold(event.name)} in {target.mention} until "
                        f"{timestamp(event.ends_at, 'f')} ({timestamp(event.ends_at)}), "
                        f"{event.credits_per_user} credits per person, review: "
                        f"{event.moderation}. Gallery: {thread.mention}.{note}\n"
                        f"{fixed_line(event)}".strip())

    async def _announce(self, event: EventRow, channel: discord.abc.Messageable,
                        thread: discord.abc.Messageable) -> bool:
        with contextlib.suppress(discord.HTTPException):
            await thread.send(f"Entries of {bold(event.name)} appear here until "
                              f"{timestamp(event.ends_at, 'f')}.",
                              nonce=event_nonce("g", event.id), allowed_mentions=NO_PINGS)
        try:
            await channel.send(announcement_text(event), nonce=event_nonce("a", event.id),
                               allowed_mentions=NO_PINGS)
        except discord.HTTPException as exc:
            log.warning("announcement of event %s failed: %s", event.id, exc)
            return False
        return True

    # ---- /event status ----------------------------------------------------------------------
    @app_commands.command(name="status", description="The running event: entries so far and "
                                                     "your credits left")
    async def status(self, interaction: discord.Interaction[Any]) -> None:
        await defer(interaction, ephemeral=True, thinking=True)
        who = requester_of(interaction)
        shown = await self.events.status(who)
        if not shown:
            text = "No event is running on this server."
            last = await self.events.last_ended(who)
            if last is not None:
                event, stats = last
                text += (f" The last one, {bold(event.name)}, ended "
                         f"{timestamp(intake_closed_at(event), 'f')}: {stats_line(stats)}.\n"
                         f"{winners_block(event, await self.votes.winners(event))}")
            await self._say(interaction, text)
            return
        parts = []
        for item in shown[:5]:
            event = item.event
            mine = (f"You have **{item.credits_left}** of {event.credits_per_user} event "
                    "credits left." if item.credits_left is not None
                    else "Your event credits are unlimited.")
            gallery = f" · gallery <#{event.thread_id}>" if event.thread_id else ""
            ending = ("ended — the summary is on its way" if item.ended
                      else f"ends {timestamp(event.ends_at, 'f')} ({timestamp(event.ends_at)})")
            parts.append(
                f"🎬 {bold(event.name)} in <#{event.channel_id}>{gallery}\n"
                f"{ending} · review: {event.moderation}\n{fixed_line(event)}"
                f"So far: {stats_line(item.stats)}.\n{mine}\n"
                f"{standings_block(event, await self.votes.top(event))}")
        if len(shown) > 5:
            parts.append(f"…and {len(shown) - 5} more.")
        await self._say(interaction, "\n\n".join(parts))

    # ---- /event end -------------------------------------------------------------------------
    @app_commands.command(name="end", description="Close an event's entries and post its "
                                                  "summary (Manage Server)")
    @app_commands.describe(event="Which event (default: this channel's, or the only one)")
    @app_commands.checks.has_permissions(manage_guild=True)
    async def end(self, interaction: discord.Interaction[Any], event: str | None = None) -> None:
        await defer(interaction, ephemeral=True, thinking=True)
        try:
            chosen = await self.events.choose(requester_of(interaction), event)
        except Refusal as exc:
            await self._say(interaction, say(exc, interaction.locale))
            return
        closed, outcome = await self.finish(chosen, now=time.time())
        await self._say(interaction, f"Entries to {bold(closed.name)} are closed. {outcome}")

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

    async def finish(self, event: EventRow, *, now: float) -> tuple[EventRow, str]:
        """Close intake (once) and post the summary when its numbers are final.

        Returns the event as stored and a sentence saying where the summary is (or why not
        yet).
        """
        async with self._lock:
            closing = await self.events.close(event, now=now)
            current = closing.event
            if closing.summarised:
                return current, "The summary was posted already."
            if not closing.summary_due:
                making = closing.unfinished
                return current, (f"The summary will be posted in "
                                 f"<#{current.thread_id or current.channel_id}> once the "
                                 f"{making} entr{'y' if making == 1 else 'ies'} still being "
                                 "made are finished.")
            stats = closing.stats
            ref = await self._post_summary(current, summary_text(
                current, stats, waiting_review=closing.waiting_review,
                unfinished=closing.unfinished, winners=await self.votes.winners(current)), stats)
            if ref is None:
                return current, "I couldn't post the summary yet; I'll try again shortly."
            await self.events.summary_posted(current, ref)
            if ref == UNPOSTABLE:
                return current, ("I can't post in the gallery thread or the channel any more, "
                                 f"so there is no summary message: {stats_line(stats)}.")
            where = current.thread_id or current.channel_id
            return current, f"Summary: https://discord.com/channels/{current.guild_id}/{where}/{ref}"

    async def _post_summary(self, event: EventRow, text: str, stats: EventStats) -> str | None:
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
            pointer = (f"🏁 {bold(event.name)} has ended: {stats.entries} entries from "
                       f"{stats.participants} participants. Summary and gallery: {link}")
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
                            reason=f"Gallery of the event {event.name}")
                    await self.events.attach_gallery(event, str(thread.id))
                    log.info("event %s: gallery thread %s adopted", event.id, thread.id)
                except discord.HTTPException as exc:
                    log.warning("event %s has no gallery thread: %s", event.id, exc)


async def setup(bot: SeedanceBot) -> None:
    await bot.add_cog(Events(bot))
