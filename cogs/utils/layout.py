"""Components-v2 cards (discord.py `ui.LayoutView`): the finished video and the job's status.

A result card is one container: the video(s) in a media gallery (the uploaded files by
`attachment://name`, or the gateway's hosted links when the files are too large), the prompt
(behind a spoiler when the server asks), the first input as a thumbnail (several inputs as a
second gallery), settings, seed, credits and gateway, then the same buttons as before — the
dynamic items of cogs/utils/views.py, cogs/utils/finals.py and cogs/utils/voting.py, so their
custom ids, and old messages' buttons, keep working.

When cards are used, and the fallback: a server's `cards` setting (`/seedance-admin cards`),
else the bot's SEEDANCE_RESULT_CARDS (default on). Discord refuses a v2 post with a 400 form
error (`card_refused`) — a client or server that can't take it: the delivery then posts the
embed version (cogs/utils/delivery.py) and the status message stays text.
Discord's limits are kept here, not hoped for: at most 40 components, 4,000 characters of text
in all, 1–10 gallery items (a set has at most 4 videos).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import discord

from bot.engine import JobEvent, JobResult
from bot.i18n import DEFAULT, t
from bot.store import JobView

from .card_texts import (
    MAX_CARD_PROMPT,
    MAX_CARD_TEXT,
    job_footer,
    progress_bar,
    result_details,
    result_header,
    status_progress,
)
from .texts import clip, mapping_block, prompt_block, settings_line
from .views import JobButton, whole_job_buttons

MAX_COMPONENTS = 40
MAX_GALLERY = 10
STATE_COLOURS = {"delivered": discord.Colour.green(), "failed": discord.Colour.red(),
                 "rejected": discord.Colour.red(), "cancelled": discord.Colour.dark_grey()}


def card_refused(exc: discord.HTTPException) -> bool:
    """Discord's answer when a message with the v2 flag can't be taken (a form error)."""
    return exc.status == 400 and exc.code in (50035, 50006, 50109)


class Card(discord.ui.LayoutView):
    """A card that only draws: its buttons are dynamic items, which answer presses by their
    custom ids whichever message carries them."""

    def __init__(self) -> None:
        super().__init__(timeout=None)


def _text_budget(fixed: Sequence[str]) -> int:
    return MAX_CARD_TEXT - sum(len(t) for t in fixed)


def result_card(job: JobView, result: JobResult, *, videos: Sequence[str],
                inputs: Sequence[str] = (), spoiler_prompt: bool = False,
                extra: Sequence[discord.ui.Item[Any]] = (), note: str | None = None,
                locale: object = DEFAULT) -> Card:
    """The finished video's card. `videos` are gallery media (`attachment://…` or https
    links), `inputs` the input thumbnails' media; `extra` the whole job's extra buttons.
    Public: `locale` is the server's (the job context's `guild_locale`)."""
    req = job.request
    header = result_header(job, locale)
    details = result_details(job, result, settings_line(req, locale), locale)
    mapping = clip(mapping_block(req), 1000) if req.references else ""
    tail = "\n".join(p for p in (note or "", job_footer(job, locale)) if p)
    room = _text_budget((header, details, mapping, tail)) - 8
    prompt = prompt_block(req.prompt, min(MAX_CARD_PROMPT, room), spoiler=spoiler_prompt,
                          locale=locale)
    container = discord.ui.Container[Card](accent_colour=discord.Colour.blurple())
    container.add_item(discord.ui.TextDisplay(header))
    if videos:
        container.add_item(discord.ui.MediaGallery(
            *[discord.MediaGalleryItem(v) for v in videos[:MAX_GALLERY]]))
    about = "\n".join(p for p in (prompt, mapping) if p)
    if len(inputs) == 1:
        container.add_item(discord.ui.Section(
            about, accessory=discord.ui.Thumbnail(
                inputs[0], description=t(locale, "cards.result.input"))))
    else:
        container.add_item(discord.ui.TextDisplay(about))
        if inputs:
            container.add_item(discord.ui.MediaGallery(
                *[discord.MediaGalleryItem(i) for i in inputs[:MAX_GALLERY]]))
    container.add_item(discord.ui.Separator())
    container.add_item(discord.ui.TextDisplay(details))
    container.add_item(discord.ui.TextDisplay(tail))
    count = max(1, len(result.video_paths))
    for index in range(1, count + 1):
        container.add_item(discord.ui.ActionRow(
            *[JobButton(a, job.id, index, numbered=count > 1, locale=locale)
              for a in ("reroll", "extend", "animate")]))
    container.add_item(discord.ui.ActionRow(*whole_job_buttons(job, extra, locale)))
    card = Card()
    card.add_item(container)
    return card


def status_card(job: JobView, text: str, event: JobEvent | None, *,
                final: bool, locale: object = DEFAULT) -> Card:
    """The job's status message as a card: the status text (who, what, state, position,
    ETA), a progress bar, and Cancel while the job can be stopped."""
    colour = STATE_COLOURS.get(job.state.value, discord.Colour.blurple())
    container = discord.ui.Container[Card](accent_colour=colour)
    container.add_item(discord.ui.TextDisplay(clip(text, MAX_CARD_TEXT - 40)))
    bar = progress_bar(status_progress(job, event))
    if bar:
        container.add_item(discord.ui.TextDisplay(f"`{bar}`"))
    if not final and not job.terminal:
        container.add_item(discord.ui.ActionRow(JobButton("cancel", job.id, locale=locale)))
    card = Card()
    card.add_item(container)
    return card


def walk(components: Sequence[Any]) -> Iterator[Any]:
    """Every component of a received message, nested ones too (rows, containers, sections)."""
    for comp in components:
        yield comp
        yield from walk(getattr(comp, "children", None) or [])
        accessory = getattr(comp, "accessory", None)
        if accessory is not None:
            yield accessory


def custom_ids(message: discord.Message) -> list[str]:
    return [cid for c in walk(message.components)
            if (cid := getattr(c, "custom_id", None))]
