"""Review before anything appears: approval cards for moderators, and the audit log.

- A prompt held for approval (`awaiting_approval`) or a finished video held before posting
  (`held`) gets one card in the server's moderators' channel: requester, channel, prompt,
  input thumbnails, mapped roles, estimate (and the video for results), with Approve / Reject.
  The buttons are dynamic items (`sdm:<action>:<job id>`) so they work after a restart; Reject
  opens a modal whose submission is handled from the raw interaction, so it works even when the
  modal was opened before a restart.
- Each card is recorded in `job_messages` after posting and looked up before, and carries a
  nonce derived from the job id: a restart re-posts nothing, and a sweep at start posts the
  cards and audit entries a crash left unposted.
- Every finished job gets one concise audit entry in the audit channel, if one is set.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import discord
from discord.ext import commands

from bot.engine import EventKind, JobEvent, NotAllowed
from bot.models import MediaKind
from bot.store import TERMINAL_STATES, JobMessage, JobState, JobView
from cogs.texts import audit_text, review_embed

if TYPE_CHECKING:
    from cogs.app import SeedanceBot

log = logging.getLogger(__name__)

REASON_PREFIX = "sdm:reason:"
APPROVAL, REVIEW, AUDIT = "approval", "review", "audit"
MAX_THUMBNAILS = 4
NO_PINGS = discord.AllowedMentions.none()


def card_nonce(kind: str, job_id: str) -> str:
    """Distinct from the result post's nonce (25 hex digits): a two-letter non-hex prefix."""
    prefix = {APPROVAL: "ap", REVIEW: "rv", AUDIT: "au"}[kind]
    return (prefix + job_id.replace("-", ""))[:25]


def is_moderator(user: Any) -> bool:
    perms = getattr(user, "guild_permissions", None)
    return bool(perms and (perms.manage_messages or perms.manage_guild))


class ModButton(discord.ui.DynamicItem[discord.ui.Button[Any]],
                template=r"sdm:(?P<action>approve|reject):(?P<job>[0-9a-f-]{32,36})"):
    def __init__(self, action: str, job_id: str) -> None:
        label, style = (("Approve", discord.ButtonStyle.success) if action == "approve"
                        else ("Reject", discord.ButtonStyle.danger))
        super().__init__(discord.ui.Button(label=label, style=style,
                                           custom_id=f"sdm:{action}:{job_id}"))
        self.action = action
        self.job_id = job_id

    @classmethod
    async def from_custom_id(cls, interaction: discord.Interaction[Any],
                             item: discord.ui.Item[Any], match: Any) -> ModButton:
        return cls(match["action"], match["job"])

    async def callback(self, interaction: discord.Interaction[Any]) -> None:
        bot: SeedanceBot = interaction.client
        job = await bot.engine.job(self.job_id)
        if job is None or job.guild_id != str(interaction.guild_id):
            await interaction.response.send_message("That job is no longer known.",
                                                    ephemeral=True)
            return
        if not is_moderator(interaction.user):
            await interaction.response.send_message(
                "Only moderators (Manage Messages) can decide on this.", ephemeral=True)
            return
        if self.action == "reject":
            await interaction.response.send_modal(ReasonModal(self.job_id))
            return
        await interaction.response.defer(ephemeral=True, thinking=True)
        try:
            await bot.engine.approve(self.job_id, str(interaction.user.id))
        except NotAllowed as exc:
            await interaction.followup.send(str(exc), ephemeral=True)
            return
        await refresh_cards(bot, self.job_id)
        await interaction.followup.send("Approved.", ephemeral=True)


class ReasonModal(discord.ui.Modal):
    """Asks why. Submissions are handled by `Moderation.on_interaction` (restart-proof), so
    `on_submit` stays the no-op default."""

    reason: discord.ui.TextInput[Any] = discord.ui.TextInput(
        label="Reason (the requester sees it)", style=discord.TextStyle.paragraph,
        max_length=500, custom_id="reason")

    def __init__(self, job_id: str) -> None:
        super().__init__(title="Reject", custom_id=f"{REASON_PREFIX}{job_id}", timeout=None)


def _modal_value(data: Any, custom_id: str) -> str:
    """A text input's value from a modal submission, whatever the layout (rows or labels)."""
    stack = [data]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            if node.get("custom_id") == custom_id and "value" in node:
                return str(node["value"])
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return ""


