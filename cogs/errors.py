"""One place for app-command errors (as Red does): an ephemeral answer, or the channel when the
interaction has expired. Core errors already carry a sentence for a person; anything else is
logged with its traceback and the user gets a short apology, never internals or secrets."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import discord
from discord import app_commands
from discord.ext import commands

from bot.errors import SeedanceError, scrub

if TYPE_CHECKING:
    from cogs.app import SeedanceBot

log = logging.getLogger(__name__)


def describe(error: app_commands.AppCommandError) -> str:
    original = getattr(error, "original", error)
    if isinstance(error, app_commands.MissingPermissions):
        return "You need the **Manage Server** permission for that."
    if isinstance(error, app_commands.CommandOnCooldown):
        return f"Slow down: try again in {error.retry_after:.0f} s."
    if isinstance(error, app_commands.NoPrivateMessage):
        return "That works only in a server."
    if isinstance(error, app_commands.CheckFailure):
        return "You can't use that here."
    if isinstance(original, SeedanceError):
        return str(original)
    return "Something went wrong on our side; it has been logged. Please try again."


class Errors(commands.Cog):
    def __init__(self, bot: SeedanceBot) -> None:
        self.bot = bot
        bot.tree.error(self.on_app_command_error)

    async def on_app_command_error(self, interaction: discord.Interaction[Any],
                                   error: app_commands.AppCommandError) -> None:
        original = getattr(error, "original", error)
        if not isinstance(original, SeedanceError | app_commands.CheckFailure):
            log.error("command %s failed", interaction.command and interaction.command.name,
                      exc_info=original)
        text = scrub(describe(error), self.bot.settings.secrets())
        try:
            if interaction.response.is_done():
                await interaction.followup.send(text, ephemeral=True)
            else:
                await interaction.response.send_message(text, ephemeral=True)
        except discord.HTTPException:
            # The interaction expired (10062) or its token died: say it in the channel.
            channel = interaction.channel
            if isinstance(channel, discord.abc.Messageable):
                await channel.send(f"{interaction.user.mention} {text}",
                                   allowed_mentions=discord.AllowedMentions(users=True))


async def setup(bot: SeedanceBot) -> None:
    await bot.add_cog(Errors(bot))
