"""`/my-videos`: a person's recent jobs, privately, in servers, DMs and group DMs alike; with
`job:` the video of one of them attached again (where it could be shown nowhere else: a
personal job that outlived its token with the user's DMs closed, cogs/utils/installs.py)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import discord
from discord import app_commands
from discord.ext import commands

from bot.service import Fetch
from bot.words import size
from cogs.utils import install_texts
from cogs.utils.acks import defer
from cogs.utils.messaging import NO_PINGS, UPLOAD_MARGIN, jump_url, result_channel
from cogs.utils.texts import MAX_CONTENT, clip
from cogs.utils.views import video_filename

if TYPE_CHECKING:
    from cogs.app import SeedanceBot


class Installs(commands.Cog):
    def __init__(self, bot: SeedanceBot) -> None:
        self.bot = bot

    @app_commands.command(name="my-videos", description="Your recent videos, and where they are")
    @app_commands.allowed_installs(guilds=True, users=True)
    @app_commands.allowed_contexts(guilds=True, dms=True, private_channels=True)
    @app_commands.describe(page="Which page of your videos (10 a page, newest first)",
                           job="A job id from the list: attach its video here")
    async def my_videos(self, interaction: discord.Interaction[Any],
                        page: app_commands.Range[int, 1, 1000] = 1,
                        job: app_commands.Range[str, 4, 36] | None = None) -> None:
        await defer(interaction, ephemeral=True, thinking=True)
        if job:
            await self._attach(interaction, job)
            return
        core, locale = self.bot.core, interaction.locale
        listed = await core.services.my_videos.page(str(interaction.user.id), page)
        if not listed.jobs:
            await interaction.followup.send(install_texts.no_videos(locale, page),
                                            ephemeral=True)
            return
        lines = [install_texts.page_head(locale, listed.page, listed.more)]
        for item in listed.jobs:
            jump = None
            if (item.delivery_ref or "").isdigit():
                jump = jump_url(item.guild_id, await result_channel(core.store, item),
                                str(item.delivery_ref))
            lines.append(install_texts.job_line(
                locale, item, install_texts.where_line(locale, item, jump)))
        await interaction.followup.send(clip("\n".join(lines), MAX_CONTENT), ephemeral=True,
                                        allowed_mentions=NO_PINGS)

    async def _attach(self, interaction: discord.Interaction[Any], prefix: str) -> None:
        fetched = await self.bot.core.services.my_videos.fetch(str(interaction.user.id), prefix)
        found, locale = fetched.job, interaction.locale
        if fetched.outcome is Fetch.UNKNOWN or found is None:
            text = install_texts.unknown_job(locale, prefix)
        elif fetched.outcome is Fetch.NOT_READY:
            text = install_texts.not_ready(locale, found)
        elif fetched.outcome is Fetch.GONE:
            text = install_texts.files_gone(locale, found)
        else:
            limit = interaction.filesize_limit - UPLOAD_MARGIN
            total = sum(p.stat().st_size for p in fetched.paths)
            if total > limit:
                text = install_texts.too_large(locale, found, size(total), size(limit))
            else:
                files = [discord.File(p, filename=video_filename(found.id, i))
                         for i, p in enumerate(fetched.paths, 1)]
                await interaction.followup.send(install_texts.attached(locale, found),
                                                files=files,
                                                ephemeral=True, allowed_mentions=NO_PINGS)
                return
        await interaction.followup.send(text, ephemeral=True, allowed_mentions=NO_PINGS)


async def setup(bot: SeedanceBot) -> None:
    await bot.add_cog(Installs(bot))
