"""Who may start a video where, checked before anything is downloaded or spent.

Cheap checks only (a few indexed reads): a member's block, the server's channels and roles, the
prompt blocklist, the channel's event, the review rule's channel (a personal job, the app
installed to the user, asked in a server with the bot keeps that server's rules), and a first
look at the per-minute rate (the authoritative count runs again in the job's own transaction, see
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
    ReviewedServer,
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


async def server_rules(store: Store, guild_id: str, who: Requester, prompt: str
                       ) -> GuildSettings:
    """A server's own rules for a member: their block, its channels and roles, its blocklist."""
    settings = await store.guild_settings(guild_id)
    blocked = await store.user_block(guild_id, who.user_id)
    if blocked is not None:
        raise Blocked(blocked[0])
    check_place(settings, who)
    rule = matching_rule(await store.block_rules(guild_id), prompt)
    if rule is not None:
        raise BlockedWords(rule.id)
    return settings


async def personal_in_server(store: Store, who: Requester, prompt: str) -> None:
    """A personal job asked in a server that has the bot: refused wherever that server's rules
    would refuse it, and where its moderators (or its channel's event) review every video,
    which a personal job cannot go through."""
    guild_id = who.rules_guild_id
    if not guild_id:
        return
    settings = await server_rules(store, guild_id, who, prompt)
    event = await store.open_event_in(guild_id, list(who.places))
    review = ReviewMode.of(event.moderation) if event is not None else settings.moderation
    if review is not ReviewMode.OFF:
        raise ReviewedServer()


async def admit(store: Store, who: Requester, prompt: str, *,
                now: float | None = None) -> Admitted:
    """Run every cheap check for a new video; raises the first `Refusal` that applies."""
    now = time.time() if now is None else now
    if who.in_server:
        settings = await server_rules(store, who.guild_id, who, prompt)
    else:
        await personal_in_server(store, who, prompt)
        settings = GuildSettings()
    event = await open_event_here(store, who, now=now)
    review = ReviewMode.of(event.moderation) if event is not None else settings.moderation
    if review is not ReviewMode.OFF and not settings.mod_channel:
        raise ReviewUnavailable()  # fail closed: nothing unreviewed may appear
    return Admitted(settings, event, review)
