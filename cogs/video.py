"""`/video`: a prompt and up to twelve files in, a Seedance video out.

The interaction is deferred before anything slow. Declared attachment sizes are checked first
(no download of a file that is too big anyway), then each file is fetched from Discord's CDN
with a cap, measured from its real bytes, mapped to a role, and checked against every rule and
the chosen model's capability table. The user sees the mapping, the credits and the queue
position before anything is spent; invalid input gets an ephemeral list of every problem.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections import Counter
from typing import TYPE_CHECKING, Any, Literal

import discord
from discord import app_commands
from discord.ext import commands

from bot.engine import QueueFull, QuotaExceeded
from bot.errors import ConfigError, InvalidInput
from bot.intake import MediaInput, RequestOptions, prepare
from bot.models import Ratio, RequestedMode, Resolution
from bot.moderation import ReviewMode, matching_rule
from bot.store import EventRow
from cogs.texts import problems_text, utc

if TYPE_CHECKING:
    from cogs.app import SeedanceBot

log = logging.getLogger(__name__)

#: Where Discord serves attachments; downloads from anywhere else are refused.
DISCORD_CDN_HOSTS = ("cdn.discordapp.com", "media.discordapp.net")
FILE_OPTIONS = tuple(f"file{i}" for i in range(1, 13))

ModeChoice = Literal["auto", "text", "first_frame", "first_last_frame", "reference", "edit",
                     "extend"]
ResolutionChoice = Literal["480p", "720p", "1080p"]
RatioChoice = Literal["adaptive", "16:9", "4:3", "1:1", "3:4", "9:16", "21:9"]
ProviderChoice = Literal["local", "anyfast", "runware", "magnific", "hiapi"]


def cdn_hosts(bot: SeedanceBot) -> tuple[str, ...]:
    extra = bot.settings.seedance_cdn_hosts
    return DISCORD_CDN_HOSTS + tuple(h.strip() for h in extra.split(",") if h.strip())


async def guild_defaults(bot: SeedanceBot, guild_id: int | None) -> dict[str, Any]:
    return await bot.store.guild_settings(str(guild_id)) if guild_id else {}


def access_problem(interaction: discord.Interaction[Any], settings: dict[str, Any]) -> str | None:
    """Allowed channels and roles set by the server's admins."""
    channels = [str(c) for c in settings.get("allowed_channels", [])]
    channel_id = str(interaction.channel_id)
    parent = str(getattr(interaction.channel, "parent_id", "") or "")
    if channels and channel_id not in channels and parent not in channels:
        where = ", ".join(f"<#{c}>" for c in channels)
        return f"Videos can be made only in {where} on this server."
    roles = [str(r) for r in settings.get("allowed_roles", [])]
    member_roles = {str(r.id) for r in getattr(interaction.user, "roles", [])}
    if roles and not member_roles.intersection(roles):
        names = ", ".join(f"<@&{r}>" for r in roles)
        return f"Making videos here needs one of these roles: {names}."
    return None


async def gate(bot: SeedanceBot, interaction: discord.Interaction[Any],
               settings: dict[str, Any], prompt: str) -> str | None:
    """Why this person may not start a video here now, or None. Cheap checks only, before any
    download: a block, channel and role rules, the prompt blocklist.
    The blocklist answer names the rule, never the matched words (the refusal is private, but
    a screenshot of it should not spread the term either)."""
    gid, uid = str(interaction.guild_id or "dm"), str(interaction.user.id)
    blocked = await bot.store.user_block(gid, uid)
    if blocked is not None:
        reason = f" Reason: {blocked[0]}" if blocked[0] else ""
        return f"You can't make videos on this server.{reason}"
    denied = access_problem(interaction, settings)
    if denied:
        return denied
    rule = matching_rule(await bot.store.block_rules(gid), prompt)
    if rule is not None:
        return (f"Your prompt uses words this server does not allow (blocklist rule #{rule.id}). "
                "Nothing was spent; rephrase it and try again.")
    return None


