"""Premium credits through Discord's store: entitlement events and the periodic recovery.

Events are hints (bot/service/premium.py checks each against Discord's list); the recovery,
on start and every few minutes in every process, catches what events missed or a crash left
half done (credited, not consumed), and gives back purchased credits jobs did not use.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

import discord
from discord.ext import commands, tasks

from bot.service.premium import PremiumService
from cogs.utils.premium import DiscordEntitlements, from_event

if TYPE_CHECKING:
    from cogs.app import SeedanceBot

log = logging.getLogger(__name__)

#: How often every process checks Discord's list against the database.
RECOVER_MINUTES = 10


class Premium(commands.Cog):
    def __init__(self, bot: SeedanceBot) -> None:
        self.bot = bot
        self.service = PremiumService(bot.core.store, bot.settings.skus,
                                      DiscordEntitlements(bot))

    async def cog_load(self) -> None:
        if self.service.enabled:
            self.recover.start()

    async def cog_unload(self) -> None:
        self.recover.cancel()

    @tasks.loop(minutes=RECOVER_MINUTES)
    async def recover(self) -> None:
        try:
            await self.service.recover()
            await self.bot.core.store.settle_purchased(now=time.time())
        except Exception:  # Discord or the database away: the loop must outlive it
            log.exception("premium recovery failed; next try in %d min", RECOVER_MINUTES)

    @commands.Cog.listener()
    async def on_entitlement_create(self, entitlement: discord.Entitlement) -> None:
        if self.service.enabled:
            await self.service.on_created(from_event(entitlement))

    @commands.Cog.listener()
    async def on_entitlement_update(self, entitlement: discord.Entitlement) -> None:
        if self.service.enabled:
            await self.service.on_created(from_event(entitlement))

    @commands.Cog.listener()
    async def on_entitlement_delete(self, entitlement: discord.Entitlement) -> None:
        if self.service.enabled:
            await self.service.on_deleted(from_event(entitlement))


async def setup(bot: SeedanceBot) -> None:
    await bot.add_cog(Premium(bot))
