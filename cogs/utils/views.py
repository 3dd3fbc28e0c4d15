"""Buttons that survive restarts, and the one way a new job is launched from Discord.

Every button is a dynamic item whose custom id carries the action and the id it acts on
(`sd:<action>:<job>`, `sd:<action>:<job>:<n>` for the n-th video of a result set from 2 on,
`sdu:forget:<user>`; the moderators' buttons are in cogs/utils/cards.py):
after a restart discord.py matches the template and rebuilds the item, so buttons on messages
posted long ago still work.
Who may press is decided by the services and checked in `interaction_check`, before any
callback runs; the callbacks only call a service and render its answer.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import discord

from bot.errors import InvalidInput, Refusal
from bot.i18n import say, t
from bot.service import Made
from bot.store import TERMINAL_STATES, JobView
from bot.store.database import is_outage

from .acks import defer
from .core import DiscordJobContext, core_of, private_answers, requester_of
from .messaging import send_private
from .premium import premium_view
from .texts import forgotten_text, outage_text, refusal_text
from .voting import VoteButton

log = logging.getLogger(__name__)

#: Each button's emoji and style; its label is `cards.buttons.<action>`.
LABELS = {
    "reroll": ("🎲", discord.ButtonStyle.primary),
    "extend": ("➕", discord.ButtonStyle.secondary),
    "animate": ("🖼️", discord.ButtonStyle.secondary),
    "cancel": ("✖️", discord.ButtonStyle.danger),
    "delete": ("🗑️", discord.ButtonStyle.danger),
}


async def launch(interaction: discord.Interaction[Any],
                 start: Callable[[dict[str, Any]], Awaitable[Made]]) -> Made | None:
    """Answer at once (Discord allows 3 s), then let a service make the job; its refusal is
    shown privately. From the job's row on, the delivery port renders the status message."""
    if not interaction.response.is_done():
        await defer(interaction, thinking=True, ephemeral=private_answers(interaction))
    issued = time.time()
    status = await interaction.original_response()
    try:
        made = await start(DiscordJobContext.for_interaction(interaction, status.id, issued))
    except (Refusal, InvalidInput) as exc:
        await send_private(interaction, refusal_text(exc, interaction.locale),
                           premium_view(core_of(interaction.client).settings, exc))
        return None
    log.info("job %s queued for user %s in guild %s", made.job.id, made.job.user_id,
             made.job.guild_id)
    return made


async def may_act(interaction: discord.Interaction[Any], job_id: str) -> bool:
    """The requester or a moderator (bot/service/videos.py says who); others are refused
    privately, and everyone is told to try again while the database is away."""
    try:
        await core_of(interaction.client).services.videos.may_act(
            job_id, requester_of(interaction))
    except Refusal as exc:
        return await refuse(interaction, exc)
    except Exception as exc:
        if not is_outage(exc):
            raise
        await send_private(interaction, outage_text(interaction.locale))
        return False
    return True


async def refuse(interaction: discord.Interaction[Any], exc: Exception) -> bool:
    if interaction.response.is_done():
        await interaction.followup.send(refusal_text(exc, interaction.locale), ephemeral=True)
    else:
        await interaction.response.send_message(refusal_text(exc, interaction.locale),
                                                ephemeral=True)
    return False


class JobButton(discord.ui.DynamicItem[discord.ui.Button[Any]],
                template=r"sd:(?P<action>reroll|extend|animate|cancel|delete):"
                         r"(?P<job>[0-9a-f-]{32,36})(?::(?P<n>[2-9]))?"):
    """The buttons of a job's status message and of its posted videos. `index` is which video
    of a result set the button acts on (1: the first, or the only one); it is in the custom
    id, so it survives restarts like the job id."""

    def __init__(self, action: str, job_id: str, index: int = 1, *,
                 numbered: bool = False, row: int | None = None,
                 locale: object = "en") -> None:
        emoji, style = LABELS[action]
        label = t(locale, f"cards.buttons.{action}")
        suffix = f":{index}" if index > 1 else ""
        super().__init__(discord.ui.Button(
            label=f"{label} {index}" if numbered else label, emoji=emoji, style=style,
            custom_id=f"sd:{action}:{job_id}{suffix}", row=index - 1 if numbered else row))
        self.action = action
        self.job_id = job_id
        self.index = index

    @classmethod
    async def from_custom_id(cls, interaction: discord.Interaction[Any],
                             item: discord.ui.Item[Any], match: re.Match[str]) -> JobButton:
        return cls(match["action"], match["job"], int(match["n"] or 1))

    async def interaction_check(self, interaction: discord.Interaction[Any]) -> bool:
        return await may_act(interaction, self.job_id)

    async def callback(self, interaction: discord.Interaction[Any]) -> None:
        try:
            await self._act(interaction)
        except Exception as exc:
            if not is_outage(exc):
                raise
            await send_private(interaction, outage_text(interaction.locale))

    async def _act(self, interaction: discord.Interaction[Any]) -> None:
        videos = core_of(interaction.client).services.videos
        who = requester_of(interaction)
        if self.action == "cancel":
            await defer(interaction, ephemeral=True, thinking=True)
            said = await videos.cancel(self.job_id, who)
            await interaction.followup.send(say(said, interaction.locale), ephemeral=True)
        elif self.action == "delete":
            await defer(interaction)
            if interaction.message is not None:
                await interaction.message.delete()
        elif self.action == "reroll":
            await launch(interaction, lambda ctx: videos.reroll(self.job_id, who, context=ctx))
        elif self.action == "extend":
            url = _posted_video_url(interaction, self.index)
            await launch(interaction, lambda ctx: videos.extend(
                self.job_id, who, posted_url=url, context=ctx, index=self.index))
        else:
            await launch(interaction, lambda ctx: videos.animate(
                self.job_id, who, context=ctx, index=self.index))


