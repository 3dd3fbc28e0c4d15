"""What members and moderators read of the server library (`/library`), as pure functions.

A module of its own beside cogs/utils/texts.py, which is near the size limit; the refusals are
the service's sentences (bot/service/library.py, bot/service/library_use.py).
"""

from __future__ import annotations

import discord

from bot.i18n import DEFAULT, t
from bot.service.library import Added, Shelf
from bot.store.library import LibraryItem
from bot.words import size
from cogs.utils.texts import clip, timestamp

KIND_ICONS = {"image": "🖼️", "video": "🎞️", "audio": "🔊"}
#: Embeds Discord takes in one message.
EMBEDS_PER_MESSAGE = 10


def item_facts(item: LibraryItem, locale: object = DEFAULT) -> str:
    """"PNG image · 800×450 · 120 KB" and the like."""
    kind = t(locale, f"replies.library.kind.{item.kind}") if item.kind in KIND_ICONS else item.kind
    bits = [t(locale, "replies.library.format", format=item.format.upper(), kind=kind).strip()]
    if item.width and item.height:
        bits.append(f"{item.width}×{item.height}")
    if item.seconds:
        bits.append(t(locale, "replies.library.seconds", seconds=f"{item.seconds:.1f}"))
    bits.append(size(item.size))
    return " · ".join(bits)


def added_text(added: Added, locale: object = DEFAULT) -> str:
    item = added.item
    where = (" " + t(locale, "replies.library.registered", where=added.registered_on)
             if added.registered_on else "")
    waiting = " " + (t(locale, "replies.library.waiting") if item.pending
                     else t(locale, "replies.library.use_it", name=item.name))
    return clip(t(locale, "replies.library.added", name=item.name,
                  facts=item_facts(item, locale)) + f"{waiting}{where}", 2000)


def review_note(added: Added, user_id: str, locale: object = DEFAULT) -> str:
    """The moderators' channel's note of a pending item (public there: the server's locale)."""
    item = added.item
    about = f": {discord.utils.escape_markdown(item.description)}" if item.description else ""
    return clip(t(locale, "replies.library.review_note", user=user_id, name=item.name,
                  facts=item_facts(item, locale), about=about), 2000)


def shelf_header(shelf: Shelf, locale: object = DEFAULT) -> str:
    if not shelf.items:
        return t(locale, "replies.library.empty")
    return t(locale, "replies.library.shelf", count=len(shelf.items), max=shelf.max_items,
             size=size(shelf.bytes), max_size=size(shelf.max_bytes))


def item_embed(item: LibraryItem, thumb_name: str | None,
               locale: object = DEFAULT) -> discord.Embed:
    state = (t(locale, "replies.library.pending") if item.pending
             else t(locale, "replies.library.ready"))
    embed = discord.Embed(title=f"{KIND_ICONS.get(item.kind, '')} @{item.name}",
                          description=clip(item.description, 300) or None)
    embed.add_field(name=t(locale, "replies.library.file"), value=item_facts(item, locale))
    embed.add_field(name=t(locale, "replies.library.added_by"),
                    value=f"<@{item.owner_id}> {timestamp(item.created_at)}")
    embed.add_field(name=t(locale, "replies.library.used"),
                    value=t(locale, "replies.library.uses", count=item.uses) + f" · {state}")
    if thumb_name:
        embed.set_thumbnail(url=f"attachment://{thumb_name}")
    return embed


def removed_text(item: LibraryItem, locale: object = DEFAULT) -> str:
    return t(locale, "replies.library.removed", name=item.name)


def decided_text(item: LibraryItem, approved: bool, moderator_id: str,
                 locale: object = DEFAULT) -> str:
    if approved:
        return t(locale, "replies.library.approved", name=item.name, mod=moderator_id)
    return t(locale, "replies.library.rejected", name=item.name, mod=moderator_id)
