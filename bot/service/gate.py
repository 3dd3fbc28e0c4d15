"""Who may start a video where, checked before anything is downloaded or spent.

Cheap checks only (a few indexed reads): a member's block, the server's channels and roles, the
prompt blocklist, the channel's event, the review rule's channel, and a first look at the
per-minute rate (the authoritative count runs again in the job's own transaction, see
bot/engine). Each failure is a typed `Refusal`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from bot.guild import GuildSettings, ReviewMode
from bot.moderation import matching_rule
from bot.store import EventRow, Store

from .people import Requester
from .refusals import (
    Blocked,
    BlockedWords,
    EventClosed,
    NotInThisChannel,
    ReviewUnavailable,
    RoleRequired,
)


@dataclass(frozen=True)
class Admitted:
    """What the gate learnt on the way: the server's settings, the channel's open event and
    the review rule that applies (the event's, else the server's)."""

    settings: GuildSettings
    event: EventRow | None
    review: ReviewMode


def check_place(settings: GuildSettings, who: Requester) -> None:
    """The server's allowed channels (a thread counts as its channel) and roles."""
    if settings.allowed_channels and not set(who.places) & set(settings.allowed_channels):
        raise NotInThisChannel(settings.allowed_channels)
    if settings.allowed_roles and not set(who.role_ids) & set(settings.allowed_roles):
        raise RoleRequired(settings.allowed_roles)


async def open_event_here(store: Store, who: Requester, *, now: float) -> EventRow | None:
    """The open event of this channel (or its thread's channel); refused once it has ended."""
    if not who.in_server:
        return None
    event = await store.open_event_in(who.guild_id, list(who.places))
    if event is not None and event.ends_at <= now:
        raise EventClosed(event.name)
    return event


async def admit(store: Store, who: Requester, prompt: str, *,
                now: float | None = None) -> Admitted:
    """Run every cheap check for a new video; raises the first `Refusal` that applies."""
    now = time.time() if now is None else now
    settings = await store.guild_settings(who.guild_id) if who.in_server else GuildSettings()
    if who.in_server:
        blocked = await store.user_block(who.guild_id, who.user_id)
        if blocked is not None:
            raise Blocked(blocked[0])
        check_place(settings, who)
        rule = matching_rule(await store.block_rules(who.guild_id), prompt)
        if rule is not None:
            raise BlockedWords(rule.id)
    event = await open_event_here(store, who, now=now)
    review = ReviewMode.of(event.moderation) if event is not None else settings.moderation
    if review is not ReviewMode.OFF and not settings.mod_channel:
        raise ReviewUnavailable()  # fail closed: nothing unreviewed may appear
    return Admitted(settings, event, review)
