"""Draft → final and remix: registers their buttons and takes the remix form's submissions.

The buttons, the price prompt and the form are in cogs/utils/finals.py; the use cases in
bot/service/drafts.py. The form's submission is read from the raw interaction (as the Reject
form's is, cogs/moderation.py), so a form opened before a restart still works.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import discord
from discord.ext import commands

from cogs.utils.core import requester_of
from cogs.utils.finals import REMIX_PREFIX, ConfirmFinal, DraftButton
from cogs.utils.messaging import modal_value, submitted_for
from cogs.utils.views import launch

if TYPE_CHECKING:
    from cogs.app import SeedanceBot


class Drafts(commands.Cog):
    def __init__(self, bot: SeedanceBot) -> None:
        self.bot = bot

    async def cog_load(self) -> None:
        self.bot.add_dynamic_items(DraftButton, ConfirmFinal)

    async def cog_unload(self) -> None:
        self.bot.remove_dynamic_items(DraftButton, ConfirmFinal)

    @commands.Cog.listener()
    async def on_interaction(self, interaction: discord.Interaction[Any]) -> None:
        job_id = submitted_for(interaction, REMIX_PREFIX)
        if job_id is None:
            return
        data: Any = interaction.data
        drafts = self.bot.core.services.drafts
        who = requester_of(interaction)
        prompt, duration, ratio = (modal_value(data, key) for key in ("prompt", "duration",
                                                                       "ratio"))
        await launch(interaction, lambda ctx: drafts.remix(
            job_id, who, prompt=prompt, duration=duration, ratio=ratio, context=ctx))


async def setup(bot: SeedanceBot) -> None:
    await bot.add_cog(Drafts(bot))
