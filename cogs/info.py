"""`/queue` and `/quota`: where things stand, for the person asking (ephemeral)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import discord
from discord import app_commands
from discord.ext import commands

from bot.i18n import say, t
from cogs.utils.acks import defer
from cogs.utils.core import requester_of
from cogs.utils.texts import (
    clip,
    duration_words,
    limits_line,
    purchased_line,
    settings_line,
    timestamp,
)

if TYPE_CHECKING:
    from cogs.app import SeedanceBot


class Info(commands.Cog):
    def __init__(self, bot: SeedanceBot) -> None:
        self.bot = bot

    @app_commands.command(name="queue", description="This server's video queue and your place")
    @app_commands.guild_only()
    async def queue(self, interaction: discord.Interaction[Any]) -> None:
        await defer(interaction, ephemeral=True, thinking=True)
        view = await self.bot.core.services.videos.queue(requester_of(interaction))
        entries = view.entries
        me = str(interaction.user.id)
        lang = interaction.locale
        running = [e for e in entries if e.position == 0]
        waiting = [e for e in entries if e.position > 0]
        lines = [t(lang, "cogs.info.queue_head", running=len(running), waiting=len(waiting))]
        for e in entries[:15]:
            where = t(lang, "cogs.info.running") if e.position == 0 else f"#{e.position}"
            mine = t(lang, "cogs.info.yours_mark") if e.job.user_id == me else ""
            lines.append(t(lang, "cogs.info.queue_line", where=f"{where:>7}", user=e.job.user_id,
                           settings=settings_line(e.job.request), eta=duration_words(e.eta),
                           mine=mine))
        mine_left = [e for e in entries[15:] if e.job.user_id == me]
        lines += [t(lang, "cogs.info.yours_later", position=e.position,
                    eta=duration_words(e.eta)) for e in mine_left]
        if not entries:
            lines = [t(lang, "cogs.info.queue_empty")]
        lines.append(f"-# {limits_line(view.limits)}")
        await interaction.followup.send(clip("\n".join(lines), 2000), ephemeral=True,
                                        allowed_mentions=discord.AllowedMentions.none())

    @app_commands.command(name="quota", description="Your credits: used, left, and when they reset")
    @app_commands.allowed_installs(guilds=True, users=True)
    @app_commands.allowed_contexts(guilds=True, dms=True, private_channels=True)
    async def quota(self, interaction: discord.Interaction[Any]) -> None:
        await defer(interaction, ephemeral=True, thinking=True)
        status = await self.bot.core.services.videos.quota(requester_of(interaction))
        lines = []
        for window in status.windows:
            line = say(window.describe(), interaction.locale)
            if window.resets_at:
                line += f" ({timestamp(window.resets_at)})"
            lines.append(f"• {line[0].upper()}{line[1:]}")
        left = status.left
        prices = self.bot.settings.prices
        lang = interaction.locale
        head = (t(lang, "cogs.info.spend_unlimited") if left is None
                else t(lang, "cogs.info.spend_left", count=left))
        price = ", ".join(f"{res} = {per}/s" for res, per in prices.items())
        if self.bot.settings.skus:
            bought = await self.bot.core.store.purchased_balance(str(interaction.user.id))
            lines.append(purchased_line(bought, interaction.locale))
        await interaction.followup.send(f"{head}\n" + "\n".join(lines) + "\n-# "
                                        + t(lang, "cogs.info.prices", prices=price),
                                        ephemeral=True)


async def setup(bot: SeedanceBot) -> None:
    await bot.add_cog(Info(bot))
