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
from bot.models import MediaKind, Mode, Reference, RequestedMode, Role

PLACEHOLDER = re.compile(r"@(image|video|audio)(\d+)(?![0-9A-Za-z_])", re.IGNORECASE)

_KIND_ORDER = {MediaKind.IMAGE: 0, MediaKind.VIDEO: 1, MediaKind.AUDIO: 2}
_REFERENCE_ROLE = {
    MediaKind.IMAGE: Role.REFERENCE_IMAGE,
    MediaKind.VIDEO: Role.REFERENCE_VIDEO,
    MediaKind.AUDIO: Role.REFERENCE_AUDIO,
}

MODE_NEEDS = {
    Mode.TEXT: "a prompt and no files",
    Mode.FIRST_FRAME: "exactly one image and no video or audio",
    Mode.FIRST_LAST_FRAME: "exactly two images (first, then last) and no video or audio",
    Mode.REFERENCE: "at least one image or video (audio may come with them)",
    Mode.EDIT: "a prompt, at least one image and at least one video",
    Mode.EXTEND: "a prompt and one or more videos, with no images or audio",
}


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


def describe_files(refs: Sequence[Reference]) -> str:
    images, videos, audios = _counts(refs)
    parts = [
        f"{n} {word}{'' if n == 1 else 's'}"
        for n, word in ((images, "image"), (videos, "video"), (audios, "audio clip"))
        if n
    ]
    return ", ".join(parts) or "no files"


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
            hint = (
                f"your files ({describe_files(ordered)}) fit: {', '.join(others)}"
                if others
                else f"no mode takes {describe_files(ordered)} as they are"
            )
            problems.append(
                Problem("mode", f"{mode.value} needs {MODE_NEEDS[mode]}; {hint}.")
            )
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
