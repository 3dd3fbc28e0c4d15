"""`/my-data …`: what the bot keeps about you, and deleting it (everything ephemeral).

`delete` answers with a confirmation whose button is a dynamic item (`sdu:forget:<user id>`,
cogs/utils/views.py), so it still works after a restart. Who may press it and when, and the
deletion itself, are the PrivacyService's (bot/service/privacy.py).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import discord
from discord import app_commands
from discord.ext import commands

from bot.i18n import t
from cogs.utils.acks import defer
from cogs.utils.texts import holdings_text
from cogs.utils.views import ForgetButton

if TYPE_CHECKING:
    from cogs.app import SeedanceBot


@app_commands.allowed_installs(guilds=True, users=True)
@app_commands.allowed_contexts(guilds=True, dms=True, private_channels=True)
class Privacy(commands.GroupCog, group_name="my-data",
              group_description="What the video bot stores about you, and deleting it"):
    def __init__(self, bot: SeedanceBot) -> None:
        self.bot = bot
        super().__init__()

    @app_commands.command(name="show", description="What the bot stores about you")
    async def show(self, interaction: discord.Interaction[Any]) -> None:
        await defer(interaction, ephemeral=True, thinking=True)
        held = await self.bot.core.services.privacy.holdings(str(interaction.user.id))
        await interaction.followup.send(holdings_text(held, interaction.locale), ephemeral=True)

    @app_commands.command(name="delete", description="Delete your stored prompts and files")
    async def delete(self, interaction: discord.Interaction[Any]) -> None:
        uid = str(interaction.user.id)
        n = await self.bot.core.services.privacy.job_count(uid)
        view = discord.ui.View(timeout=None)
        view.add_item(ForgetButton(uid, interaction.locale))
        lang = interaction.locale
        await interaction.response.send_message(
            t(lang, "cogs.privacy.delete_confirm", count=n) + " "
            + t(lang, "cogs.privacy.posted_note"), view=view, ephemeral=True)


async def setup(bot: SeedanceBot) -> None:
    await bot.add_cog(Privacy(bot))
