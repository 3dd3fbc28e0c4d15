"""The moderators' side: review cards with Approve / Reject, and the audit log.

- A prompt held for approval (`awaiting_approval`) or a finished video held before posting
  (`held`) gets one card in the server's moderators' channel: requester, channel, prompt,
  input thumbnails, mapped roles, estimate (and the video for results), with Approve / Reject.
  The buttons are dynamic items (`sdm:<action>:<job id>`) so they work after a restart; Reject
  opens a modal whose submission is handled from the raw interaction (cogs/moderation.py), so
  it works even when the modal was opened before a restart.
- Each card is recorded in `job_messages` after posting and looked up before, and carries a
  nonce derived from the job id: a restart re-posts nothing, and a sweep at start posts the
  cards and audit entries a crash left unposted.
- Every finished job gets one concise audit entry in the audit channel, if one is set.
"""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path
from typing import Any

import discord

from bot.engine import EventKind, JobEvent
from bot.errors import Refusal
from bot.i18n import say
from bot.models import MediaKind
from bot.service.videos import video_of
from bot.store import JobMessage, JobState, JobView, Store

from .acks import defer
from .core import core_of, requester_of
from .messaging import (
    APPROVAL,
    AUDIT,
    NO_PINGS,
    REVIEW,
    UPLOAD_MARGIN,
    card_nonce,
    fit_upload,
    jump_url,
    result_channel,
    upload_limit,
)
from .texts import audit_text, review_embed
from .views import refuse

log = logging.getLogger(__name__)

REASON_PREFIX = "sdm:reason:"
MAX_THUMBNAILS = 4


class ModButton(discord.ui.DynamicItem[discord.ui.Button[Any]],
                template=r"sdm:(?P<action>approve|reject):(?P<job>[0-9a-f-]{32,36})"):
    """Approve / Reject on a moderators' card."""

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

    async def interaction_check(self, interaction: discord.Interaction[Any]) -> bool:
        """Moderators of the job's server only."""
        try:
            await core_of(interaction.client).services.videos.may_decide(
                self.job_id, requester_of(interaction))
        except Refusal as exc:
            return await refuse(interaction, exc)
        return True

    async def callback(self, interaction: discord.Interaction[Any]) -> None:
        if self.action == "reject":
            await interaction.response.send_modal(ReasonModal(self.job_id))
            return
        core = core_of(interaction.client)
        await defer(interaction, ephemeral=True, thinking=True)
        try:
            await core.services.videos.approve(self.job_id, requester_of(interaction))
        except Refusal as exc:
            await interaction.followup.send(say(exc, interaction.locale), ephemeral=True)
            return
        await refresh_cards(interaction.client, core.store, self.job_id)
        await interaction.followup.send("Approved.", ephemeral=True)


class ReasonModal(discord.ui.Modal):
    """Asks why. Submissions are handled from the raw interaction (cogs/moderation.py), so a
    modal opened before a restart still works; `on_submit` stays the no-op default."""

    reason: discord.ui.TextInput[Any] = discord.ui.TextInput(
        label="Reason (the requester sees it)", style=discord.TextStyle.paragraph,
        max_length=500, custom_id="reason")

    def __init__(self, job_id: str) -> None:
        super().__init__(title="Reject", custom_id=f"{REASON_PREFIX}{job_id}", timeout=None)


def card_view(job: JobView, kind: str) -> discord.ui.View | None:
    """Approve / Reject while the job waits on this card's decision."""
    waits_on = JobState.HELD if kind == REVIEW else JobState.AWAITING_APPROVAL
    if job.state is not waits_on:
        return None
    view = discord.ui.View(timeout=None)
    view.add_item(ModButton("approve", job.id))
    view.add_item(ModButton("reject", job.id))
    return view


async def input_thumbnails(data_dir: Path, job: JobView) -> list[Path]:
    """Small stills of the job's image and video inputs (up to MAX_THUMBNAILS), made once."""
    from bot.media.transcode import thumbnail

    folder = data_dir / "jobs" / job.id / "cards"
    files: list[Path] = []
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
        files.append(dest)
    return files