#: Launches between the rate check and the job's row, per (guild, user): counted with the rows,
#: so two quick /video calls can't both pass a limit of one.
_launching: Counter[tuple[str, str]] = Counter()


async def claim_rate_slot(bot: SeedanceBot, gid: str, uid: str,
                          settings: dict[str, Any]) -> str | None:
    """Why the per-minute rate forbids this launch, or None, having counted it as in flight
    (the caller releases it with `release_rate_slot` once the job's row exists or not)."""
    per_minute = int(settings.get("rate_per_minute") or 0)
    if per_minute > 0:
        recent = await bot.store.jobs_since(gid, uid, time.time() - 60)
        if recent + _launching[(gid, uid)] >= per_minute:
            return (f"You can start {per_minute} video{'s' if per_minute != 1 else ''} per minute "
                    "on this server; try again in a minute. Nothing was spent.")
    _launching[(gid, uid)] += 1  # no await since the read: nobody else can slip in between
    return None


def release_rate_slot(gid: str, uid: str) -> None:
    _launching[(gid, uid)] -= 1
    if _launching[(gid, uid)] <= 0:
        del _launching[(gid, uid)]


async def event_here(bot: SeedanceBot,
                     interaction: discord.Interaction[Any]) -> tuple[EventRow | None, str | None]:
    """The open event of this channel (or of the thread's parent), or why entries are closed."""
    if not interaction.guild_id:
        return None, None
    parent = str(getattr(interaction.channel, "parent_id", "") or "")
    event = await bot.store.open_event_in(str(interaction.guild_id),
                                          [str(interaction.channel_id), parent])
    if event is not None and event.ends_at <= time.time():
        return None, f"**{event.name}** has ended; entries are closed."
    return event, None


async def send_private(interaction: discord.Interaction[Any], text: str) -> None:
    """An ephemeral answer, replacing the public 'thinking…' placeholder if there is one."""
    if not interaction.response.is_done():
        await interaction.response.send_message(text, ephemeral=True)
        return
    with contextlib.suppress(discord.HTTPException):
        await interaction.delete_original_response()
    await interaction.followup.send(text, ephemeral=True)


async def launch_job(bot: SeedanceBot, interaction: discord.Interaction[Any],
                     inputs: list[MediaInput], options: RequestOptions) -> None:
    """Shared by /video and the buttons: validate, reserve, queue, show the status message."""
    if not interaction.response.is_done():
        await interaction.response.defer(thinking=True)
    token_issued = time.time()
    settings = await guild_defaults(bot, interaction.guild_id)
    event: EventRow | None = None
    denied = await gate(bot, interaction, settings, options.prompt)
    if denied is None:
        event, denied = await event_here(bot, interaction)
    gid, uid = str(interaction.guild_id or "dm"), str(interaction.user.id)
    if denied is None:
        denied = await claim_rate_slot(bot, gid, uid, settings)
    if denied:
        await send_private(interaction, denied)
        return
    try:
        await _launch(bot, interaction, inputs, options, settings, event, token_issued)
    finally:
        release_rate_slot(gid, uid)


