"""The vote button on an event's entries, and the private "take my vote back" button.

Both are dynamic items whose custom id carries the entry's job id (`sd:vote:<job>`,
`sd:unvote:<job>`), so they work after a restart and on messages any process posted. The rules
are bot/service/votes.py's; here a press is answered privately and the count on the entry is
redrawn from the database, best-effort (a failed edit loses nothing: the votes are rows).
"""

from __future__ import annotations

import logging
import re
from typing import Any

import discord

from bot.errors import Refusal
from bot.i18n import t
from bot.service import Ballot
from bot.store.database import is_outage

from .acks import defer
from .core import DiscordJobContext, core_of, requester_of
from .messaging import NO_PINGS
from .texts import outage_text, refusal_text, vote_label, voted_text, withdrawn_text

log = logging.getLogger(__name__)

JOB_ID = r"(?P<job>[0-9a-f-]{32,36})"
#: How often one redraw draws again while votes keep arriving (a later press draws after it).
MAX_REDRAWS = 10
#: Entries whose label this process is drawing now.
_drawing: set[str] = set()


def vote_id(job_id: str) -> str:
    return f"sd:vote:{job_id}"


class VoteButton(discord.ui.DynamicItem[discord.ui.Button[Any]], template=rf"sd:vote:{JOB_ID}"):
    """▲ on a posted entry: adds the presser's vote (never removes it, so a double click is one
    vote); the label shows the entry's votes."""

    def __init__(self, job_id: str, votes: int = 0, *, locale: object = "en") -> None:
        super().__init__(discord.ui.Button(label=vote_label(votes, locale),
                                           style=discord.ButtonStyle.success,
                                           custom_id=vote_id(job_id)))
        self.job_id = job_id

    @classmethod
    async def from_custom_id(cls, interaction: discord.Interaction[Any],
                             item: discord.ui.Item[Any], match: re.Match[str]) -> VoteButton:
        return cls(match["job"])

    async def callback(self, interaction: discord.Interaction[Any]) -> None:
        await defer(interaction, ephemeral=True, thinking=True)
        votes = core_of(interaction.client).services.votes
        ballot = await _answer(interaction, votes.vote(self.job_id, requester_of(interaction)))
        if ballot is None:
            return
        await _say(interaction, voted_text(ballot, interaction.locale),
                   WithdrawButton(self.job_id, interaction.locale))
        await show_count(interaction.client, ballot)


class WithdrawButton(discord.ui.DynamicItem[discord.ui.Button[Any]],
                     template=rf"sd:unvote:{JOB_ID}"):
    """In the private answer to a vote: takes the presser's vote for the entry back."""

    def __init__(self, job_id: str, locale: object = "en") -> None:
        super().__init__(discord.ui.Button(label=t(locale, "cards.buttons.unvote"),
                                           style=discord.ButtonStyle.secondary,
                                           custom_id=f"sd:unvote:{job_id}"))
        self.job_id = job_id

    @classmethod
    async def from_custom_id(cls, interaction: discord.Interaction[Any],
                             item: discord.ui.Item[Any], match: re.Match[str]) -> WithdrawButton:
        return cls(match["job"])

    async def callback(self, interaction: discord.Interaction[Any]) -> None:
        await defer(interaction, ephemeral=True, thinking=True)
        votes = core_of(interaction.client).services.votes
        ballot = await _answer(interaction, votes.withdraw(self.job_id,
                                                           requester_of(interaction)))
        if ballot is None:
            return
        await _say(interaction, withdrawn_text(ballot, interaction.locale), None)
        await show_count(interaction.client, ballot)


async def _answer(interaction: discord.Interaction[Any], pending: Any) -> Ballot | None:
    """The service's ballot, or None after telling the presser privately why not."""
    try:
        ballot: Ballot = await pending
    except Refusal as exc:
        await _say(interaction, refusal_text(exc, interaction.locale), None)
        return None
    except Exception as exc:
        if not is_outage(exc):
            raise
        await _say(interaction, outage_text(interaction.locale), None)
        return None
    return ballot


async def _say(interaction: discord.Interaction[Any], text: str,
               button: discord.ui.Item[Any] | None) -> None:
    if button is None:
        await interaction.followup.send(text, ephemeral=True, allowed_mentions=NO_PINGS)
        return
    view = discord.ui.View(timeout=None)
    view.add_item(button)
    await interaction.followup.send(text, ephemeral=True, allowed_mentions=NO_PINGS, view=view)


async def show_count(client: discord.Client, ballot: Ballot) -> None:
    """Redraw the entry's vote label from the database (the message's other buttons kept as
    they are), best-effort.

    One redraw per entry at a time in this process: a press that arrives while one is drawing
    leaves it to that one, which reads the count again after each edit and draws again while it
    moved — so a burst of votes costs a few edits, not two requests a press, and the label
    settles on the stored count. Another process's redraw may land in between; it reads the
    count after its edit too, so the last edit to land is of the last count.
    """
    job_id = ballot.job_id
    if not ballot.message_id or job_id in _drawing:
        return
    votes = core_of(client).services.votes
    channel = client.get_partial_messageable(int(ballot.channel_id))
    try:
        entry = await core_of(client).store.get_job(job_id)  # the label: the server's language
        locale = DiscordJobContext.of(entry).guild_locale if entry is not None else "en"
        message = await channel.fetch_message(int(ballot.message_id))
        for _ in range(MAX_REDRAWS):
            _drawing.add(job_id)
            try:
                drawn = await votes.count(job_id)
                message = await message.edit(view=_labelled(message, job_id, drawn, locale))
            finally:
                _drawing.discard(job_id)
            if job_id in _drawing or await votes.count(job_id) == drawn:
                return  # settled, or a newer press is drawing it
    except discord.HTTPException as exc:
        log.info("vote count of entry %s not redrawn: %s", job_id, exc)
    except Exception as exc:
        if not is_outage(exc):
            raise
        log.info("vote count of entry %s not redrawn: the database is away", job_id)


def _labelled(message: discord.Message, job_id: str, votes: int,
              locale: object = "en") -> discord.ui.View | discord.ui.LayoutView:
    """The message's buttons as they are, with the vote button showing `votes`. A result
    card (cogs/utils/layout.py) is redrawn whole, its media pointing at its own files again."""
    view: discord.ui.View | discord.ui.LayoutView
    if message.flags.components_v2:
        view = discord.ui.LayoutView.from_message(message, timeout=None)
        files = {a.url: a.filename for a in message.attachments}
        for item in view.walk_children():
            media = ([i.media for i in item.items] if isinstance(item, discord.ui.MediaGallery)
                     else [item.media] if isinstance(item, discord.ui.Thumbnail) else [])
            for m in media:
                if m.url in files:
                    m.url = f"attachment://{files[m.url]}"
    else:
        view = discord.ui.View.from_message(message, timeout=None)
    for item in view.walk_children():
        if isinstance(item, discord.ui.Button) and item.custom_id == vote_id(job_id):
            item.label = vote_label(votes, locale)
    view.stop()  # only drawn: the dynamic items answer presses, not this copy
    return view
