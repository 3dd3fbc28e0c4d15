"""`@name` in a /video prompt: which library items it names, and the prompt the gateway gets.

Numbering (what a member reads in the mapping before anything is spent): the attachments come
first, in their order, then the library items in the order the prompt first names them; the
gateways number files per kind (`@image1`, `@video1`, `@audio1`, bot/roles.py), so an item is the
next image, video or clip after the attached ones of its kind. `@image1`… keep pointing at the
attachments, and each `@name` is rewritten to the placeholder of its item (every mention of one
item to the same placeholder), so the gateway sees only the placeholders it documents.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping, Sequence

from bot.i18n import Said
from bot.models import MediaKind, Reference
from bot.roles import PLACEHOLDER

#: A library name: one word of letters, digits, `_` and `-`, starting with a letter and ending
#: with a letter or digit, 2–32 characters.
NAME = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,30}[A-Za-z0-9]")
NAME_MIN, NAME_MAX = 2, 32
#: `@word` in a prompt: not inside an address or a Discord mention (`<@123>`, `<@&123>`).
MENTION = re.compile(r"(?<![\w<@&/.])@([A-Za-z](?:[A-Za-z0-9_-]*[A-Za-z0-9])?)(?![A-Za-z0-9_])")
#: Words a name can't be: Discord's mass mentions, and anything the placeholder pattern could
#: read as `@image1` (also `image1-hero`, which it reads as `@image1` followed by text).
RESERVED = frozenset({"everyone", "here"})
_PLACEHOLDER_LIKE = re.compile(r"(?i)(image|video|audio)(\d|$)")


def name_problem(name: str) -> Said | None:
    """Why `name` can't be a library name (a sentence naming the fix), or None."""
    if not name:
        return Said("errors.library.name.needed")
    if any(c.isspace() for c in name.strip()) or not NAME.fullmatch(name):
        if any(c.isspace() for c in name.strip()):
            return Said("errors.library.name.not_one_word", name=name,
                        example=re.sub(r'[^A-Za-z0-9_-]+', '_', name.strip())[:NAME_MAX])
        if not NAME_MIN <= len(name) <= NAME_MAX:
            return Said("errors.library.name.length", least=NAME_MIN, most=NAME_MAX,
                        name=name[:40], length=len(name))
        return Said("errors.library.name.letters", name=name)
    if _PLACEHOLDER_LIKE.match(name):
        return Said("errors.library.name.placeholder", name=name, lower=name.lower())
    if name.lower() in RESERVED:
        return Said("errors.library.name.mention", name=name)
    return None


def mentions(prompt: str) -> list[str]:
    """The `@name`s of a prompt (lower case, first mention order, each once), placeholders
    such as `@image1` left out."""
    found: list[str] = []
    for match in MENTION.finditer(prompt):
        if PLACEHOLDER.match(prompt, match.start()):
            continue
        key = match.group(1).lower()
        if key not in RESERVED and key not in found:
            found.append(key)
    return found


def near_names(name: str, names: Sequence[str], n: int = 5) -> list[str]:
    """The library names closest to `name` (for a refusal of an unknown `@name`)."""
    by_key = {k.lower(): k for k in names}
    close = difflib.get_close_matches(name.lower(), list(by_key), n=n, cutoff=0.5)
    return [by_key[k] for k in close]


def numbering(refs: Sequence[Reference], library: Mapping[str, str]) -> dict[str, str]:
    """name key → the placeholder its item gets, given the measured references in the order
    they were given (attachments first) and `library`: a reference's name → its name key."""
    seen: dict[MediaKind, int] = {}
    placed: dict[str, str] = {}
    for ref in refs:
        seen[ref.kind] = seen.get(ref.kind, 0) + 1
        key = library.get(ref.name)
        if key is not None:
            placed[key] = f"@{ref.kind.value}{seen[ref.kind]}"
    return placed


def rewrite(prompt: str, placed: Mapping[str, str]) -> str:
    """The prompt with each `@name` of `placed` replaced by its placeholder."""

    def swap(match: re.Match[str]) -> str:
        if PLACEHOLDER.match(prompt, match.start()):
            return match.group(0)
        return placed.get(match.group(1).lower(), match.group(0))

    return MENTION.sub(swap, prompt)
