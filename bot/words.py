"""Small wording helpers shared by every message the core writes, so that articles, plurals and
sizes read the same everywhere ("an image", "no audio clips", "30 MiB")."""

from __future__ import annotations

from bot.i18n import Said

MIB = 1024 * 1024

#: What each media kind is called in a sentence, singular and plural.
KIND_NOUNS = {"image": ("image", "images"), "video": ("video", "videos"),
              "audio": ("audio clip", "audio clips")}


def a(noun: str) -> str:
    """The noun with its indefinite article: "an image", "a video", "an MP4 video"."""
    first = noun[:1]
    vowel_sound = first.lower() in "aeiou" or (
        # letters read out by name, starting with a vowel sound: an MP4, an SVG, an HTML page
        first.isupper() and len(noun.split()[0]) > 1 and noun.split()[0].isupper()
        and first in "AEFHILMNORSX")
    return f"{'an' if vowel_sound else 'a'} {noun}"


def count(n: int, singular: str, plural: str | None = None) -> str:
    """ "no images", "1 image", "3 images"."""
    many = plural or singular + "s"
    if n == 0:
        return f"no {many}"
    return f"{n} {singular if n == 1 else many}"


def kind_count(n: int, kind: str) -> str:
    """`count` for a media kind: "no audio clips", "1 image", "2 videos"."""
    singular, plural = KIND_NOUNS.get(kind, (kind, kind + "s"))
    return count(n, singular, plural)


def size(n: int) -> str:
    """Bytes in one unit everywhere (MiB, 1,048,576 bytes): "30 MiB", "1.5 MiB", "0.2 MiB"."""
    if n < MIB // 10:
        return f"{n:,} bytes"
    value = n / MIB
    if value >= 10 or value == int(value):
        return f"{value:.0f} MiB"
    return f"{value:.1f} MiB"


def kind_said(n: int, kind: str) -> Said:
    """`kind_count` as a catalog sentence part (bot/i18n), said in the reader's language; kinds:
    image, video, audio, first_frame_image, last_frame_image."""
    return Said(f"errors.count.{kind}", count=n) if n else Said(f"errors.none.{kind}")
