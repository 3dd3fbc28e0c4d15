"""The role-mapping table of issue 2, case by case."""

from __future__ import annotations

import pytest

from bot.models import MediaKind, Mode, Reference, RequestedMode, Role
from bot.roles import assign_roles, auto_mode, mapping_lines, placeholders


def ref(kind: str, name: str) -> Reference:
    return Reference(kind=MediaKind(kind), source=f"/x/{name}", name=name)


I1, I2, I3 = ref("image", "a.png"), ref("image", "b.png"), ref("image", "c.png")
V1, A1 = ref("video", "v.mp4"), ref("audio", "s.mp3")


@pytest.mark.parametrize(
    ("files", "prompt", "mode"),
    [
        ([], "a fox", Mode.TEXT),
        ([I1], "a fox", Mode.FIRST_FRAME),
        ([I1, I2], "a fox", Mode.FIRST_LAST_FRAME),
        ([I1, I2], "the fox from @image1 meets @image2", Mode.REFERENCE),
        ([I1], "the fox in @image1", Mode.REFERENCE),
        ([I1, I2, I3], "a fox", Mode.REFERENCE),
        ([V1], "a fox", Mode.REFERENCE),
        ([I1, A1], "a fox", Mode.REFERENCE),
        ([I1, V1, A1], "a fox", Mode.REFERENCE),
    ],
)
def test_auto_mode_table(files: list[Reference], prompt: str, mode: Mode) -> None:
    assert auto_mode(files, prompt) is mode
    resolved, _, problems = assign_roles(prompt, files)
    assert resolved is mode and problems == []


def test_first_and_last_roles_follow_order() -> None:
    _, refs, _ = assign_roles("fox", [I1, I2])
    assert [(r.name, r.role) for r in refs] == [
        ("a.png", Role.FIRST_FRAME), ("b.png", Role.LAST_FRAME)]


def test_reference_roles_and_content_order() -> None:
    _, refs, _ = assign_roles("@image1 @video1 @audio1", [A1, V1, I1])
    assert [r.kind for r in refs] == [MediaKind.IMAGE, MediaKind.VIDEO, MediaKind.AUDIO]
    assert [r.role for r in refs] == [
        Role.REFERENCE_IMAGE, Role.REFERENCE_VIDEO, Role.REFERENCE_AUDIO]
    assert mapping_lines(refs) == [
        "@image1 = a.png → reference image",
        "@video1 = v.mp4 → reference video",
        "@audio1 = s.mp3 → reference audio",
    ]


def test_explicit_mode_overrides_auto() -> None:
    mode, refs, problems = assign_roles("fox", [I1], RequestedMode.REFERENCE)
    assert mode is Mode.REFERENCE and problems == []
    assert refs[0].role is Role.REFERENCE_IMAGE


@pytest.mark.parametrize(
    ("files", "requested", "fits_hint"),
    [
        ([I1, V1], RequestedMode.FIRST_FRAME, "fit: reference, edit"),
        ([V1], RequestedMode.EDIT, "fit: reference, extend"),
        ([I1, V1], RequestedMode.EXTEND, "fit: reference, edit"),
        ([I1], RequestedMode.TEXT, "fit: first_frame, reference"),
        ([], RequestedMode.FIRST_FRAME, "fit: text"),
    ],
)
def test_mode_that_does_not_fit_says_which_would(
    files: list[Reference], requested: RequestedMode, fits_hint: str
) -> None:
    _, _, problems = assign_roles("a fox", files, requested)
    assert len(problems) == 1
    assert problems[0].subject == "mode"
    assert fits_hint in problems[0].message


def test_edit_and_extend_are_reference_with_their_checks() -> None:
    assert assign_roles("swap", [I1, V1], RequestedMode.EDIT)[2] == []
    assert assign_roles("longer", [V1], RequestedMode.EXTEND)[2] == []
    # Edit and extend need text.
    assert assign_roles("", [I1, V1], RequestedMode.EDIT)[2]
    assert assign_roles("  ", [V1], RequestedMode.EXTEND)[2]


def test_placeholders_parse() -> None:
    assert placeholders("@Image1 and @video2, @audio10; @imagex @image1a") == [
        (MediaKind.IMAGE, 1), (MediaKind.VIDEO, 2), (MediaKind.AUDIO, 10)]
