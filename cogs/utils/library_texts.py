"""What members and moderators read of the server library (`/library`), as pure functions.

A module of its own beside cogs/utils/texts.py, which is near the size limit; the refusals are
the service's sentences (bot/service/library.py, bot/service/library_use.py).
"""

from __future__ import annotations

import discord

from bot.service.library import Added, Shelf
from bot.store.library import LibraryItem
from bot.words import size
from cogs.utils.texts import clip, timestamp

KIND_ICONS = {"image": "🖼️", "video": "🎞️", "audio": "🔊"}
#: Embeds Discord takes in one message.
EMBEDS_PER_MESSAGE = 10


def item_facts(item: LibraryItem) -> str:
    """"PNG image · 800×450 · 120 KB" and the like."""
    bits = [f"{item.format.upper()} {item.kind}".strip()]
    if item.width and item.height:
        bits.append(f"{item.width}×{item.height}")
    if item.seconds:
        bits.append(f"{item.seconds:.1f} s")
    bits.append(size(item.size))
    return " · ".join(bits)


def added_text(added: Added) -> str:
    item = added.item
    where = (f" It is registered on {added.registered_on} and sent there as an asset."
             if added.registered_on else "")
    waiting = (" It waits for a moderator's approval before it can be used."
               if item.pending else f" Use it in `/video` prompts as `@{item.name}`.")
    return clip(f"📚 Added `{item.name}` to this server's library ({item_facts(item)})."
                f"{waiting}{where}", 2000)


def review_note(added: Added, user_id: str) -> str:
    """The moderators' channel's note of a pending item."""
    item = added.item
    about = f": {discord.utils.escape_markdown(item.description)}" if item.description else ""
    return clip(f"📚 <@{user_id}> added `{item.name}` to the library ({item_facts(item)}){about}. "
                f"Approve it with `/library approve name:{item.name}` or reject it with "
                f"`/library reject name:{item.name}`.", 2000)


def shelf_header(shelf: Shelf) -> str:
    if not shelf.items:
        return ("This server's library is empty. Add a character, scene or sound with "
                "`/library add name:<word> file:<attachment>`, then write `@<word>` in a "
                "`/video` prompt.")
    return (f"📚 **{len(shelf.items)}** of {shelf.max_items} items · {size(shelf.bytes)} of "
            f"{size(shelf.max_bytes)}. Write `@name` in a `/video` prompt to use one: it comes "
            "after your attached files (`@image1`… still name those).")


def item_embed(item: LibraryItem, thumb_name: str | None) -> discord.Embed:
    state = "⏳ waiting for a moderator" if item.pending else "ready"
    embed = discord.Embed(title=f"{KIND_ICONS.get(item.kind, '')} @{item.name}",
                          description=clip(item.description, 300) or None)
    embed.add_field(name="File", value=item_facts(item))
    embed.add_field(name="Added by", value=f"<@{item.owner_id}> {timestamp(item.created_at)}")
    embed.add_field(name="Used", value=f"{item.uses} time{'s' if item.uses != 1 else ''} · "
                                       f"{state}")
    if thumb_name:
        embed.set_thumbnail(url=f"attachment://{thumb_name}")
    return embed


def removed_text(item: LibraryItem) -> str:
    return (f"🗑️ Removed `{item.name}` from the library. Videos already queued with it keep "
            "their copy.")


def decided_text(item: LibraryItem, approved: bool, moderator_id: str) -> str:
    if approved:
        return f"✅ `{item.name}` was approved by <@{moderator_id}>; use it as `@{item.name}`."
    return f"🚫 `{item.name}` was rejected by <@{moderator_id}> and deleted."
