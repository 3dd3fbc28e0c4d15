"""`/video`: a prompt and up to eleven files in, a Seedance video out (or a cheap draft first).

The interaction is deferred before anything slow; the rest is `VideoService.make` (the gate,
the server's defaults, the files fetched from Discord's CDN with a cap, measured from their
real bytes, mapped to roles and checked against every rule, then the job written with its
credits). A refusal is shown privately with every problem; from the job's row on, the delivery
port shows the mapping, the credits and the queue position before anything is spent.
It can be installed to a user too (DMs, group DMs, servers without the bot): such a job is
personal (cogs/utils/core.py `requester_of`, delivered by cogs/utils/installs.py).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

import discord
from discord import app_commands
from discord.ext import commands

from bot.intake import MediaInput, RequestOptions
from bot.models import Ratio, RequestedMode, Resolution
from cogs.utils.acks import defer
from cogs.utils.core import private_answers, requester_of
from cogs.utils.views import launch

if TYPE_CHECKING:
    from cogs.app import SeedanceBot

#: Eleven attachments: Discord allows 25 options, and `draft` took the twelfth file's place.
FILE_OPTIONS = tuple(f"file{i}" for i in range(1, 12))

ModeChoice = Literal["auto", "text", "first_frame", "first_last_frame", "reference", "edit",
                     "extend"]
ResolutionChoice = Literal["480p", "720p", "1080p"]
RatioChoice = Literal["adaptive", "16:9", "4:3", "1:1", "3:4", "9:16", "21:9", "9:21"]
ProviderChoice = Literal["local", "anyfast", "runware", "magnific", "hiapi"]


class Video(commands.Cog):
    def __init__(self, bot: SeedanceBot) -> None:
        self.bot = bot

    @app_commands.command(name="video", description="Make a short video with Seedance")
    @app_commands.allowed_installs(guilds=True, users=True)
    @app_commands.allowed_contexts(guilds=True, dms=True, private_channels=True)
    @app_commands.describe(
        prompt="What the video shows; refer to files as @image1, @video1, @audio1",
        mode="How files are used (auto picks from what you attach)",
        duration="Length in seconds",
        resolution="Output resolution",
        ratio="Aspect ratio (adaptive follows the first image)",
        audio="Generate sound (on by default where the model can)",
        seed="Seed for a repeatable result",
        provider="Gateway to use (default: the server's)",
        model="Model on that gateway, e.g. seedance (Seedance 2.0, 1080p) on Anyfast",
        web_search="Let the model search the web (Anyfast, text-to-video only)",
        camera_fixed="Keep the camera still (Magnific)",
        watermark="Ask the gateway for its watermark (Anyfast)",
        count="Videos from one request, 1-4, where the gateway makes several (each is charged)",
        draft="Cheapest version first (480p, shortest); its Final button makes the full one",
        **{f: f"Image (JPEG/PNG/WebP…), video (MP4/MOV) or audio (WAV/MP3) #{i}"
           for i, f in enumerate(FILE_OPTIONS, 1)},
    )
    async def video(
        self,
        interaction: discord.Interaction[Any],
        prompt: str,
        file1: discord.Attachment | None = None,
        file2: discord.Attachment | None = None,
        file3: discord.Attachment | None = None,
        file4: discord.Attachment | None = None,
        mode: ModeChoice = "auto",
        duration: app_commands.Range[int, 4, 15] | None = None,
        resolution: ResolutionChoice | None = None,
        ratio: RatioChoice | None = None,
        audio: bool | None = None,
        seed: app_commands.Range[int, 0, 4294967295] | None = None,
        provider: ProviderChoice | None = None,
        model: app_commands.Range[str, 1, 100] | None = None,
        web_search: bool = False,
        camera_fixed: bool = False,
        watermark: bool | None = None,
        count: app_commands.Range[int, 1, 4] = 1,
        file5: discord.Attachment | None = None,
        file6: discord.Attachment | None = None,
        file7: discord.Attachment | None = None,
        file8: discord.Attachment | None = None,
        file9: discord.Attachment | None = None,
        file10: discord.Attachment | None = None,
        file11: discord.Attachment | None = None,
        draft: bool = False,
    ) -> None:
        # First: Discord allows 3 s. Private where a user install's answers must be.
        await defer(interaction, thinking=True, ephemeral=private_answers(interaction))
        files = [file1, file2, file3, file4, file5, file6, file7, file8, file9, file10,
                 file11]
        inputs = [MediaInput(att.url, name=f"file{i} ({att.filename})", declared_size=att.size)
                  for i, att in enumerate(files, 1) if att is not None]
        options = RequestOptions(
            prompt=prompt, mode=RequestedMode(mode), duration=duration,
            resolution=Resolution(resolution) if resolution else None,
            ratio=Ratio(ratio) if ratio else None,
            audio=audio, seed=seed, provider=provider or "", model=model or None,
            web_search=web_search, camera_fixed=camera_fixed, watermark=watermark, count=count,
            draft=draft,
        )
        videos = self.bot.core.services.videos
        who = requester_of(interaction)
        await launch(interaction, lambda ctx: videos.make(who, inputs, options, context=ctx))

    @video.autocomplete("model")
    async def _model_choices(self, interaction: discord.Interaction[Any],
                             current: str) -> list[app_commands.Choice[str]]:
        provider = getattr(interaction.namespace, "provider", None)
        models = await self.bot.core.services.videos.models(requester_of(interaction), provider)
        return [app_commands.Choice(name=m, value=m) for m in models
                if current.casefold() in m.casefold()][:25]


async def setup(bot: SeedanceBot) -> None:
    await bot.add_cog(Video(bot))
