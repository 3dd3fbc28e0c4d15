"""Talking to Discord the same way everywhere: private answers, the interaction webhook while
its token lives, nonces that make a re-post find the first one, uploads that fit."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import Any

import discord

from bot.media.transcode import fit_to_size
from bot.store import JobView, Store

from .core import DiscordJobContext

NO_PINGS = discord.AllowedMentions.none()
DEFAULT_UPLOAD_LIMIT = 10 * 1024 * 1024
#: Room for multipart overhead and the embed next to the file.
UPLOAD_MARGIN = 256 * 1024
APPROVAL, REVIEW, AUDIT = "approval", "review", "audit"
#: The job's status message once it says how the job ended (cogs/utils/delivery.py catch_up).
STATUS = "status"


def submitted_for(interaction: discord.Interaction[Any], prefix: str) -> str | None:
    """The job id of a submitted form whose custom id is `prefix` + job id (forms outlive
    restarts, so they are read from the interaction, not from a live Modal object)."""
    if interaction.type is not discord.InteractionType.modal_submit:
        return None
    data: Any = interaction.data or {}
    custom_id = str(data.get("custom_id", ""))
    return custom_id.removeprefix(prefix) if custom_id.startswith(prefix) else None


def modal_value(data: Any, custom_id: str) -> str:
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


def job_nonce(job_id: str) -> str:
    """Discord nonces are at most 25 characters; a job id (uuid4 hex) keeps 100 bits in 25."""
    return job_id.replace("-", "")[:25]


def card_nonce(kind: str, job_id: str) -> str:
    """Distinct from the result post's nonce (25 hex digits): a two-letter non-hex prefix."""
    prefix = {APPROVAL: "ap", REVIEW: "rv", AUDIT: "au"}[kind]
    return (prefix + job_id.replace("-", ""))[:25]


def event_nonce(kind: str, event_id: str) -> str:
    """Job nonces are hex only; a prefix with a non-hex letter keeps event messages apart from
    them and from each other."""
    return (f"ev{kind}" + event_id.replace("-", ""))[:25]


async def send_private(interaction: discord.Interaction[Any], text: str,
                       view: discord.ui.View | None = None) -> None:
    """An ephemeral answer, replacing the public 'thinking…' placeholder if there is one
    (with `view`'s buttons, e.g. a premium one: cogs/utils/premium.py)."""
    extra: dict[str, Any] = {"view": view} if view is not None else {}
    if not interaction.response.is_done():
        await interaction.response.send_message(text, ephemeral=True, allowed_mentions=NO_PINGS,
                                                **extra)
        return
    with contextlib.suppress(discord.HTTPException):
        await interaction.delete_original_response()
    await interaction.followup.send(text, ephemeral=True, allowed_mentions=NO_PINGS, **extra)


def interaction_webhook(client: discord.Client, job: JobView) -> discord.Webhook | None:
    """The job's interaction webhook while its token is safely alive (it dies at 15 min):
    it edits the status message and may send ephemeral notes; after that, None."""
    ctx = DiscordJobContext.of(job)
    if not ctx.token_alive or ctx.interaction_token is None or ctx.application_id is None:
        return None
    webhook = discord.Webhook.partial(int(ctx.application_id), ctx.interaction_token,
                                      client=client)
    webhook.type = discord.WebhookType.application  # an interaction's: may be ephemeral
    return webhook


async def tell_requester(client: discord.Client, job: JobView, text: str) -> bool:
    """A private note to the requester: an ephemeral follow-up while the interaction token
    lives, else a DM. False when neither worked (the caller then says it in the status)."""
    webhook = interaction_webhook(client, job)
    if webhook is not None:
        with contextlib.suppress(discord.HTTPException):
            await webhook.send(text, ephemeral=True, allowed_mentions=NO_PINGS)
            return True
    with contextlib.suppress(discord.HTTPException):
        user = client.get_user(int(job.user_id)) or await client.fetch_user(int(job.user_id))
        await user.send(text, allowed_mentions=NO_PINGS)
        return True
    return False


async def fit_upload(src: Path, max_bytes: int) -> Path | None:
    """`src` if it fits, else a transcoded copy that does (kept beside it), else None."""
    if src.stat().st_size <= max_bytes:
        return src
    dest = src.with_name(f"{src.stem}.fit{max_bytes}.mp4")
    if dest.exists():
        return dest
    fitted = await asyncio.to_thread(fit_to_size, src, dest, max_bytes)
    return dest if fitted else None


def upload_limit(job: JobView) -> int:
    return DiscordJobContext.of(job).filesize_limit or DEFAULT_UPLOAD_LIMIT


async def result_channel(store: Store, job: JobView) -> str:
    """Where the job's video is posted: its event's gallery thread, else its channel."""
    if job.event_id:
        event = await store.get_event(job.event_id)
        if event is not None and event.thread_id:
            return event.thread_id
    return job.channel_id


def jump_url(guild_id: str, channel_id: str, message_id: str) -> str:
    guild = guild_id if guild_id.isdigit() else "@me"
    return f"https://discord.com/channels/{guild}/{channel_id}/{message_id}"
