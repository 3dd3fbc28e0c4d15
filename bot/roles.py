"""Which mode a request is in, and which Seedance role each file plays.

Auto mode reads only what the files really are (measured kinds), their order, and the prompt's
placeholders — the table in issue 2:

| files                                              | mode                |
|----------------------------------------------------|---------------------|
| none                                               | text                |
| one image, nothing else, no placeholders           | first frame         |
| two images, nothing else, no placeholders          | first + last frame  |
| any video or audio, > 2 images, or a placeholder   | multimodal reference|

An explicit mode overrides auto; a mode that does not fit the files is a `Problem` that says
which modes the files would fit.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from bot.errors import Problem
from bot.i18n import Said
from bot.models import MediaKind, Mode, Reference, RequestedMode, Role
from bot.words import kind_said

PLACEHOLDER = re.compile(r"@(image|video|audio)(\d+)(?![0-9A-Za-z_])", re.IGNORECASE)

_KIND_ORDER = {MediaKind.IMAGE: 0, MediaKind.VIDEO: 1, MediaKind.AUDIO: 2}
_REFERENCE_ROLE = {
    MediaKind.IMAGE: Role.REFERENCE_IMAGE,
    MediaKind.VIDEO: Role.REFERENCE_VIDEO,
    MediaKind.AUDIO: Role.REFERENCE_AUDIO,
}

def mode_needs(mode: Mode) -> Said:
    """What a mode needs, as a sentence part ("a prompt and no files"), said in the reader's
    language (bot/i18n)."""
    return Said(f"errors.mode.needs_what.{mode.value}")


def placeholders(prompt: str) -> list[tuple[MediaKind, int]]:
    """Every `@imageN` / `@videoN` / `@audioN` in the prompt, in order."""
    return [(MediaKind(m.group(1).lower()), int(m.group(2))) for m in PLACEHOLDER.finditer(prompt)]


def order_references(refs: Sequence[Reference]) -> list[Reference]:
    """Images, then videos, then audios, keeping the user's order within a kind (the gateways
    number placeholders per kind by position and demand this order)."""
    return sorted(refs, key=lambda r: _KIND_ORDER[r.kind])


def _counts(refs: Sequence[Reference]) -> tuple[int, int, int]:
    kinds = [r.kind for r in refs]
    return kinds.count(MediaKind.IMAGE), kinds.count(MediaKind.VIDEO), kinds.count(MediaKind.AUDIO)


def fits(mode: Mode, refs: Sequence[Reference], prompt: str) -> bool:
    """Whether the files (by kind and count) can make a request in `mode`."""
    images, videos, audios = _counts(refs)
    has_text = bool(prompt.strip())
    if mode is Mode.TEXT:
        return not refs and has_text
    if mode is Mode.FIRST_FRAME:
        return images == 1 and not videos and not audios
    if mode is Mode.FIRST_LAST_FRAME:
        return images == 2 and not videos and not audios
    if mode is Mode.REFERENCE:
        return images + videos > 0
    if mode is Mode.EDIT:
        return has_text and images > 0 and videos > 0
    return has_text and videos > 0 and not images and not audios  # EXTEND


def auto_mode(refs: Sequence[Reference], prompt: str) -> Mode:
    images, videos, audios = _counts(refs)
    if not refs:
        return Mode.TEXT
    if videos or audios or images > 2 or placeholders(prompt):
        return Mode.REFERENCE
    return Mode.FIRST_FRAME if images == 1 else Mode.FIRST_LAST_FRAME


def describe_files(refs: Sequence[Reference]) -> Said:
    """ "1 image, 2 videos" or "no files", said in the reader's language (bot/i18n)."""
    images, videos, audios = _counts(refs)
    parts = [kind_said(n, kind) for n, kind in ((images, "image"), (videos, "video"),
                                                (audios, "audio")) if n]
    if not parts:
        return Said("errors.none.files")
    listed = parts[-1]
    for part in reversed(parts[:-1]):
        listed = Said("errors.files.listed", first=part, rest=listed)
    return listed


def assign_roles(
    prompt: str,
    refs: Sequence[Reference],
    requested: RequestedMode | Mode = RequestedMode.AUTO,
) -> tuple[Mode, list[Reference], list[Problem]]:
    """Resolve the mode and give every file its role. Returns problems instead of raising so
    the caller can report them together with every other problem."""
    ordered = order_references(refs)
    problems: list[Problem] = []
    if requested == RequestedMode.AUTO:
        mode = auto_mode(ordered, prompt)
    else:
        mode = Mode(str(requested))
        if not fits(mode, ordered, prompt):
            others = [m.value for m in Mode if m is not mode and fits(m, ordered, prompt)]
            files = describe_files(ordered)
            hint = (Said("errors.mode.fit", files=files, modes=", ".join(others)) if others
                    else Said("errors.mode.fit_none", files=files))
            problems.append(Problem.keyed(Said("errors.subject.mode"), "errors.mode.needs_hint",
                                          mode=mode.value, needs=mode_needs(mode), hint=hint))
    assigned = [ref.model_copy(update={"role": _role(mode, ref, ordered)}) for ref in ordered]
    return mode, assigned, problems


def _role(mode: Mode, ref: Reference, ordered: Sequence[Reference]) -> Role:
    if mode is Mode.FIRST_FRAME and ref.kind is MediaKind.IMAGE:
        return Role.FIRST_FRAME
    if mode is Mode.FIRST_LAST_FRAME and ref.kind is MediaKind.IMAGE:
        first_image = next(r for r in ordered if r.kind is MediaKind.IMAGE)
        return Role.FIRST_FRAME if ref is first_image else Role.LAST_FRAME
    return _REFERENCE_ROLE[ref.kind]


def mapping_lines(refs: Sequence[Reference]) -> list[str]:
    """`@image1 = cat.png → reference image`, one line per file, for the user to check."""
    seen: dict[MediaKind, int] = {}
    lines = []
    for ref in refs:
        seen[ref.kind] = seen.get(ref.kind, 0) + 1
        role = ref.role.value.replace("_", " ") if ref.role else "unassigned"
        lines.append(f"@{ref.kind.value}{seen[ref.kind]} = {ref.name} → {role}")
    return lines