async def _card_files(store: Store, data_dir: Path, job: JobView,
                      kind: str) -> tuple[list[discord.File], str | None]:
    """Input thumbnails (and, for a result, the video) to attach; plus a note if it can't be."""
    files = [discord.File(p, filename=p.name) for p in await input_thumbnails(data_dir, job)]
    notes = []
    if kind == REVIEW:
        # Every video of a set (the flagged one may be any), sharing the upload limit.
        videos = [v for n in range(1, job.request.results + 1)
                  if (v := video_of(job, n)) is not None]
        budget = (upload_limit(job) - UPLOAD_MARGIN) // max(1, len(videos))
        for n, path in enumerate(videos, 1):
            video = await fit_upload(path, budget)
            if video is not None:
                name = f"review-{job.id[:8]}" + (f"-{n}" if n > 1 else "") + ".mp4"
                files.insert(n - 1, discord.File(video, filename=name))
            else:
                notes.append(f"Video {n} is too large to attach here; it is kept as job "
                             f"`{job.id}`.")
        flagged = [int(i) + 1 for i in job.result_meta.get("flagged") or []]
        if flagged:
            which = ", ".join(str(n) for n in flagged) if len(videos) > 1 else ""
            notes.insert(0, f"{job.provider}'s safety check flagged "
                            f"{'video ' + which if which else 'this video'}; it is posted "
                            "only if you approve it.")
    return files, " ".join(notes) or None


async def _event_name(store: Store, job: JobView) -> str | None:
    if not job.event_id:
        return None
    event = await store.get_event(job.event_id)
    return event.name if event else None


async def post_card(client: discord.Client, store: Store, data_dir: Path, job: JobView,
                    kind: str) -> None:
    """The moderators' card for a job waiting on them; once per job and kind."""
    if await store.job_message(job.id, kind) is not None:
        return
    channel_id = (await store.guild_settings(job.guild_id)).mod_channel
    if not channel_id:
        log.warning("job %s waits for review but guild %s has no moderators' channel",
                    job.id, job.guild_id)
        return
    files, note = await _card_files(store, data_dir, job, kind)
    embed = review_embed(job, kind, event_name=await _event_name(store, job), note=note)
    channel = client.get_partial_messageable(int(channel_id))
    extra: dict[str, Any] = {}
    view = card_view(job, kind)
    if view is not None:
        extra["view"] = view
    message = await channel.send(embed=embed, files=files, nonce=card_nonce(kind, job.id),
                                 allowed_mentions=NO_PINGS, **extra)
    await store.set_job_message(JobMessage(job.id, kind, str(channel_id), str(message.id)),
                                now=time.time())


async def refresh_cards(client: discord.Client, store: Store, job_id: str) -> None:
    """Show the decision (or the outcome) on the job's cards; buttons go once decided."""
    job = await store.get_job(job_id)
    if job is None:
        return
    name = await _event_name(store, job)
    for kind in (APPROVAL, REVIEW):
        card = await store.job_message(job.id, kind)
        if card is None:
            continue
        waits_on = JobState.HELD if kind == REVIEW else JobState.AWAITING_APPROVAL
        embed = review_embed(job, kind, event_name=name, decided=job.state is not waits_on)
        message = client.get_partial_messageable(int(card.channel_id)).get_partial_message(
            int(card.message_id))
        try:
            await message.edit(embed=embed, view=card_view(job, kind),
                               allowed_mentions=NO_PINGS)
        except discord.HTTPException as exc:
            log.info("could not update the %s card of job %s: %s", kind, job.id, exc)


async def post_audit(client: discord.Client, store: Store, job: JobView) -> None:
    """One entry per finished job in the audit channel (if the server set one)."""
    if await store.job_message(job.id, AUDIT) is not None:
        return
    channel_id = (await store.guild_settings(job.guild_id)).audit_channel
    if not channel_id:
        return
    jump = None
    if job.state is JobState.DELIVERED and job.delivery_ref and job.delivery_ref.isdigit():
        jump = jump_url(job.guild_id, await result_channel(store, job), job.delivery_ref)
    text = audit_text(job, jump_url=jump, event_name=await _event_name(store, job))
    channel = client.get_partial_messageable(int(channel_id))
    message = await channel.send(text, nonce=card_nonce(AUDIT, job.id),
                                 allowed_mentions=NO_PINGS)
    await store.set_job_message(JobMessage(job.id, AUDIT, str(channel_id), str(message.id)),
                                now=time.time())


async def on_job_event(client: discord.Client, store: Store, data_dir: Path, job: JobView,
                       event: JobEvent) -> None:
    """The delivery port's hook: cards when a job waits, card updates and audit when it ends."""
    if event.kind is EventKind.AWAITING_APPROVAL:
        await post_card(client, store, data_dir, job, APPROVAL)
    elif event.kind is EventKind.HELD:
        await refresh_cards(client, store, job.id)  # the prompt card shows it was approved
        await post_card(client, store, data_dir, job, REVIEW)
    elif event.kind in (EventKind.DELIVERED, EventKind.FAILED, EventKind.CANCELLED,
                        EventKind.REJECTED):
        latest = await store.get_job(job.id) or job
        await refresh_cards(client, store, job.id)
        await post_audit(client, store, latest)
