"""`/library …`: a server's characters, scenes and sounds under one-word names, used in `/video`
prompts as `@name`.

Every rule is the LibraryService's (bot/service/library.py): names, the gate, limits, the file
checked like a /video input, moderation, registration on the server's gateway, who may remove.
This cog defers first, renders and posts; refusals reach the tree's error handler
(cogs/app.py), which answers privately. Everything here is ephemeral except the moderators'
note of an item that waits for them.
"""

from __future__ import annotations

import contextlib
import io
import logging
from typing import TYPE_CHECKING, Any

import discord
from discord import app_commands
from discord.ext import commands

from bot.service import LibraryService
from cogs.utils.acks import defer
from cogs.utils.core import requester_of
from cogs.utils.library_texts import (
    EMBEDS_PER_MESSAGE,
    added_text,
    decided_text,
    item_embed,
    removed_text,
    review_note,
    shelf_header,
)
from cogs.utils.messaging import NO_PINGS

if TYPE_CHECKING:
    from cogs.app import SeedanceBot

log = logging.getLogger(__name__)


@app_commands.guild_only()
class Library(commands.GroupCog, group_name="library",
              group_description="This server's characters, scenes and sounds for @name"):
    def __init__(self, bot: SeedanceBot) -> None:
        self.bot = bot
        super().__init__()

    @property
    def library(self) -> LibraryService:
        return self.bot.core.services.library

    @app_commands.command(name="add", description="Keep a file under a name; use it in /video "
                                                  "prompts as @name")
    @app_commands.describe(
        name="One word (letters, digits, _ and -), e.g. hero",
        file="Image (JPEG/PNG/WebP…), video (MP4/MOV) or audio (WAV/MP3)",
        description="What it is, for the list (optional)",
    )
    async def add(self, interaction: discord.Interaction[Any],
                  name: app_commands.Range[str, 1, 100], file: discord.Attachment,
                  description: app_commands.Range[str, 0, 200] = "") -> None:
        await defer(interaction, ephemeral=True, thinking=True)
        who = requester_of(interaction)
        added = await self.library.add(who, name, file.url, filename=file.filename,
                                       declared_size=file.size, description=description)
        await interaction.followup.send(added_text(added, interaction.locale), ephemeral=True,
                                        allowed_mentions=NO_PINGS)
        if added.mod_channel:
            with contextlib.suppress(discord.HTTPException):
                channel = self.bot.get_partial_messageable(int(added.mod_channel))
                await channel.send(review_note(added, who.user_id, interaction.guild_locale),
                                   allowed_mentions=NO_PINGS)

    @app_commands.command(name="list", description="The library: names, previews, who added "
                                                   "what, how often used")
    async def list_(self, interaction: discord.Interaction[Any]) -> None:
        await defer(interaction, ephemeral=True, thinking=True)
        shelf = await self.library.shelf(requester_of(interaction))
        await interaction.followup.send(shelf_header(shelf, interaction.locale), ephemeral=True,
                                        allowed_mentions=NO_PINGS)
        for start in range(0, len(shelf.items), EMBEDS_PER_MESSAGE):
            embeds: list[discord.Embed] = []
            files: list[discord.File] = []
            for n, item in enumerate(shelf.items[start:start + EMBEDS_PER_MESSAGE]):
                thumb = await self.library.thumb(item)
                thumb_name = f"thumb_{start + n + 1}.png" if thumb else None
                if thumb and thumb_name:
                    files.append(discord.File(io.BytesIO(thumb), filename=thumb_name))
                embeds.append(item_embed(item, thumb_name, interaction.locale))
            await interaction.followup.send(embeds=embeds, files=files, ephemeral=True,
                                            allowed_mentions=NO_PINGS)

    @app_commands.command(name="remove", description="Remove an item (who added it, or Manage "
                                                     "Server)")
    @app_commands.describe(name="The item's name")
    async def remove(self, interaction: discord.Interaction[Any],
                     name: app_commands.Range[str, 1, 100]) -> None:
        await defer(interaction, ephemeral=True, thinking=True)
        item = await self.library.remove(requester_of(interaction), name)
        await interaction.followup.send(removed_text(item, interaction.locale), ephemeral=True,
                                        allowed_mentions=NO_PINGS)

    @app_commands.command(name="approve", description="Let a waiting item be used (moderators)")
    @app_commands.describe(name="The item's name")
    async def approve(self, interaction: discord.Interaction[Any],
                      name: app_commands.Range[str, 1, 100]) -> None:
        await self._decide(interaction, name, approved=True)

    @app_commands.command(name="reject", description="Refuse and delete a waiting item "
                                                     "(moderators)")
    @app_commands.describe(name="The item's name")
    async def reject(self, interaction: discord.Interaction[Any],
                     name: app_commands.Range[str, 1, 100]) -> None:
        await self._decide(interaction, name, approved=False)

    async def _decide(self, interaction: discord.Interaction[Any], name: str, *,
                      approved: bool) -> None:
        """A moderator's approve or reject of a waiting item, answered privately."""
        await defer(interaction, ephemeral=True, thinking=True)
        who = requester_of(interaction)
        decide = self.library.approve if approved else self.library.reject
        item = await decide(who, name)
        await interaction.followup.send(decided_text(item, approved, who.user_id,
                                                     interaction.locale),
                                        ephemeral=True, allowed_mentions=NO_PINGS)

    @remove.autocomplete("name")
    @approve.autocomplete("name")
    @reject.autocomplete("name")
    async def _names(self, interaction: discord.Interaction[Any],
                     current: str) -> list[app_commands.Choice[str]]:
        shelf = await self.library.shelf(requester_of(interaction))
        return [app_commands.Choice(name=i.name, value=i.name) for i in shelf.items
                if current.casefold() in i.name.casefold()][:25]


async def setup(bot: SeedanceBot) -> None:
    await bot.add_cog(Library(bot))