# ---- cards -----------------------------------------------------------------------------------
async def _card_files(bot: SeedanceBot, job: JobView, kind: str) -> tuple[list[discord.File],
                                                                         str | None]:
    """Input thumbnails (and, for a result, the video) to attach; plus a note if it can't be."""
    from bot.media.transcode import thumbnail
    from cogs.delivery import DEFAULT_UPLOAD_LIMIT, UPLOAD_MARGIN, fit_upload

    folder = bot.settings.data_dir / "jobs" / job.id / "cards"
    files: list[discord.File] = []
    for i, ref in enumerate(job.request.references):
        if len(files) >= MAX_THUMBNAILS:
            break
        if ref.kind is MediaKind.AUDIO or not ref.local_path or not Path(ref.local_path).exists():
            continue
        dest = folder / f"input{i + 1}.jpg"
        try:
            if not dest.exists():
                dest.parent.mkdir(parents=True, exist_ok=True)
                await asyncio.to_thread(thumbnail, Path(ref.local_path), dest, 320)
        except Exception as exc:  # a thumbnail is a courtesy; the card matters
            log.info("no thumbnail for %s of job %s: %s", ref.name, job.id, exc)
            continue
        files.append(discord.File(dest, filename=f"input{i + 1}.jpg"))
    note = None
    if kind == REVIEW and job.result_path and Path(job.result_path).exists():
        limit = int(job.context.get("filesize_limit") or DEFAULT_UPLOAD_LIMIT)
        video = await fit_upload(Path(job.result_path), limit - UPLOAD_MARGIN)
        if video is not None:
            files.insert(0, discord.File(video, filename=f"review-{job.id[:8]}.mp4"))
        else:
            note = f"The video is too large to attach here; it is kept as job `{job.id}`."
    return files, note


def _waits_on(kind: str) -> JobState:
    return JobState.AWAITING_APPROVAL if kind == APPROVAL else JobState.HELD


def _card_view(job: JobView, kind: str) -> discord.ui.View | None:
    """Approve / Reject while the job waits on this card's decision."""
    if job.state is not _waits_on(kind):
        return None
    view = discord.ui.View(timeout=None)
    view.add_item(ModButton("approve", job.id))
    view.add_item(ModButton("reject", job.id))
    return view


async def _event_name(bot: SeedanceBot, job: JobView) -> str | None:
    if not job.event_id:
        return None
    event = await bot.store.get_event(job.event_id)
    return event.name if event else None


async def post_card(bot: SeedanceBot, job: JobView, kind: str) -> None:
    """The moderators' card for a job waiting on them; once per job and kind."""
    if await bot.store.job_message(job.id, kind) is not None:
        return
    settings = await bot.store.guild_settings(job.guild_id)
    channel_id = settings.get("mod_channel")
    if not channel_id:
        log.warning("job %s waits for review but guild %s has no moderators' channel",
                    job.id, job.guild_id)
        return
    files, note = await _card_files(bot, job, kind)
    embed = review_embed(job, kind, event_name=await _event_name(bot, job), note=note)
    channel = bot.get_partial_messageable(int(channel_id))
    extra: dict[str, Any] = {}
    view = _card_view(job, kind)
    if view is not None:
        extra["view"] = view
    message = await channel.send(embed=embed, files=files, nonce=card_nonce(kind, job.id),
                                 allowed_mentions=NO_PINGS, **extra)
    await bot.store.set_job_message(JobMessage(job.id, kind, str(channel_id), str(message.id)),
                                    now=time.time())


async def refresh_cards(bot: SeedanceBot, job_id: str) -> None:
    """Show the decision (or the outcome) on the job's cards; buttons go once decided."""
    job = await bot.engine.job(job_id)
    if job is None:
        return
    name = await _event_name(bot, job)
    for kind in (APPROVAL, REVIEW):
        card = await bot.store.job_message(job.id, kind)
        if card is None:
            continue
        embed = review_embed(job, kind, event_name=name,
                             decided=job.state is not _waits_on(kind))
        view = _card_view(job, kind)
        message = bot.get_partial_messageable(int(card.channel_id)).get_partial_message(
            int(card.message_id))
        try:
            await message.edit(embed=embed, view=view, allowed_mentions=NO_PINGS)
        except discord.HTTPException as exc:
            log.info("could not update the %s card of job %s: %s", kind, job.id, exc)


