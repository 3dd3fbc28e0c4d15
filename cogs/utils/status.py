"""`/seedance-admin status` as an embed: one field per gateway, within Discord's embed limits
(25 fields, 1,024 characters a field, 6,000 in all). An unknown figure is a dash."""

from __future__ import annotations

import discord

from bot.i18n import DEFAULT, t
from bot.service import FleetStatus, GatewayStatus

from .texts import clip, duration_words

DASH = "—"
MAX_FIELDS = 25
MAX_FIELD = 1024
MAX_EMBED = 6000


def _seconds(value: float | None, locale: object = DEFAULT) -> str:
    return DASH if value is None else duration_words(value, locale)


def gateway_text(g: GatewayStatus, locale: object = DEFAULT) -> str:
    if g.concurrency is not None:
        effective, ceiling = g.concurrency
        concurrency = t(locale, "replies.gateways.of", effective=effective, ceiling=ceiling)
    else:
        concurrency = f"{DASH} " + t(locale, "replies.gateways.ceiling", ceiling=g.ceiling)
    cost = DASH if g.cost_today is None else f"{g.cost_today:g}"
    if g.last_error is None:
        error = t(locale, "replies.gateways.no_error")
    else:
        e = g.last_error
        error = f"`{clip(e.kind, 40)}` <t:{int(e.at)}:R>: {e.message or DASH}"
    lines = [
        t(locale, "replies.gateways.circuit", circuit=g.circuit or DASH, concurrency=concurrency),
        t(locale, "replies.gateways.in_flight", in_flight=g.in_flight, queued=g.queued),
        t(locale, "replies.gateways.task_time", done=g.tasks_last_hour,
          p50=_seconds(g.p50, locale), p95=_seconds(g.p95, locale)),
        t(locale, "replies.gateways.today", credits=g.credits_today, cost=cost),
        t(locale, "replies.gateways.last_error", error=error),
    ]
    return clip("\n".join(lines), MAX_FIELD)


def status_embed(status: FleetStatus, locale: object = DEFAULT) -> discord.Embed:
    """Private to the admin who asked: `locale` is the interaction's."""
    embed = discord.Embed(
        title=t(locale, "replies.gateways.title"),
        description=t(locale, "replies.gateways.description", at=f"<t:{int(status.at)}:T>"),
    )
    shown = status.gateways[:MAX_FIELDS]
    for g in shown:
        embed.add_field(name=clip(g.name, 256), value=gateway_text(g, locale), inline=False)
    while len(embed) > MAX_EMBED - 100 and embed.fields:
        embed.remove_field(len(embed.fields) - 1)
    left = len(status.gateways) - len(embed.fields)
    if not status.gateways:
        embed.add_field(name=t(locale, "replies.gateways.none"),
                        value=t(locale, "replies.gateways.none_configured"))
    elif left:
        embed.set_footer(text=t(locale, "replies.gateways.more", left=left))
    return embed
