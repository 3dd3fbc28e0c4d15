"""`/seedance-admin status` as an embed: one field per gateway, within Discord's embed limits
(25 fields, 1,024 characters a field, 6,000 in all). An unknown figure is a dash."""

from __future__ import annotations

import discord

from bot.service import FleetStatus, GatewayStatus

from .texts import clip, duration_words

DASH = "—"
MAX_FIELDS = 25
MAX_FIELD = 1024
MAX_EMBED = 6000


def _seconds(value: float | None) -> str:
    return DASH if value is None else duration_words(value)


def gateway_text(g: GatewayStatus) -> str:
    if g.concurrency is not None:
        effective, ceiling = g.concurrency
        concurrency = f"{effective} of {ceiling}"
    else:
        concurrency = f"{DASH} (ceiling {g.ceiling})"
    cost = DASH if g.cost_today is None else f"{g.cost_today:g}"
    if g.last_error is None:
        error = "none"
    else:
        e = g.last_error
        error = f"`{clip(e.kind, 40)}` <t:{int(e.at)}:R>: {e.message or DASH}"
    lines = [
        f"**Circuit** {g.circuit or DASH} · **concurrency** {concurrency}",
        f"**In flight** {g.in_flight} · **queued** {g.queued}",
        f"**Task time** (last hour, {g.tasks_last_hour} done) p50 {_seconds(g.p50)} · "
        f"p95 {_seconds(g.p95)}",
        f"**Today** {g.credits_today} credits · gateway cost {cost}",
        f"**Last error** {error}",
    ]
    return clip("\n".join(lines), MAX_FIELD)


def status_embed(status: FleetStatus) -> discord.Embed:
    embed = discord.Embed(
        title="Gateways",
        description=f"The whole bot, as of <t:{int(status.at)}:T>. Task times over the last "
                    "hour; credits and cost since 00:00 UTC.",
    )
    shown = status.gateways[:MAX_FIELDS]
    for g in shown:
        embed.add_field(name=clip(g.name, 256), value=gateway_text(g), inline=False)
    while len(embed) > MAX_EMBED - 100 and embed.fields:
        embed.remove_field(len(embed.fields) - 1)
    left = len(status.gateways) - len(embed.fields)
    if not status.gateways:
        embed.add_field(name="No gateways", value="None is configured and no job used one.")
    elif left:
        embed.set_footer(text=f"{left} more gateways not shown")
    return embed