async def post_audit(bot: SeedanceBot, job: JobView) -> None:
    """One entry per finished job in the audit channel (if the server set one)."""
    if await bot.store.job_message(job.id, AUDIT) is not None:
        return
    settings = await bot.store.guild_settings(job.guild_id)
    channel_id = settings.get("audit_channel")
    if not channel_id:
        return
    jump = None
    if job.state is JobState.DELIVERED and job.delivery_ref and job.delivery_ref.isdigit():
        where = await result_channel(bot, job)
        jump = f"https://discord.com/channels/{job.guild_id}/{where}/{job.delivery_ref}"
    text = audit_text(job, jump_url=jump, event_name=await _event_name(bot, job))
    channel = bot.get_partial_messageable(int(channel_id))
    message = await channel.send(text, nonce=card_nonce(AUDIT, job.id),
                                 allowed_mentions=NO_PINGS)
    await bot.store.set_job_message(JobMessage(job.id, AUDIT, str(channel_id), str(message.id)),
                                    now=time.time())


async def result_channel(bot: SeedanceBot, job: JobView) -> str:
    """Where the job's video is posted: its event's gallery thread, else its channel."""
    if job.event_id:
        event = await bot.store.get_event(job.event_id)
        if event is not None and event.thread_id:
            return event.thread_id
    return job.channel_id


async def tell_requester(bot: SeedanceBot, job: JobView, text: str) -> bool:
    """A private note to the requester: an ephemeral follow-up while the interaction token
    lives, else a DM. False when neither worked (the caller then says it in the status)."""
    from cogs.delivery import interaction_webhook

    webhook = interaction_webhook(bot, job)
    if webhook is not None:
        with contextlib.suppress(discord.HTTPException):
            await webhook.send(text, ephemeral=True, allowed_mentions=NO_PINGS)
            return True
    with contextlib.suppress(discord.HTTPException):
        user = bot.get_user(int(job.user_id)) or await bot.fetch_user(int(job.user_id))
        await user.send(text, allowed_mentions=NO_PINGS)
        return True
    return False


async def on_job_event(bot: SeedanceBot, job: JobView, event: JobEvent) -> None:
    """The delivery port's hook: cards when a job waits, card updates and audit when it ends."""
    if event.kind is EventKind.AWAITING_APPROVAL:
        await post_card(bot, job, APPROVAL)
    elif event.kind is EventKind.HELD:
        await refresh_cards(bot, job.id)  # the prompt card (if any) shows it was approved
        await post_card(bot, job, REVIEW)
    elif event.kind in (EventKind.DELIVERED, EventKind.FAILED, EventKind.CANCELLED,
                        EventKind.REJECTED):
        latest = await bot.engine.job(job.id) or job
        await refresh_cards(bot, job.id)
        await post_audit(bot, latest)


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
        store = self.bot.store
        try:
            for job in await store.jobs_without_message(APPROVAL, [JobState.AWAITING_APPROVAL]):
                await post_card(self.bot, job, APPROVAL)
            for job in await store.jobs_without_message(REVIEW, [JobState.HELD]):
                await post_card(self.bot, job, REVIEW)
            # Only servers with an audit log, and only what ended since it was switched on
            # (at most a week back: an older gap is history, not a crash).
            week_ago = time.time() - 7 * 86400
            for guild_id, settings in (await store.guilds_with_setting("audit_channel")).items():
                since = max(week_ago, float(settings.get("audit_since") or 0))
                for job in await store.jobs_without_message(AUDIT, TERMINAL_STATES,
                                                            updated_since=since,
                                                            guild_id=guild_id):
                    await post_audit(self.bot, job)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("moderation sweep failed; the next start will try again")

    @commands.Cog.listener()
    async def on_interaction(self, interaction: discord.Interaction[Any]) -> None:
        data: Any = interaction.data or {}
        custom_id = str(data.get("custom_id", ""))
        if (interaction.type is not discord.InteractionType.modal_submit
                or not custom_id.startswith(REASON_PREFIX)):
            return
        job_id = custom_id.removeprefix(REASON_PREFIX)
        if not is_moderator(interaction.user):
            await interaction.response.send_message(
                "Only moderators (Manage Messages) can decide on this.", ephemeral=True)
            return
        reason = _modal_value(data, "reason").strip() or "No reason given."
        await interaction.response.defer(ephemeral=True, thinking=True)
        job = await self.bot.engine.job(job_id)
        if job is None or job.guild_id != str(interaction.guild_id):
            await interaction.followup.send("That job is no longer known.", ephemeral=True)
            return
        try:
            await self.bot.engine.reject(job_id, str(interaction.user.id), reason)
        except NotAllowed as exc:
            await interaction.followup.send(str(exc), ephemeral=True)
            return
        await interaction.followup.send("Rejected; the requester was told why.", ephemeral=True)


async def setup(bot: SeedanceBot) -> None:
    bot.add_dynamic_items(ModButton)
    await bot.add_cog(Moderation(bot))
