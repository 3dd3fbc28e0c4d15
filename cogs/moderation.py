"""Moderation in Discord: the start-up sweep and the Reject modal's submissions.

The cards, their buttons and the audit entries are in cogs/utils/cards.py (the delivery port
posts them as jobs move). This cog posts what a crash left unposted, and takes the Reject
modal's submission from the raw interaction, so a modal opened before a restart still works.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Any

import discord
from discord.ext import commands

from bot.errors import Refusal
from bot.i18n import say, t
from bot.store import TERMINAL_STATES, JobState
from cogs.utils.acks import defer
from cogs.utils.cards import REASON_PREFIX, post_audit, post_card
from cogs.utils.core import requester_of
from cogs.utils.messaging import APPROVAL, AUDIT, REVIEW, modal_value, submitted_for

if TYPE_CHECKING:
    from cogs.app import SeedanceBot

log = logging.getLogger(__name__)


class Moderation(commands.Cog):
    def __init__(self, bot: SeedanceBot) -> None:
        self.bot = bot
        self._sweeper: asyncio.Task[None] | None = None

    async def cog_load(self) -> None:
        self._sweeper = asyncio.create_task(self.sweep(), name="moderation-sweep")

    async def cog_unload(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()

    async def sweep(self) -> None:
        """Post what a crash left unposted: cards of waiting jobs, audit entries of ended ones."""
        store, data_dir = self.bot.store, self.bot.settings.data_dir
        try:
            for job in await store.jobs_without_message(APPROVAL, [JobState.AWAITING_APPROVAL]):
                await post_card(self.bot, store, data_dir, job, APPROVAL)
            for job in await store.jobs_without_message(REVIEW, [JobState.HELD]):
                await post_card(self.bot, store, data_dir, job, REVIEW)
            # Only servers with an audit log, and only what ended since it was switched on
            # (at most a week back: an older gap is history, not a crash).
            week_ago = time.time() - 7 * 86400
            for guild_id, settings in (await store.all_guild_settings()).items():
                if not settings.audit_channel:
                    continue
                since = max(week_ago, settings.audit_since or 0.0)
                for job in await store.jobs_without_message(AUDIT, TERMINAL_STATES,
                                                            updated_since=since,
                                                            guild_id=guild_id):
                    await post_audit(self.bot, store, job)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("moderation sweep failed; the next start will try again")

    @commands.Cog.listener()
    async def on_interaction(self, interaction: discord.Interaction[Any]) -> None:
        job_id = submitted_for(interaction, REASON_PREFIX)
        if job_id is None:
            return
        data: Any = interaction.data
        videos = self.bot.core.services.videos
        who = requester_of(interaction)
        lang = interaction.locale
        try:
            await videos.may_decide(job_id, who)
        except Refusal as exc:
            await interaction.response.send_message(say(exc, lang), ephemeral=True)
            return
        # The reason is shown on the job's public status message: the server's language.
        reason = (modal_value(data, "reason").strip()
                  or t(interaction.guild_locale, "cogs.moderation.no_reason"))
        await defer(interaction, ephemeral=True, thinking=True)
        try:
            await videos.reject(job_id, who, reason)
        except Refusal as exc:
            await interaction.followup.send(say(exc, lang), ephemeral=True)
            return
        await interaction.followup.send(t(lang, "cogs.moderation.rejected"), ephemeral=True)


async def setup(bot: SeedanceBot) -> None:
    await bot.add_cog(Moderation(bot))
