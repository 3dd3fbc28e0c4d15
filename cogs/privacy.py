"""`/my-data …`: what the bot keeps about you, and deleting it (everything ephemeral).

`delete` answers with a confirmation whose button is a dynamic item (`sdu:forget:<user id>`),
so it still works after a restart, and only the person it names may press it. The deletion
itself is `bot.moderation.forget_user`: prompts, inputs and files of finished jobs go, each job
keeps an anonymised accounting row. Unfinished jobs are refused rather than skipped, so the
user never believes everything is gone while a job still holds their prompt.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import discord
from discord import app_commands
from discord.ext import commands

from bot.moderation import forget_user
from bot.store import TERMINAL_STATES, JobState, JobView
from bot.store.moderation import LEDGER_KEEP_SECONDS

if TYPE_CHECKING:
    from cogs.app import SeedanceBot

NO_PINGS = discord.AllowedMentions.none()
UNFINISHED = [s for s in JobState if s not in TERMINAL_STATES]
LEDGER_DAYS = LEDGER_KEEP_SECONDS // 86400

POSTED_NOTE = ("Videos already posted in channels are Discord messages: delete them first with "
               "their 🗑️ button (after this they are no longer linked to you, so only "
               "moderators can remove them).")


@dataclass(frozen=True)
class Holdings:
    """What is stored about one user, for `/my-data show`."""

    jobs: int
    with_prompt: int
    unfinished: int
    files: int
    bytes: int


def holdings(jobs: list[JobView], data_dir: Path) -> Holdings:
    """Count the user's jobs and the files on disk that belong to them (blocking: disk I/O)."""
    root = data_dir.resolve()
    files: set[Path] = set()
    for job in jobs:
        folder = data_dir / "jobs" / job.id
        if folder.is_dir():
            files.update(p.resolve() for p in folder.rglob("*") if p.is_file())
        for ref in job.request.references:
            if ref.local_path:
                path = Path(ref.local_path).resolve()
                if path.is_relative_to(root) and path.is_file():
                    files.add(path)
    size = 0
    for path in files:
        with contextlib.suppress(OSError):
            size += path.stat().st_size
    return Holdings(
        jobs=len(jobs),
        with_prompt=sum(1 for j in jobs if j.request.prompt or j.request.references),
        unfinished=sum(1 for j in jobs if j.state not in TERMINAL_STATES),
        files=len(files),
        bytes=size,
    )


def megabytes(n: int) -> str:
    return f"{n / 1_000_000:.1f} MB" if n >= 100_000 else f"{n / 1000:.0f} kB"


class ForgetButton(discord.ui.DynamicItem[discord.ui.Button[Any]],
                   template=r"sdu:forget:(?P<user>[0-9]{1,20})"):
    """"Delete my data" — for the user named in the custom id only."""

    def __init__(self, user_id: str) -> None:
        super().__init__(discord.ui.Button(label="Delete my data", emoji="🗑️",
                                           style=discord.ButtonStyle.danger,
                                           custom_id=f"sdu:forget:{user_id}"))
        self.user_id = user_id

    @classmethod
    async def from_custom_id(cls, interaction: discord.Interaction[Any],
                             item: discord.ui.Item[Any], match: re.Match[str]) -> ForgetButton:
        return cls(match["user"])

    async def callback(self, interaction: discord.Interaction[Any]) -> None:
        bot: SeedanceBot = interaction.client
        if str(interaction.user.id) != self.user_id:
            await interaction.response.send_message(
                "This button deletes someone else's data, so only they can press it. "
                "Use `/my-data delete` for your own.", ephemeral=True)
            return
        unfinished = await bot.store.jobs(UNFINISHED, user_id=self.user_id)
        if unfinished:
            n = len(unfinished)
            await interaction.response.send_message(
                f"You have {n} unfinished job{'s' if n != 1 else ''} (queued, being made or "
                "waiting for a moderator). Wait until they end or cancel them with their "
                "Cancel button, then press again. Nothing was deleted.", ephemeral=True)
            return
        await interaction.response.edit_message(content="Deleting your data…", view=None)
        done = await forget_user(bot.store, bot.settings.data_dir, self.user_id,
                                 now=time.time(), discard=bot.engine.discard_task)
        text = (f"Done. Deleted the prompts and input files of **{done.jobs}** "
                f"job{'s' if done.jobs != 1 else ''} and **{done.files}** "
                f"file{'s' if done.files != 1 else ''} from disk. Each job keeps an anonymous "
                "accounting row (model, length, credits). Credit ledger lines of the last "
                f"{LEDGER_DAYS} days keep your user id, as quotas are counted from them.")
        try:
            await interaction.edit_original_response(content=text)
        except discord.HTTPException:
            await interaction.followup.send(text, ephemeral=True)


class Privacy(commands.GroupCog, group_name="my-data",
              group_description="What the video bot stores about you, and deleting it"):
    def __init__(self, bot: SeedanceBot) -> None:
        self.bot = bot
        super().__init__()

    @app_commands.command(name="show", description="What the bot stores about you")
    async def show(self, interaction: discord.Interaction[Any]) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        jobs = await self.bot.store.jobs(user_id=str(interaction.user.id))
        held = await asyncio.to_thread(holdings, jobs, self.bot.settings.data_dir)
        if not held.jobs:
            head = "I store **no jobs** of yours (none made, or you deleted them)."
        else:
            head = (f"I store **{held.jobs}** job{'s' if held.jobs != 1 else ''} of yours "
                    f"(all servers): **{held.with_prompt}** with your prompt and inputs, "
                    f"**{held.files}** file{'s' if held.files != 1 else ''} on disk "
                    f"({megabytes(held.bytes)}: your inputs, results and last frames).")
            if held.unfinished:
                head += f" {held.unfinished} of them are not finished yet."
        await interaction.followup.send(
            f"{head}\nThe credit ledger keeps your user id for up to {LEDGER_DAYS} days, as "
            "quotas are counted from it.\n`/my-data delete` removes your prompts and files; "
            "each job keeps an anonymous accounting row.", ephemeral=True)

    @app_commands.command(name="delete", description="Delete your stored prompts and files")
    async def delete(self, interaction: discord.Interaction[Any]) -> None:
        uid = str(interaction.user.id)
        jobs = await self.bot.store.jobs(user_id=uid)
        view = discord.ui.View(timeout=None)
        view.add_item(ForgetButton(uid))
        n = len(jobs)
        await interaction.response.send_message(
            f"This deletes the prompts, input files and videos stored for your **{n}** "
            f"job{'s' if n != 1 else ''} on every server. It can't be undone. "
            f"{POSTED_NOTE}", view=view, ephemeral=True)


async def setup(bot: SeedanceBot) -> None:
    bot.add_dynamic_items(ForgetButton)
    await bot.add_cog(Privacy(bot))
