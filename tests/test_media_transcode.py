"""Fit-to-size, last frame and thumbnails on real clips made by the media factory."""

from __future__ import annotations

from pathlib import Path

import av
import pytest
from PIL import Image

from bot.media.probe import UnreadableMedia, probe_file
from bot.media.transcode import extract_last_frame, fit_to_size, thumbnail
from tests.media_factory import (
    make_audio,
    make_color_ramp_video,
    make_image,
    make_noisy_video,
    make_video,
    ramp_color,
)


def audio_seconds(path: Path) -> float:
    with av.open(str(path)) as c:
        s = c.streams.audio[0]
        assert s.duration is not None and s.time_base is not None
        return float(s.duration * s.time_base)


def close(a: tuple[int, ...], b: tuple[int, ...]) -> int:
    return max(abs(x - y) for x, y in zip(a, b, strict=True))


@pytest.fixture(scope="module")
def noisy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_noisy_video(tmp_path_factory.mktemp("noisy") / "noisy.mp4", seconds=2.0)


def test_fit_to_size_brings_a_noisy_clip_under_the_limit(noisy: Path, tmp_path: Path) -> None:
    src = probe_file(noisy)
    limit = 150_000
    assert src.size_bytes > 10 * limit
    dest = tmp_path / "fit.mp4"
    assert fit_to_size(noisy, dest, limit) is True
    out = probe_file(dest)
    assert out.format == "mp4"
    assert out.size_bytes <= limit
    assert out.fps == src.fps == 24
    assert out.duration is not None and src.duration is not None
    assert abs(out.duration - src.duration) <= 0.1
    assert out.has_audio
    assert abs(audio_seconds(dest) - src.duration) <= 0.1
    assert (out.width, out.height) == (src.width, src.height)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fit.mp4"]


def test_fit_to_size_tight_limit_scales_down_with_even_edges(noisy: Path,
                                                              tmp_path: Path) -> None:
    dest = tmp_path / "fit.mp4"
    assert fit_to_size(noisy, dest, 60_000) is True
    out = probe_file(dest)
    assert out.size_bytes <= 60_000
    assert out.fps == 24 and out.has_audio
    assert out.duration is not None and abs(out.duration - 2.0) <= 0.1
    assert out.width is not None and out.height is not None
    assert out.width % 2 == 0 and out.height % 2 == 0


def test_fit_to_size_without_audio_keeps_the_source_fps(tmp_path: Path) -> None:
    src = make_noisy_video(tmp_path / "silent.mp4", seconds=1.0, fps=30, audio=False)
    dest = tmp_path / "fit.mp4"
    assert fit_to_size(src, dest, 80_000) is True
    out = probe_file(dest)
    assert out.size_bytes <= 80_000 and not out.has_audio
    assert out.fps == 30
    assert out.duration is not None and abs(out.duration - 1.0) <= 0.1


def test_fit_to_size_that_cannot_fit_leaves_nothing(noisy: Path, tmp_path: Path) -> None:
    dest = tmp_path / "fit.mp4"
    # 20 kB for 2 s is ~76 kb/s in total: below the floor for a watchable video.
    assert fit_to_size(noisy, dest, 20_000) is False
    assert list(tmp_path.iterdir()) == []


def test_fit_to_size_already_small_is_copied(tmp_path: Path) -> None:
    src = make_video(tmp_path / "small.mp4", 320, 240, seconds=1.0)
    dest = tmp_path / "out.mp4"
    assert fit_to_size(src, dest, src.stat().st_size) is True
    assert dest.read_bytes() == src.read_bytes()


def test_fit_to_size_refuses_non_video(tmp_path: Path) -> None:
    src = make_audio(tmp_path / "a.wav", seconds=1.0)
    with pytest.raises(UnreadableMedia):
        fit_to_size(src, tmp_path / "out.mp4", 10)


def test_extract_last_frame_is_the_true_last_frame(tmp_path: Path) -> None:
    frames = 60
    src = make_color_ramp_video(tmp_path / "ramp.mp4", frames=frames, gop=12)
    dest = extract_last_frame(src, tmp_path / "last.png")
    assert probe_file(dest).format == "png"
    with Image.open(dest) as img:
        assert img.size == (320, 240)
        pixel = img.convert("RGB").getpixel((160, 120))
    assert isinstance(pixel, tuple)
    last, before = ramp_color(frames - 1), ramp_color(frames - 2)
    assert close(pixel, last) <= 3
    assert close(pixel, last) < close(pixel, before)


