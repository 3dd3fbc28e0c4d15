"""Discord's rules for messages flagged IS_COMPONENTS_V2 (1 << 15), as the fake applies them.

With the flag a message has no `content` and no `embeds`; all its components, nested ones
included, are at most 40; the text displays hold at most 4,000 characters together; a media
gallery has 1–10 items; an action row at most 5 buttons; every `attachment://name` names a file
of the message. Once set, the flag stays. On storing, Discord resolves `attachment://name` to
the attachment's CDN URL (and its id), which is what a client then reads back.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from .state import Attachment, iter_components

FLAG_COMPONENTS_V2 = 1 << 15
MAX_COMPONENTS = 40
MAX_TEXT = 4000
MAX_GALLERY = 10
ACTION_ROW, TEXT_DISPLAY, THUMBNAIL, MEDIA_GALLERY, FILE = 1, 10, 11, 12, 13
V2_TYPES = frozenset({9, 10, 11, 12, 13, 14, 17})

FormError = Callable[[str, str, str], Exception]


def media_of(components: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every media reference (thumbnails, gallery items, files)."""
    out: list[dict[str, Any]] = []
    for comp in iter_components(components):
        if comp.get("type") in (THUMBNAIL, FILE) and isinstance(comp.get("media") or
                                                                 comp.get("file"), dict):
            out.append(comp.get("media") or comp["file"])
        if comp.get("type") == MEDIA_GALLERY:
            out.extend(item["media"] for item in comp.get("items", [])
                       if isinstance(item.get("media"), dict))
    return out


def check_v2(content: Any, embeds: Any, components: list[dict[str, Any]],
             files: Iterable[str], error: FormError) -> None:
    """Raise Discord's form error for the first broken rule of a v2 message."""
    if content or embeds:
        raise error("content", "MESSAGE_CANNOT_USE_LEGACY_FIELDS_WITH_COMPONENTS_V2",
                    "The 'content' and 'embeds' fields cannot be used when using "
                    "MessageFlags.IS_COMPONENTS_V2")
    every = iter_components(components)
    if not components:
        raise error("components", "BASE_TYPE_REQUIRED", "This field is required")
    if len(every) > MAX_COMPONENTS:
        raise error("components", "BASE_TYPE_MAX_LENGTH",
                    f"Must be {MAX_COMPONENTS} or fewer in length (nested included).")
    text = sum(len(str(c.get("content") or "")) for c in every if c.get("type") == TEXT_DISPLAY)
    if text > MAX_TEXT:
        raise error("components", "BASE_TYPE_MAX_LENGTH",
                    f"Text displays must hold {MAX_TEXT} or fewer characters in all.")
    for comp in every:
        kind = comp.get("type")
        if kind == TEXT_DISPLAY and not str(comp.get("content") or ""):
            raise error("components", "BASE_TYPE_REQUIRED", "A text display needs content.")
        if kind == MEDIA_GALLERY and not 1 <= len(comp.get("items") or []) <= MAX_GALLERY:
            raise error("components.items", "BASE_TYPE_BAD_LENGTH",
                        f"Must be between 1 and {MAX_GALLERY} in length.")
        if kind == ACTION_ROW and not 1 <= len(comp.get("components") or []) <= 5:
            raise error("components.components", "BASE_TYPE_BAD_LENGTH",
                        "Must be between 1 and 5 in length.")
    names = set(files)
    for media in media_of(components):
        url = str(media.get("url") or "")
        if url.startswith("attachment://") and url.removeprefix("attachment://") not in names:
            raise error("components.media.url", "UNFURLED_MEDIA_ITEM_ATTACHMENT_NOT_FOUND",
                        f"No attachment named {url.removeprefix('attachment://')!r}")
        if not url.startswith(("attachment://", "https://", "http://")):
            raise error("components.media.url", "URL_TYPE_INVALID_URL", "Not a well formed URL.")


def check_legacy(components: list[dict[str, Any]], error: FormError) -> None:
    """Without the flag, v2 component types are refused."""
    for comp in iter_components(components):
        if comp.get("type") in V2_TYPES:
            raise error("components", "COMPONENT_LAYOUT_REQUIRES_V2",
                        "This component type needs MessageFlags.IS_COMPONENTS_V2")


def resolve_media(components: list[dict[str, Any]], attachments: list[Attachment]) -> None:
    """`attachment://name` becomes the attachment's URL, as Discord stores it."""
    by_name = {a.filename: a for a in attachments}
    for media in media_of(components):
        url = str(media.get("url") or "")
        att = by_name.get(url.removeprefix("attachment://")) if url.startswith(
            "attachment://") else None
        if att is not None:
            media.update(url=att.url, proxy_url=att.url, attachment_id=str(att.id))
