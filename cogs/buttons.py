"""Buttons that survive restarts: dynamic items whose custom id carries the action and job id.

`sd:<action>:<job id>` is all a button needs; after a restart discord.py matches the template
and rebuilds the item from the custom id, so buttons on messages posted long ago still work.
Each press checks who pressed it, and new jobs spend through the presser's quotas.
"""

from __future__ import annotations

import random
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import discord
from discord.ext import commands

from bot.intake import MediaInput, RequestOptions
from bot.models import MediaKind, RequestedMode, Role
from bot.store import TERMINAL_STATES, JobView

if TYPE_CHECKING:
    from cogs.app import SeedanceBot

ACTIONS = ("reroll", "extend", "animate", "cancel", "delete")
LABELS = {
    "reroll": ("Reroll", "🎲", discord.ButtonStyle.primary),
    "extend": ("Extend", "➕", discord.ButtonStyle.secondary),
    "animate": ("Animate last frame", "🖼️", discord.ButtonStyle.secondary),
    "cancel": ("Cancel", "✖️", discord.ButtonStyle.danger),
    "delete": ("Delete", "🗑️", discord.ButtonStyle.danger),
}


class JobButton(discord.ui.DynamicItem[discord.ui.Button[Any]],
                template=r"sd:(?P<action>reroll|extend|animate|cancel|delete):(?P<job>[0-9a-f-]{32,36})"):
    def __init__(self, action: str, job_id: str) -> None:
        label, emoji, style = LABELS[action]
        super().__init__(discord.ui.Button(label=label, emoji=emoji, style=style,
                                           custom_id=f"sd:{action}:{job_id}"))
        self.action = action
        self.job_id = job_id

    @classmethod
    async def from_custom_id(cls, interaction: discord.Interaction[Any],
                             item: discord.ui.Item[Any], match: re.Match[str]) -> JobButton:
        return cls(match["action"], match["job"])

    async def callback(self, interaction: discord.Interaction[Any]) -> None:
        bot: SeedanceBot = interaction.client
        job = await bot.engine.job(self.job_id)
        if job is None:
            await interaction.response.send_message("That job is no longer known.", ephemeral=True)
            return
        handler = getattr(self, f"_{self.action}")
        await handler(bot, interaction, job)

    # ---- actions --------------------------------------------------------------------------
    @staticmethod
    def _may_manage(interaction: discord.Interaction[Any], job: JobView) -> bool:
        if str(interaction.user.id) == job.user_id:
            return True
        perms = getattr(interaction.user, "guild_permissions", None)
        return bool(perms and perms.manage_messages)

    async def _cancel(self, bot: SeedanceBot, interaction: discord.Interaction[Any],
                      job: JobView) -> None:
        if not self._may_manage(interaction, job):
            await interaction.response.send_message(
                "Only the requester or someone with Manage Messages can cancel this.",
                ephemeral=True)
            return
        await interaction.response.defer(ephemeral=True, thinking=True)
        outcome = await bot.engine.cancel(job.id, str(interaction.user.id),
                                          moderator=str(interaction.user.id) != job.user_id)
        await interaction.followup.send(outcome, ephemeral=True)

    async def _delete(self, bot: SeedanceBot, interaction: discord.Interaction[Any],
                      job: JobView) -> None:
        if not self._may_manage(interaction, job):
            await interaction.response.send_message(
                "Only the requester or someone with Manage Messages can delete this.",
                ephemeral=True)
            return
        await interaction.response.defer()
        if interaction.message is not None:
            await interaction.message.delete()

    async def _reroll(self, bot: SeedanceBot, interaction: discord.Interaction[Any],
                      job: JobView) -> None:
        from cogs.video import launch_job

        req = job.request
        inputs = [MediaInput(r.source, name=r.name, declared_kind=r.kind,
                             local_path=Path(r.local_path) if r.local_path else None)
                  for r in req.references]
        mode = RequestedMode(req.mode.value)
        seed = random.randrange(0, 2**32) if req.seed is not None else None
        await launch_job(bot, interaction, inputs, _options_like(req, mode=mode, seed=seed))

    async def _extend(self, bot: SeedanceBot, interaction: discord.Interaction[Any],
                      job: JobView) -> None:
        from cogs.video import launch_job, send_private

        await interaction.response.defer(thinking=True)  # before any file work: 3 s rule
        video = _posted_video(interaction, job)
        if video is None:
            await send_private(interaction, "The video file is gone.")
            return
        await launch_job(bot, interaction, [video],
                         _options_like(job.request, mode=RequestedMode.EXTEND, seed=None))

    async def _animate(self, bot: SeedanceBot, interaction: discord.Interaction[Any],
                       job: JobView) -> None:
        from cogs.video import launch_job, send_private

        await interaction.response.defer(thinking=True)  # extracting a frame can take a while
        frame = await _last_frame(job)
        if frame is None:
            await send_private(interaction, "The video file is gone.")
            return
        item = MediaInput(str(frame), name="last frame", declared_kind=MediaKind.IMAGE,
                          role_hint=Role.FIRST_FRAME)
        await launch_job(bot, interaction, [item],
                         _options_like(job.request, mode=RequestedMode.FIRST_FRAME, seed=None))


def _options_like(req: Any, *, mode: RequestedMode, seed: int | None) -> RequestOptions:
    return RequestOptions(prompt=req.prompt, mode=mode, duration=req.duration,
                          resolution=req.resolution, ratio=req.ratio, audio=req.audio, seed=seed,
                          camera_fixed=req.camera_fixed, provider=req.provider, model=req.model)


def _posted_video(interaction: discord.Interaction[Any], job: JobView) -> MediaInput | None:
    """The posted file by its CDN URL (gateways fetch it), with our copy on disk for checks."""
    if not job.result_path or not Path(job.result_path).exists():
        return None
    url = job.result_path
    message = interaction.message
    if message is not None:
        for attachment in message.attachments:
            if attachment.filename.endswith(".mp4"):
                url = attachment.url
    return MediaInput(url, name="the posted video", declared_kind=MediaKind.VIDEO,
                      local_path=Path(job.result_path))


async def _last_frame(job: JobView) -> Path | None:
    if job.last_frame_path and Path(job.last_frame_path).exists():
        return Path(job.last_frame_path)
    if not job.result_path or not Path(job.result_path).exists():
        return None
    import asyncio

    from bot.media.transcode import extract_last_frame

    dest = Path(job.result_path).with_name("last_frame.png")
    return await asyncio.to_thread(extract_last_frame, Path(job.result_path), dest)


def result_view(job: JobView) -> discord.ui.View:
    view = discord.ui.View(timeout=None)
    for action in ("reroll", "extend", "animate", "delete"):
        view.add_item(JobButton(action, job.id))
    return view


def status_view(job: JobView) -> discord.ui.View | None:
    """A Cancel button while the job can still be stopped."""
    if job.state in TERMINAL_STATES:
        return None
    view = discord.ui.View(timeout=None)
    view.add_item(JobButton("cancel", job.id))
    return view


async def setup(bot: commands.Bot) -> None:
    bot.add_dynamic_items(JobButton)
