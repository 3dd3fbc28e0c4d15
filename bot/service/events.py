"""Events (a contest or launch in one channel, with its own credits and gallery): the rules of
starting, finding, ending and summing one up. The front end creates the gallery thread and
posts the messages; every decision is made here.

- A start writes the event row *before* the gallery thread exists, so a crash can never leave
  a thread nobody knows about (`orphans` lists events a crash left without their thread).
- Intake closes at the end time even across restarts; `close` records when it really closed.
- The summary waits (up to `SUMMARY_GRACE`) for entries still being made, so its numbers are
  final; entries waiting for moderators do not hold it.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from bot.config import Settings
from bot.engine import Engine
from bot.errors import InvalidInput, said_together
from bot.guild import FixedSettings, GuildSettings, ReviewMode
from bot.intake import RequestOptions
from bot.providers.base import Provider
from bot.store import TERMINAL_STATES, EventRow, EventStats, JobState, Store

from .options import capabilities_of, fixed_problems
from .people import Requester
from .refusals import BadSetting, NotAllowed, NothingThere
from .videos import resolve_options

#: Longest event a server can run; longer ones are almost always a typo.
MAX_SECONDS = 30 * 86400
#: How long a summary waits for entries still being made when intake closes.
SUMMARY_GRACE = 30 * 60
#: A thread-less open event older than this lost its thread reference in a crash.
ORPHAN_AFTER = 60
#: `summary_ref` of an event whose start failed: there is nothing to summarise.
NO_SUMMARY = "none"
#: `summary_ref` when neither the thread nor the channel takes messages any more.
UNPOSTABLE = "unpostable"
#: States that wait on people (moderators), not on the pipeline.
WAITING_FOR_REVIEW = frozenset({JobState.AWAITING_APPROVAL, JobState.HELD})
UNFINISHED = [s for s in JobState if s not in TERMINAL_STATES]


class ChannelBusy(BadSetting):
    """The channel has an open event already."""

    def __init__(self, running: EventRow | None) -> None:
        self.running = running
        super().__init__(key="errors.event.channel_busy")


@dataclass(frozen=True)
class EventStatus:
    """One running event as a member sees it."""

    event: EventRow
    stats: EventStats
    credits_left: int | None  # None: unlimited
    ended: bool  # past its end time; the summary is on its way


@dataclass(frozen=True)
class Closing:
    """An event whose intake is closed, and whether its summary can be posted now."""

    event: EventRow
    stats: EventStats
    waiting_review: int
    unfinished: int
    summary_due: bool  # False: entries are still being made (or it was posted already)

    @property
    def summarised(self) -> bool:
        return bool(self.event.summary_ref)


def intake_closed_at(event: EventRow) -> float:
    """When entries stopped: the end time, or earlier when someone ended it by hand."""
    return min(event.closed_at or event.ends_at, event.ends_at)


class EventService:
    def __init__(self, store: Store, engine: Engine, *, settings: Settings | None = None,
                 providers: Callable[[str], Provider] | None = None) -> None:
        """`settings` and `providers` check what an event fixes against its gateway's table;
        without them an event may fix nothing."""
        self.store = store
        self.engine = engine
        self.settings = settings
        self.providers = providers

    @staticmethod
    def _require(who: Requester) -> str:
        if not who.admin:
            raise NotAllowed(key="errors.setting.manage_server")
        return who.guild_id

    async def start(self, who: Requester, *, name: str, credits: int, channel_id: str,
                    seconds: float, moderation: ReviewMode | None,
                    fixed: FixedSettings | None = None) -> EventRow:
        """Write the event (before its gallery thread exists); refused with the reason.

        `fixed`: settings every entry gets (bot/service/options.py), checked here against the
        gateway's table so an event never fixes what its gateway cannot make.
        """
        guild = self._require(who)
        if not 0 < seconds <= MAX_SECONDS:
            raise BadSetting(key="errors.event.length")
        settings = await self.store.guild_settings(guild)
        fixed = self._checked(fixed or FixedSettings(), settings)
        mode = moderation or settings.moderation
        if mode is not ReviewMode.OFF and not settings.mod_channel:
            raise BadSetting(key="errors.event.no_mod_channel")
        now = time.time()
        row = EventRow(id=uuid.uuid4().hex, guild_id=guild, name=name.strip() or name,
                       channel_id=channel_id, ends_at=now + seconds, credits_per_user=credits,
                       moderation=mode.value, created_by=who.user_id, created_at=now,
                       fixed=fixed.values())
        event = await self.store.create_event(row)
        if event is None:
            raise ChannelBusy(await self.store.open_event_in(guild, [channel_id]))
        return event

    def _checked(self, fixed: FixedSettings, guild: GuildSettings) -> FixedSettings:
        """`fixed` with the gateway its model belongs to; BadSetting when the gateway's table
        refuses a fixed value (the same words /video would use)."""
        if not fixed.values():
            return fixed
        if self.settings is None or self.providers is None:
            raise BadSetting(key="errors.event.cannot_fix_any")
        where = resolve_options(RequestOptions(provider=fixed.provider or "", model=fixed.model),
                                guild, self.settings)
        try:
            caps = capabilities_of(self.providers, where.provider, where.model)
        except InvalidInput as exc:
            raise BadSetting(key="errors.event.cannot_fix_model",
                             reason=exc.problems[0].said()) from None
        problems = fixed_problems(fixed, caps)
        if problems:
            raise BadSetting(key="errors.event.cannot_fix", problems=said_together(problems))
        if fixed.model is not None:  # a model belongs to its gateway
            fixed = fixed.model_copy(update={"provider": where.provider})
        return fixed

    async def not_started(self, event: EventRow) -> None:
        """Its gallery could not be made: closed at once, with nothing to sum up."""
        await self.store.close_event(event.id, now=time.time())
        await self.store.set_event_refs(event.id, summary_ref=NO_SUMMARY)

    async def attach_gallery(self, event: EventRow, thread_id: str) -> EventRow:
        await self.store.set_event_refs(event.id, thread_id=thread_id)
        return await self.store.get_event(event.id) or event

    async def status(self, who: Requester, *, now: float | None = None) -> list[EventStatus]:
        """This channel's open event, else every open event of the server."""
        now = time.time() if now is None else now
        here = await self.store.open_event_in(who.guild_id, list(who.places))
        shown = [here] if here else await self.store.events(who.guild_id, open_only=True)
        out = []
        for event in shown:
            quota = await self.engine.remaining(who.user_id, who.guild_id, who.role_ids,
                                                event_id=event.id)
            window = quota.window("event")
            out.append(EventStatus(event, await self.store.event_stats(event.id),
                                   window.left if window is not None else None,
                                   event.ends_at <= now))
        return out

    async def last_ended(self, who: Requester) -> tuple[EventRow, EventStats] | None:
        """The most recent event that ran (for "no event is running; the last one…")."""
        last = next((e for e in await self.store.events(who.guild_id)
                     if e.summary_ref != NO_SUMMARY), None)
        return (last, await self.store.event_stats(last.id)) if last else None

    async def choose(self, who: Requester, wanted: str | None) -> EventRow:
        """The event `/event end` means: by id or name, else this channel's, else the only."""
        guild = self._require(who)
        open_events = await self.store.events(guild, open_only=True)
        chosen: EventRow | None
        if wanted:
            key = wanted.strip().casefold()
            chosen = next((e for e in open_events if e.id == wanted.strip()), None) or next(
                (e for e in open_events if e.name.casefold() == key), None)
        else:
            chosen = await self.store.open_event_in(guild, list(who.places))
            if chosen is None and len(open_events) == 1:
                chosen = open_events[0]
        if chosen is None:
            names = ", ".join(f"**{e.name}**" for e in open_events)
            if open_events:
                raise NothingThere(key="errors.event.which", names=names)
            raise NothingThere(key="errors.event.none_open")
        return chosen

    async def open_events(self, guild_id: str) -> list[EventRow]:
        return await self.store.events(guild_id, open_only=True)

    async def close(self, event: EventRow, *, now: float) -> Closing:
        """Close intake (once) and say whether the summary's numbers are final yet."""
        current = await self.store.get_event(event.id) or event
        if current.open:
            # Ended by the clock: intake really closed at the end time (/video refuses after
            # it), even when the closer runs a little later or after a restart.
            closed_at = min(now, current.ends_at)
            current = await self.store.close_event(current.id, now=closed_at) or current
        pending = [j for j in await self.store.jobs(UNFINISHED, guild_id=current.guild_id)
                   if j.event_id == current.id]
        review = sum(1 for j in pending if j.state in WAITING_FOR_REVIEW)
        making = len(pending) - review
        due = not current.summary_ref and not (
            making and now < (current.closed_at or now) + SUMMARY_GRACE)
        return Closing(current, await self.store.event_stats(current.id), review, making, due)

    async def summary_posted(self, event: EventRow, ref: str) -> None:
        await self.store.set_event_refs(event.id, summary_ref=ref)

    async def due(self, now: float) -> list[EventRow]:
        """Events past their end time, and closed ones whose summary is not posted yet."""
        return await self.store.events_due(now)

    async def orphans(self, guild_id: str, now: float) -> list[EventRow]:
        """Open events a crash left without their gallery thread."""
        return [e for e in await self.store.events(guild_id, open_only=True)
                if not e.thread_id and now - e.created_at >= ORPHAN_AFTER]