async def _launch(bot: SeedanceBot, interaction: discord.Interaction[Any],
                  inputs: list[MediaInput], options: RequestOptions, settings: dict[str, Any],
                  event: EventRow | None, token_issued: float) -> None:
    review = ReviewMode.of(event.moderation if event else settings.get("moderation"))
    if review is not ReviewMode.OFF and not settings.get("mod_channel"):
        # Fail closed: nothing unreviewed may appear, and nobody could review it.
        await send_private(interaction, "Videos here need a moderator's approval, but no "
                           "moderators' channel is set. Ask an admin to run "
                           "`/seedance-admin moderation`. Nothing was spent.")
        return
    server_provider = settings.get("provider")
    options.provider = options.provider or server_provider or bot.settings.seedance_provider
    if not options.model:
        # A model belongs to its gateway: the server's model only on the server's gateway,
        # SEEDANCE_MODEL only on SEEDANCE_PROVIDER's; any other gateway runs its default.
        options.model = (settings.get("model") if options.provider == server_provider
                         else None) or bot.settings.model_for(options.provider)
    try:
        provider = bot.provider(options.provider)
        caps = provider.capabilities(options.model)
    except InvalidInput as exc:
        await send_private(interaction, problems_text(exc.problems))
        return
    except (ConfigError, KeyError, ValueError) as exc:
        await send_private(interaction, f"The {options.provider} gateway is not available: {exc}")
        return
    if options.duration is None and settings.get("duration"):
        options.duration = int(settings["duration"])
    if options.resolution is None and settings.get("resolution"):
        options.resolution = Resolution(settings["resolution"])
    if options.audio is None and "audio" in settings:
        options.audio = bool(settings["audio"]) and caps.audio_generation
    try:
        request = await prepare(inputs, options, caps, http=bot.http_client,
                                cache_dir=bot.engine.inputs_dir,
                                max_bytes=bot.settings.seedance_max_download_bytes,
                                allowed_hosts=cdn_hosts(bot),
                                policy=bot.settings.network_policy())
    except InvalidInput as exc:
        await send_private(interaction, problems_text(exc.problems))
        return
    status = await interaction.original_response()
    context = {
        "status_message_id": str(status.id),
        "interaction_token": interaction.token,
        "application_id": str(interaction.application_id),
        "token_issued_at": token_issued,
        "filesize_limit": interaction.filesize_limit,
        "review": review.value,
    }
    role_ids = [str(r.id) for r in getattr(interaction.user, "roles", [])]
    try:
        job = await bot.engine.enqueue(
            request,
            guild_id=str(interaction.guild_id or "dm"),
            channel_id=str(interaction.channel_id),
            user_id=str(interaction.user.id),
            role_ids=role_ids,
            context=context,
            needs_approval=review.prompts,
            hold_result=review.results,
            event_id=event.id if event else None,
        )
    except QuotaExceeded as exc:
        when = f" It resets {utc(exc.resets_at)}." if exc.resets_at else ""
        await send_private(interaction, f"Not enough credits: {exc}{when} Nothing was spent.")
        return
    except QueueFull as exc:
        await send_private(interaction, str(exc))
        return
    # From here the delivery port renders the status message (mapping, credits, position).
    log.info("job %s queued for user %s in guild %s", job.id, job.user_id, job.guild_id)


class Video(commands.Cog):
    def __init__(self, bot: SeedanceBot) -> None:
        self.bot = bot

    @app_commands.command(name="video", description="Make a short video with Seedance")
    @app_commands.guild_only()
    @app_commands.describe(
        prompt="What the video shows; refer to files as @image1, @video1, @audio1",
        mode="How files are used (auto picks from what you attach)",
        duration="Length in seconds",
        resolution="Output resolution",
        ratio="Aspect ratio (adaptive follows the first image)",
        audio="Generate sound (on by default where the model can)",
        seed="Seed for a repeatable result",
        provider="Gateway to use (default: the server's)",
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
        file5: discord.Attachment | None = None,
        file6: discord.Attachment | None = None,
        file7: discord.Attachment | None = None,
        file8: discord.Attachment | None = None,
        file9: discord.Attachment | None = None,
        file10: discord.Attachment | None = None,
        file11: discord.Attachment | None = None,
        file12: discord.Attachment | None = None,
    ) -> None:
        await interaction.response.defer(thinking=True)  # first: Discord allows 3 s
        files = [file1, file2, file3, file4, file5, file6, file7, file8, file9, file10,
                 file11, file12]
        attached = [(f"file{i}", a) for i, a in enumerate(files, 1) if a is not None]
        options = RequestOptions(
            prompt=prompt, mode=RequestedMode(mode), duration=duration,
            resolution=Resolution(resolution) if resolution else None,
            ratio=Ratio(ratio) if ratio else None,
            audio=audio, seed=seed, provider=provider or "",
        )
        inputs = [MediaInput(att.url, name=f"{opt} ({att.filename})", declared_size=att.size)
                  for opt, att in attached]
        await launch_job(self.bot, interaction, inputs, options)


async def setup(bot: SeedanceBot) -> None:
    await bot.add_cog(Video(bot))
