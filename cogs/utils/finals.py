"""Draft → final and remix in Discord: the buttons on a finished video and what they open.

- `sd:final:<job>` (on drafts only) shows the final's price privately with Confirm / Cancel
  (`sdf:ok:<job>:<credits>:<nonce>`, `sdf:no:<job>`). Only Confirm makes the job, once per
  quote (bot/service/drafts.py derives the job's id from the nonce), whichever process sees
  the click and however long after a restart; Cancel charges nothing.
- `sd:remix:<job>` opens a form with the prompt, duration and ratio filled in. Its submission
  (custom id `sdr:<job>`) is taken from the raw interaction by cogs/drafts.py, so a form
  opened before a restart still works.

All are dynamic items: the id they act on is in the custom id, so they survive restarts. Who
may press is the services' rule (`may_act`: the requester or a moderator), checked in
`interaction_check` before any callback runs.
"""

from __future__ import annotations

import re
from typing import Any

import discord

from bot.errors import Refusal
from bot.i18n import t
from bot.service import FinalQuote, RemixForm
from bot.service.draft_rules import draft_of
from bot.store import JobView
from bot.store.database import is_outage

from .acks import defer
from .core import core_of, requester_of
from .messaging import send_private
from .texts import final_quote_text, outage_text, refusal_text
from .views import launch, may_act

#: A remix form's custom id: `sdr:<job id>`.
REMIX_PREFIX = "sdr:"
#: Discord's longest text input.
TEXT_INPUT_MAX = 4000

#: Each button's emoji and style; its label is `cards.buttons.<action>`.
LABELS = {
    "remix": ("✏️", discord.ButtonStyle.secondary),
    "final": ("⭐", discord.ButtonStyle.success),
}


class DraftButton(discord.ui.DynamicItem[discord.ui.Button[Any]],
                  template=r"sd:(?P<action>final|remix):(?P<job>[0-9a-f-]{32,36})"):
    """Remix (any finished video) and Final (a draft): one each per message, also for a set
    (the set is remade whole, with the same seed)."""

    def __init__(self, action: str, job_id: str, locale: object = "en") -> None:
        emoji, style = LABELS[action]
        super().__init__(discord.ui.Button(label=t(locale, f"cards.buttons.{action}"),
                                           emoji=emoji, style=style,
                                           custom_id=f"sd:{action}:{job_id}"))
        self.action = action
        self.job_id = job_id

    @classmethod
    async def from_custom_id(cls, interaction: discord.Interaction[Any],
                             item: discord.ui.Item[Any], match: re.Match[str]) -> DraftButton:
        return cls(match["action"], match["job"])

    async def interaction_check(self, interaction: discord.Interaction[Any]) -> bool:
        return await may_act(interaction, self.job_id)

    async def callback(self, interaction: discord.Interaction[Any]) -> None:
        drafts = core_of(interaction.client).services.drafts
        who = requester_of(interaction)
        try:
            if self.action == "remix":
                form = await drafts.remix_form(self.job_id, who)
                await interaction.response.send_modal(
                    RemixModal(self.job_id, form, interaction.locale))
                return
            await defer(interaction, ephemeral=True, thinking=True)
            quote = await drafts.quote(self.job_id, who)
        except Refusal as exc:
            await send_private(interaction, refusal_text(exc, interaction.locale))
            return
        except Exception as exc:
            if not is_outage(exc):
                raise
            await send_private(interaction, outage_text(interaction.locale))
            return
        await interaction.followup.send(final_quote_text(quote, interaction.locale),
                                        view=confirm_view(quote, interaction.locale),
                                        ephemeral=True)


class ConfirmFinal(discord.ui.DynamicItem[discord.ui.Button[Any]],
                   template=r"sdf:(?P<act>ok|no):(?P<job>[0-9a-f-]{32,36})"
                            r"(?::(?P<credits>[0-9]{1,9}):(?P<nonce>[0-9a-f]{8,32}))?"):
    """Confirm (makes the final at the price shown) or Cancel (nothing is charged)."""

    def __init__(self, act: str, job_id: str, credits: int = 0, nonce: str = "",
                 locale: object = "en") -> None:
        suffix = f":{credits}:{nonce}" if act == "ok" else ""
        super().__init__(discord.ui.Button(
            label=(t(locale, "cards.buttons.confirm_final", credits=credits) if act == "ok"
                   else t(locale, "cards.buttons.cancel")),
            style=discord.ButtonStyle.success if act == "ok" else discord.ButtonStyle.secondary,
            custom_id=f"sdf:{act}:{job_id}{suffix}"))
        self.act, self.job_id, self.credits, self.nonce = act, job_id, credits, nonce

    @classmethod
    async def from_custom_id(cls, interaction: discord.Interaction[Any],
                             item: discord.ui.Item[Any], match: re.Match[str]) -> ConfirmFinal:
        return cls(match["act"], match["job"], int(match["credits"] or 0), match["nonce"] or "")

    async def interaction_check(self, interaction: discord.Interaction[Any]) -> bool:
        return await may_act(interaction, self.job_id)

    async def callback(self, interaction: discord.Interaction[Any]) -> None:
        if self.act == "no" or not self.nonce:
            await interaction.response.edit_message(
                content=t(interaction.locale, "replies.final.cancelled"), view=None)
            return
        drafts = core_of(interaction.client).services.drafts
        who = requester_of(interaction)
        try:
            await launch(interaction, lambda ctx: drafts.final(
                self.job_id, who, credits=self.credits, nonce=self.nonce, context=ctx))
        except Exception as exc:
            if not is_outage(exc):
                raise
            await send_private(interaction, outage_text(interaction.locale))


def confirm_view(quote: FinalQuote, locale: object = "en") -> discord.ui.View:
    view = discord.ui.View(timeout=None)
    view.add_item(ConfirmFinal("ok", quote.draft.id, quote.credits, quote.nonce, locale))
    view.add_item(ConfirmFinal("no", quote.draft.id, locale=locale))
    return view


def draft_buttons(job: JobView, locale: object = "en") -> list[discord.ui.Item[Any]]:
    """The whole job's buttons on its posted video: Remix, and Final where it is a draft."""
    items: list[discord.ui.Item[Any]] = [DraftButton("remix", job.id, locale)]
    if draft_of(job) is not None:
        items.append(DraftButton("final", job.id, locale))
    return items


class RemixModal(discord.ui.Modal):
    """The remix form, filled in from the job. Submissions are handled from the raw
    interaction (cogs/drafts.py); `on_submit` stays the no-op default."""

    def __init__(self, job_id: str, form: RemixForm, locale: object = "en") -> None:
        super().__init__(title=t(locale, "cards.remix.title"),
                         custom_id=f"{REMIX_PREFIX}{job_id}", timeout=None)
        self.add_item(discord.ui.TextInput(
            label=t(locale, "cards.remix.prompt"), style=discord.TextStyle.paragraph,
            custom_id="prompt", default=form.prompt[:TEXT_INPUT_MAX], max_length=TEXT_INPUT_MAX))
        self.add_item(discord.ui.TextInput(
            label=t(locale, "cards.remix.duration"), custom_id="duration",
            default=form.duration, max_length=4))
        self.add_item(discord.ui.TextInput(
            label=t(locale, "cards.remix.ratio"), custom_id="ratio",
            default=form.ratio, max_length=10))
