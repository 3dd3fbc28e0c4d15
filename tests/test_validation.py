"""Each validation rule, broken by a real file measured from its bytes (issue 2, point 4)."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import pytest

from bot.errors import InvalidInput
from bot.intake import MediaInput, RequestOptions, prepare
from bot.models import (
    MediaKind,
    Mode,
    Ratio,
    Reference,
    RequestedMode,
    Resolution,
    Role,
    SourceKind,
)
from bot.providers.base import Capabilities, MediaLimits
from tests.media_factory import cut_in_half, make_audio, make_image, make_svg, make_video

ANY = frozenset(SourceKind)
CAPS = Capabilities(
    provider="test", model="m", resolutions=frozenset(Resolution),
    accepts={k: ANY for k in MediaKind},
)


async def problems_for(tmp: Path, files: list[Path | MediaInput], prompt: str = "a fox",
                       caps: Capabilities = CAPS, **opts: object) -> list[str]:
    inputs = [f if isinstance(f, MediaInput) else MediaInput(str(f), name=f.name) for f in files]
    try:
        await prepare(inputs, RequestOptions(prompt=prompt, **opts),  # type: ignore[arg-type]
                      caps, cache_dir=tmp / "cache")
    except InvalidInput as exc:
        return [str(p) for p in exc.problems]
    return []


def one(problems: list[str], *needles: str) -> str:
    hits = [p for p in problems if all(n in p for n in needles)]
    assert hits, f"no problem with {needles} in {problems}"
    return hits[0]


async def test_valid_reference_request_passes(tmp_path: Path) -> None:
    img = make_image(tmp_path / "cat.png")
    vid = make_video(tmp_path / "clip.mp4")
    aud = make_audio(tmp_path / "song.wav")
    req = await prepare(
        [MediaInput(str(aud), name="song.wav"), MediaInput(str(img), name="cat.png"),
         MediaInput(str(vid), name="clip.mp4")],
        RequestOptions(prompt="@image1 dances in @video1 to @audio1"), CAPS,
        cache_dir=tmp_path)
    assert req.mode is Mode.REFERENCE
    assert [r.kind for r in req.references] == [MediaKind.IMAGE, MediaKind.VIDEO, MediaKind.AUDIO]
    assert req.references[1].facts is not None and req.references[1].facts.fps == 24


async def test_kind_comes_from_bytes_not_name(tmp_path: Path) -> None:
    png = make_image(tmp_path / "real.png")
    liar = tmp_path / "looks_like_video.mp4"
    shutil.copy(png, liar)
    req = await prepare([MediaInput(str(liar), name=liar.name)], RequestOptions(prompt="fox"),
                        CAPS, cache_dir=tmp_path)
    assert req.mode is Mode.FIRST_FRAME and req.references[0].kind is MediaKind.IMAGE


async def test_unreadable_file(tmp_path: Path) -> None:
    junk = tmp_path / "movie.mp4"
    junk.write_text("this is not a video at all")
    one(await problems_for(tmp_path, [junk]), "movie.mp4", "not an image, video or audio")



async def test_truncated_jpeg_is_refused_naming_the_file(tmp_path: Path) -> None:
    whole = make_image(tmp_path / "whole.jpg", 640, 480, fmt="JPEG")
    cut = cut_in_half(whole, tmp_path / "beach.jpg")
    problem = one(await problems_for(tmp_path, [cut], "@image1 at sunset"), "beach.jpg")
    assert "damaged JPEG" in problem and "export it again" in problem


async def test_svg_is_refused_with_its_own_hint(tmp_path: Path) -> None:
    svg = make_svg(tmp_path / "logo.svg")
    problem = one(await problems_for(tmp_path, [svg], "@image1 spins"), "logo.svg")
    assert "SVG is not supported; export PNG" in problem
    assert "WAV/MP3" not in problem  # the general sentence is for bytes we cannot name

async def test_image_rules(tmp_path: Path) -> None:
    small = make_image(tmp_path / "small.png", 200, 200)
    wide = make_image(tmp_path / "wide.png", 1500, 400)
    problems = await problems_for(tmp_path, [small, wide], "@image1 @image2")
    one(problems, "small.png", "300–6000 px")
    one(problems, "wide.png", "ratio of 3.75", "0.4–2.5")
    tiny_limit = dataclasses.replace(CAPS, limits=MediaLimits(image_max_bytes=1000))
    big = make_image(tmp_path / "big.bmp", 640, 480, fmt="BMP")
    one(await problems_for(tmp_path, [big], caps=tiny_limit), "big.bmp", "under 1,000 bytes")


async def test_image_format_rule(tmp_path: Path) -> None:
    ico = tmp_path / "icon.ico"
    from PIL import Image

    Image.new("RGB", (256, 256), (1, 2, 3)).save(ico, format="ICO")
    one(await problems_for(tmp_path, [ico]), "icon.ico", "use JPEG, PNG")


async def test_video_rules(tmp_path: Path) -> None:
    short = make_video(tmp_path / "short.mp4", seconds=1.0)
    slow = make_video(tmp_path / "slow.mp4", fps=15)
    tiny = make_video(tmp_path / "tiny.mp4", width=320, height=240)
    problems = await problems_for(tmp_path, [short, slow, tiny], "@video1")
    one(problems, "short.mp4", "lasts 1.0 s", "2–15 s")
    one(problems, "slow.mp4", "15.0 fps", "24–60 fps")
    one(problems, "tiny.mp4", "76,800 pixels")


async def test_video_total_and_count(tmp_path: Path) -> None:
    clips = [make_video(tmp_path / f"c{i}.mp4", seconds=6.0) for i in range(4)]
    problems = await problems_for(tmp_path, clips)
    one(problems, "4 videos", "at most 3")
    one(problems, "videos last 24.0 s together", "at most 15 s")


async def test_video_size_and_format(tmp_path: Path) -> None:
    mkv = make_video(tmp_path / "clip.mkv", fmt="matroska")
    caps = dataclasses.replace(CAPS, limits=MediaLimits(video_max_bytes=2000))
    problems = await problems_for(tmp_path, [mkv], caps=caps)
    one(problems, "clip.mkv", "use MP4 or MOV")
    one(problems, "clip.mkv", "videos must be under")


async def test_audio_rules(tmp_path: Path) -> None:
    img = make_image(tmp_path / "a.png")
    short = make_audio(tmp_path / "blip.wav", seconds=1.0)
    long1 = make_audio(tmp_path / "l1.mp3", seconds=9.0, fmt="mp3")
    long2 = make_audio(tmp_path / "l2.mp3", seconds=9.0, fmt="mp3")
    problems = await problems_for(tmp_path, [img, short, long1, long2])
    one(problems, "blip.wav", "lasts 1.0 s")
    one(problems, "audio clips last 19.0 s together")
    assert not any("at most 3 are allowed" in p for p in problems)


async def test_audio_alone_refused(tmp_path: Path) -> None:
    song = make_audio(tmp_path / "song.wav")
    one(await problems_for(tmp_path, [song]), "audio alone is not enough")


async def test_placeholder_must_point_at_a_file(tmp_path: Path) -> None:
    a, b = make_image(tmp_path / "a.png"), make_image(tmp_path / "b.png")
    problems = await problems_for(tmp_path, [a, b], "@image3 and @video1 and @image0")
    one(problems, "@image3 points at no file", "there are 2 images")
    one(problems, "@video1 points at no file")
    one(problems, "@image0")


async def test_prompt_length_and_required(tmp_path: Path) -> None:
    one(await problems_for(tmp_path, [], "x" * 2001), "prompt", "2,001 characters")
    one(await problems_for(tmp_path, [], ""), "prompt", "a prompt is needed")


async def test_capability_table(tmp_path: Path) -> None:
    caps = dataclasses.replace(
        CAPS, resolutions=frozenset({Resolution.P480, Resolution.P720}),
        durations=frozenset({5, 10}), web_search=False, seed=False, audio_generation=False,
        modes=frozenset({Mode.TEXT, Mode.FIRST_FRAME, Mode.FIRST_LAST_FRAME}),
    )
    vid = make_video(tmp_path / "v.mp4")
    problems = await problems_for(
        tmp_path, [vid], caps=caps, resolution=Resolution.P1080, duration=7, web_search=True,
        seed=3, audio=True)
    one(problems, "resolution", "1080p", "480p, 720p")
    one(problems, "duration", "7 s", "5 s or 10 s")
    one(problems, "mode", "reference")
    one(problems, "web_search")
    one(problems, "seed", "does not take a seed")
    one(problems, "audio", "cannot generate sound")


async def test_web_search_only_in_text_mode(tmp_path: Path) -> None:
    img = make_image(tmp_path / "a.png")
    one(await problems_for(tmp_path, [img], web_search=True), "only for text-to-video")
    assert await problems_for(tmp_path, [], web_search=True) == []


async def test_local_file_unreachable_for_url_only_gateway(tmp_path: Path) -> None:
    caps = dataclasses.replace(CAPS, provider="urlonly",
                               accepts={k: frozenset({SourceKind.URL}) for k in MediaKind})
    img = make_image(tmp_path / "a.png")
    one(await problems_for(tmp_path, [img], caps=caps), "a.png", "public https URL")


async def test_all_problems_collected(tmp_path: Path) -> None:
    small = make_image(tmp_path / "small.png", 100, 100)
    short = make_video(tmp_path / "short.mp4", seconds=1.0)
    problems = await problems_for(tmp_path, [small, short], "@image2 " + "y" * 2100,
                                  duration=20)
    assert len(problems) >= 5


async def test_explicit_roles_from_flags(tmp_path: Path) -> None:
    a, b = make_image(tmp_path / "a.png"), make_image(tmp_path / "b.png", color=(0, 200, 0))
    req = await prepare(
        [MediaInput(str(b), declared_kind=MediaKind.IMAGE, role_hint=Role.LAST_FRAME),
         MediaInput(str(a), declared_kind=MediaKind.IMAGE, role_hint=Role.FIRST_FRAME)],
        RequestOptions(prompt="morph", mode=RequestedMode.AUTO, ratio=Ratio.R16_9), CAPS,
        cache_dir=tmp_path)
    assert req.mode is Mode.FIRST_LAST_FRAME
    assert [(Path(r.source).name, r.role) for r in req.references] == [
        ("a.png", Role.FIRST_FRAME), ("b.png", Role.LAST_FRAME)]


async def test_declared_kind_must_match_bytes(tmp_path: Path) -> None:
    vid = make_video(tmp_path / "v.mp4")
    inp = MediaInput(str(vid), declared_kind=MediaKind.IMAGE)
    one(await problems_for(tmp_path, [inp]), "was given as image but is video", "--video")


async def test_asset_needs_no_bytes(tmp_path: Path) -> None:
    inp = MediaInput("asset://asset-123", declared_kind=MediaKind.IMAGE)
    req = await prepare([inp], RequestOptions(prompt="@image1 walks"), CAPS, cache_dir=tmp_path)
    assert req.references[0].facts is None and req.mode is Mode.REFERENCE
    missing = await problems_for(tmp_path, [MediaInput("asset://x")])
    one(missing, "needs its kind")


@pytest.mark.parametrize("missing", ["/nonexistent/file.png"])
async def test_missing_file(tmp_path: Path, missing: str) -> None:
    one(await problems_for(tmp_path, [MediaInput(missing)]), "no such file")


async def test_results_and_min_reference_images(tmp_path: Path) -> None:
    from bot.models import GenerationRequest
    from bot.validation import check_capabilities

    caps = dataclasses.replace(CAPS, results_per_task=1,
                               limits=MediaLimits(min_reference_images=1))
    req = GenerationRequest(prompt="@video1 again", mode=Mode.REFERENCE, results=3)
    problems = [str(p) for p in check_capabilities(req, caps)]
    one(problems, "count", "returns one video per request", "set count to 1")
    one(problems, "at least 1 image")
    four = dataclasses.replace(CAPS, results_per_task=4)
    five = [str(p) for p in check_capabilities(req.model_copy(update={"results": 5}), four)]
    one(five, "count", "at most 4 videos", "4 or fewer")


# ---- rules the capability table declares for frames and for mixing references --------------

def _url(kind: MediaKind, name: str, role: Role | None) -> Reference:
    return Reference(kind=kind, source=f"https://media.example.com/{name}", name=name, role=role)


def test_reference_images_with_videos_refused_where_the_table_says_so() -> None:
    from bot.models import GenerationRequest
    from bot.validation import check_capabilities

    apart = dataclasses.replace(CAPS, provider="hiapi", model="seedance-2.0-mini",
                                reference_images_with_videos=False,
                                modes=CAPS.modes - {Mode.EDIT})
    refs = [_url(MediaKind.IMAGE, "cat.png", Role.REFERENCE_IMAGE),
            _url(MediaKind.VIDEO, "clip.mp4", Role.REFERENCE_VIDEO)]
    mixed = GenerationRequest(prompt="@image1 in @video1", mode=Mode.REFERENCE, references=refs)
    problem = one([str(p) for p in check_capabilities(mixed, apart)], "files",
                  "reference images or reference videos, not both")
    assert "hiapi (seedance-2.0-mini)" in problem and "drop the images or the videos" in problem
    assert check_capabilities(mixed, CAPS) == []  # a gateway that mixes them takes it
    edit = mixed.model_copy(update={"mode": Mode.EDIT})
    one([str(p) for p in check_capabilities(edit, apart)], "mode: hiapi (seedance-2.0-mini) "
        "does not do edit (it never takes reference images together with reference videos)")
    images_only = mixed.model_copy(update={"references": refs[:1]})
    assert check_capabilities(images_only, apart) == []


@pytest.mark.parametrize(("mode", "roles", "refused"), [
    (Mode.FIRST_FRAME, [Role.FIRST_FRAME], False),
    (Mode.FIRST_FRAME, [None], False),  # unmarked: the first image is the first frame
    (Mode.FIRST_FRAME, [Role.LAST_FRAME], True),
    (Mode.FIRST_FRAME, [Role.REFERENCE_IMAGE], True),
    (Mode.FIRST_LAST_FRAME, [Role.FIRST_FRAME, Role.LAST_FRAME], False),
    (Mode.FIRST_LAST_FRAME, [Role.LAST_FRAME, Role.FIRST_FRAME], False),
    (Mode.FIRST_LAST_FRAME, [None, None], False),
    (Mode.FIRST_LAST_FRAME, [Role.FIRST_FRAME, Role.FIRST_FRAME], True),
    (Mode.FIRST_LAST_FRAME, [Role.FIRST_FRAME, None], True),
    (Mode.REFERENCE, [Role.REFERENCE_IMAGE, Role.REFERENCE_IMAGE], False),
    (Mode.REFERENCE, [Role.FIRST_FRAME, Role.REFERENCE_IMAGE], True),
])
def test_frame_roles_follow_the_frame_table(mode: Mode, roles: list[Role | None],
                                            refused: bool) -> None:
    from bot.models import GenerationRequest
    from bot.validation import check_capabilities

    refs = [_url(MediaKind.IMAGE, f"i{n}.png", role) for n, role in enumerate(roles)]
    req = GenerationRequest(prompt="a fox", mode=mode, references=refs)
    problems = [str(p) for p in check_capabilities(req, CAPS)]
    assert bool(problems) is refused, problems
    if refused and mode is Mode.REFERENCE:
        one(problems, "i0.png", "is marked as a frame image", "first_last_frame mode")
    elif refused and mode is Mode.FIRST_FRAME:
        one(problems, "files: first_frame on test (m) takes 1 first-frame image;",
            "mark the image as the first frame, or leave it unmarked")
    elif refused:
        one(problems, "files: first_last_frame on test (m) takes 1 first-frame image and 1 "
            "last-frame image;", "mark the images as first and last frame, or leave both "
            "unmarked")


def test_files_that_do_not_fit_the_mode_are_left_to_the_mode_check() -> None:
    """Intake's role assignment already says which modes the files fit; no second problem."""
    from bot.models import GenerationRequest
    from bot.validation import check_capabilities

    two = [_url(MediaKind.IMAGE, "a.png", Role.FIRST_FRAME),
           _url(MediaKind.IMAGE, "b.png", Role.FIRST_FRAME)]
    req = GenerationRequest(prompt="a fox", mode=Mode.FIRST_FRAME, references=two)
    assert check_capabilities(req, CAPS) == []