def video_filename(job_id: str, index: int = 1) -> str:
    """The posted file's name: the n-th video of a set carries its number."""
    return f"seedance-{job_id[:8]}.mp4" if index == 1 else f"seedance-{job_id[:8]}-{index}.mp4"


def _posted_video_url(interaction: discord.Interaction[Any], index: int = 1) -> str | None:
    """The posted file's CDN URL: a gateway that takes only URLs fetches it there."""
    message = interaction.message
    if message is None:
        return None
    videos = [a for a in message.attachments if a.filename.endswith(".mp4")]
    named = next((a for a in videos if a.filename.endswith(f"-{index}.mp4")), None)
    if index > 1:
        return named.url if named else None
    return videos[0].url if videos else None


def result_view(job: JobView, videos: int = 1, extra: Sequence[discord.ui.Item[Any]] = (),
                locale: object = "en") -> discord.ui.View:
    """Reroll/Extend/Animate per video (a row each, numbered, for a set), then one row for the
    whole job: `extra` (e.g. Remix and Final, cogs/utils/finals.py), Delete, and an event
    entry's vote button (cogs/utils/voting.py). A set has at most 4 videos, so this stays
    within Discord's 5 rows of 5 buttons."""
    view = discord.ui.View(timeout=None)
    for index in range(1, videos + 1):
        for action in ("reroll", "extend", "animate"):
            view.add_item(JobButton(action, job.id, index, numbered=videos > 1, locale=locale))
    for item in whole_job_buttons(job, extra, locale):
        item.row = videos
        view.add_item(item)
    return view


def whole_job_buttons(job: JobView, extra: Sequence[discord.ui.Item[Any]] = (),
                      locale: object = "en") -> list[discord.ui.Item[Any]]:
    """The last row of a result, for embeds and cards alike: `extra`, Delete, and Vote."""
    whole: list[discord.ui.Item[Any]] = [*extra, JobButton("delete", job.id, locale=locale)]
    if job.event_id:
        whole.append(VoteButton(job.id, locale=locale))
    return whole


def status_view(job: JobView, locale: object = "en") -> discord.ui.View | None:
    """A Cancel button while the job can still be stopped."""
    if job.state in TERMINAL_STATES:
        return None
    view = discord.ui.View(timeout=None)
    view.add_item(JobButton("cancel", job.id, locale=locale))
    return view


# ---- your data -------------------------------------------------------------------------------
class ForgetButton(discord.ui.DynamicItem[discord.ui.Button[Any]],
                   template=r"sdu:forget:(?P<user>[0-9]{1,20})"):
    """"Delete my data" — for the user named in the custom id only."""

    def __init__(self, user_id: str, locale: object = "en") -> None:
        super().__init__(discord.ui.Button(label=t(locale, "cards.buttons.forget"), emoji="🗑️",
                                           style=discord.ButtonStyle.danger,
                                           custom_id=f"sdu:forget:{user_id}"))
        self.user_id = user_id

    @classmethod
    async def from_custom_id(cls, interaction: discord.Interaction[Any],
                             item: discord.ui.Item[Any], match: re.Match[str]) -> ForgetButton:
        return cls(match["user"])

    async def interaction_check(self, interaction: discord.Interaction[Any]) -> bool:
        """Only the person it names, and not while a job of theirs is unfinished."""
        try:
            await core_of(interaction.client).services.privacy.may_forget(
                self.user_id, requester_of(interaction))
        except Refusal as exc:
            return await refuse(interaction, exc)
        return True

    async def callback(self, interaction: discord.Interaction[Any]) -> None:
        await interaction.response.edit_message(
            content=t(interaction.locale, "replies.forget.deleting"), view=None)
        privacy = core_of(interaction.client).services.privacy
        try:
            done = await privacy.forget(self.user_id, requester_of(interaction))
        except Refusal as exc:  # a job started between the check and now
            text = refusal_text(exc, interaction.locale)
        else:
            text = forgotten_text(done, interaction.locale)
        try:
            await interaction.edit_original_response(content=text)
        except discord.HTTPException:
            await interaction.followup.send(text, ephemeral=True)