def test_extract_last_frame_single_gop(tmp_path: Path) -> None:
    # One keyframe for the whole clip: the backward seek lands at the start, decoding runs on.
    src = make_color_ramp_video(tmp_path / "ramp.mp4", frames=30, gop=250)
    with Image.open(extract_last_frame(src, tmp_path / "last.png")) as img:
        pixel = img.convert("RGB").getpixel((10, 10))
    assert isinstance(pixel, tuple)
    assert close(pixel, ramp_color(29)) <= 3


def test_thumbnail_of_video_is_its_first_frame(tmp_path: Path) -> None:
    src = make_color_ramp_video(tmp_path / "ramp.mp4", width=960, height=540, frames=12)
    dest = thumbnail(src, tmp_path / "thumb.jpg", max_edge=480)
    facts = probe_file(dest)
    assert (facts.format, facts.width, facts.height) == ("jpeg", 480, 270)
    with Image.open(dest) as img:
        pixel = img.convert("RGB").getpixel((240, 135))
    assert isinstance(pixel, tuple)
    assert close(pixel, ramp_color(0)) <= 6



YELLOW = (250, 200, 0)


def top_and_side(img: Image.Image) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Colours at the middle of the top edge and at the middle of the left edge."""
    rgb = img.convert("RGB")
    top, side = rgb.getpixel((rgb.width // 2, 2)), rgb.getpixel((2, rgb.height // 2))
    assert isinstance(top, tuple) and isinstance(side, tuple)
    return top, side


@pytest.fixture
def phone_clip(tmp_path: Path) -> Path:
    """Stored 640x360 with a 90° display rotation: shown 360x640, a yellow band on top."""
    return make_video(tmp_path / "phone.mp4", 640, 360, seconds=2.0, rotation=90,
                      top_color=YELLOW)


def test_last_frame_and_thumbnail_of_a_rotated_clip_are_upright(phone_clip: Path,
                                                                 tmp_path: Path) -> None:
    with Image.open(extract_last_frame(phone_clip, tmp_path / "last.png")) as img:
        assert img.size == (360, 640)
        top, side = top_and_side(img)
    assert close(top, YELLOW) <= 12 and close(side, YELLOW) > 60
    with Image.open(thumbnail(phone_clip, tmp_path / "thumb.jpg", max_edge=320)) as img:
        assert img.size == (180, 320)
        top, side = top_and_side(img)
    assert close(top, YELLOW) <= 16 and close(side, YELLOW) > 60


def test_fit_to_size_keeps_a_rotated_clip_portrait(tmp_path: Path) -> None:
    src = make_noisy_video(tmp_path / "phone.mp4", 640, 480, seconds=2.0, audio=False,
                           rotation=90)
    facts = probe_file(src)
    assert (facts.width, facts.height, facts.rotation) == (480, 640, 90)
    dest = tmp_path / "fit.mp4"
    assert fit_to_size(src, dest, facts.size_bytes // 4) is True
    out = probe_file(dest)
    assert out.size_bytes <= facts.size_bytes // 4
    assert out.rotation == 90 and out.height is not None and out.width is not None
    assert out.height > out.width  # still shown portrait, not stretched or turned

def test_thumbnail_of_transparent_image_is_flattened_on_white(tmp_path: Path) -> None:
    src = tmp_path / "logo.png"
    Image.new("RGBA", (1200, 800), (0, 0, 0, 0)).save(src)
    dest = thumbnail(src, tmp_path / "thumb.jpg", max_edge=300)
    with Image.open(dest) as img:
        assert img.format == "JPEG" and img.size == (300, 200)
        pixel = img.convert("RGB").getpixel((150, 100))
    assert isinstance(pixel, tuple)
    assert min(pixel) >= 250


def test_thumbnail_keeps_small_images_small(tmp_path: Path) -> None:
    src = make_image(tmp_path / "small.webp", 200, 120, fmt="WEBP")
    facts = probe_file(thumbnail(src, tmp_path / "t.jpg"))
    assert (facts.format, facts.width, facts.height) == ("jpeg", 200, 120)


def test_thumbnail_of_audio_is_refused(tmp_path: Path) -> None:
    with pytest.raises(UnreadableMedia, match="no picture"):
        thumbnail(make_audio(tmp_path / "a.mp3", 1.0, "mp3"), tmp_path / "t.jpg")
    assert not (tmp_path / "t.jpg").exists()
