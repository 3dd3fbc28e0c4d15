"""Probing real files: the bytes decide kind and format, never the name."""

from __future__ import annotations

import shutil
import zlib
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest
from PIL import Image

from bot.media import probe
from bot.media.probe import UnreadableMedia, probe_file, probe_file_async
from bot.models import MediaKind
from tests.media_factory import (
    _write_tone,
    cut_in_half,
    make_audio,
    make_image,
    make_svg,
    make_video,
)


@pytest.mark.parametrize(("fmt", "name"), [
    ("PNG", "png"), ("JPEG", "jpeg"), ("WEBP", "webp"), ("BMP", "bmp"), ("TIFF", "tiff"),
    ("GIF", "gif"),
])
def test_every_image_format(tmp_path: Path, fmt: str, name: str) -> None:
    path = make_image(tmp_path / "picture.bin", 700, 350, fmt=fmt)
    facts = probe_file(path)
    assert facts.kind is MediaKind.IMAGE
    assert facts.format == name
    assert (facts.width, facts.height) == (700, 350)
    assert facts.size_bytes == path.stat().st_size
    assert facts.duration is None and facts.fps is None


def test_png_renamed_jpg_is_png(tmp_path: Path) -> None:
    png = make_image(tmp_path / "a.png", 320, 200, fmt="PNG")
    fake = tmp_path / "holiday.jpg"
    shutil.copy(png, fake)
    facts = probe_file(fake)
    assert (facts.kind, facts.format) == (MediaKind.IMAGE, "png")


def test_animated_gif_is_an_image(tmp_path: Path) -> None:
    frames = [Image.new("RGB", (300, 300), c) for c in ((255, 0, 0), (0, 255, 0), (0, 0, 255))]
    path = tmp_path / "anim.mp4"
    frames[0].save(path, format="GIF", save_all=True, append_images=frames[1:], duration=100)
    facts = probe_file(path)
    assert (facts.kind, facts.format, facts.width) == (MediaKind.IMAGE, "gif", 300)


def test_phone_mpo_jpeg_is_reported_as_jpeg(tmp_path: Path) -> None:
    path = tmp_path / "camera.jpg"
    left, right = Image.new("RGB", (640, 480), (9, 9, 9)), Image.new("RGB", (640, 480))
    left.save(path, format="MPO", save_all=True, append_images=[right])
    with Image.open(path) as img:
        assert img.format == "MPO"  # what Pillow calls it
    assert probe_file(path).format == "jpeg"


def test_mp4_with_audio(tmp_path: Path) -> None:
    path = make_video(tmp_path / "clip.mp4", 864, 496, seconds=2.5, fps=30, audio=True)
    facts = probe_file(path)
    assert facts.kind is MediaKind.VIDEO
    assert facts.format == "mp4"
    assert (facts.width, facts.height) == (864, 496)
    assert facts.fps == 30
    assert facts.duration is not None and abs(facts.duration - 2.5) < 0.05
    assert facts.has_audio is True


def test_mov_is_mov_and_names_do_not_matter(tmp_path: Path) -> None:
    mov = make_video(tmp_path / "clip.mp4", 640, 480, seconds=2.0, fmt="mov")
    facts = probe_file(mov)
    assert (facts.kind, facts.format, facts.has_audio) == (MediaKind.VIDEO, "mov", False)
    assert facts.fps == 24
    mp4 = make_video(tmp_path / "clip.mov", 640, 480, seconds=2.0, fmt="mp4")
    assert probe_file(mp4).format == "mp4"


def test_3gp_and_mkv_and_webm_named_honestly(tmp_path: Path) -> None:
    assert probe_file(make_video(tmp_path / "a.mp4", 320, 240, 1.0, fmt="3gp")).format == "3gp"
    assert probe_file(make_video(tmp_path / "b.mp4", 320, 240, 1.0,
                                 fmt="matroska")).format == "mkv"
    webm = tmp_path / "c.mp4"
    with av.open(str(webm), "w", format="webm") as out:
        stream = out.add_stream("libvpx-vp9", rate=24)
        stream.width, stream.height, stream.pix_fmt = 320, 240, "yuv420p"
        for _ in range(24):
            frame = av.VideoFrame.from_ndarray(np.zeros((240, 320, 3), np.uint8), format="rgb24")
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    facts = probe_file(webm)
    assert (facts.kind, facts.format) == (MediaKind.VIDEO, "webm")
    assert facts.duration is not None and abs(facts.duration - 1.0) < 0.1



@pytest.mark.parametrize(("rotation", "tag", "fmt"), [
    (90, False, "mp4"), (270, False, "mp4"), (90, False, "mov"), (90, True, "matroska"),
])
def test_phone_portrait_clip_is_measured_as_shown(tmp_path: Path, rotation: int, tag: bool,
                                                  fmt: str) -> None:
    # Stored 1280x720 with a display rotation (or the old `rotate` tag): players show 720x1280.
    path = make_video(tmp_path / "phone.mp4", 1280, 720, seconds=1.0, fmt=fmt,
                      rotation=rotation, rotate_tag=tag)
    facts = probe_file(path)
    assert (facts.kind, facts.width, facts.height) == (MediaKind.VIDEO, 720, 1280)
    assert facts.rotation == rotation


def test_upside_down_and_upright_clips_keep_their_size(tmp_path: Path) -> None:
    flipped = probe_file(make_video(tmp_path / "a.mp4", 640, 480, 1.0, rotation=180))
    assert (flipped.width, flipped.height, flipped.rotation) == (640, 480, 180)
    upright = probe_file(make_video(tmp_path / "b.mp4", 720, 1280, 1.0))
    assert (upright.width, upright.height, upright.rotation) == (720, 1280, 0)

def test_m4a_audio_only_is_audio(tmp_path: Path) -> None:
    path = tmp_path / "voice.mp4"
    with av.open(str(path), "w", format="mp4") as out:
        stream = out.add_stream("aac", rate=44100, layout="mono")
        _write_tone(out, stream, 2.5)
    facts = probe_file(path)
    assert (facts.kind, facts.format) == (MediaKind.AUDIO, "m4a")
    assert facts.duration is not None and abs(facts.duration - 2.5) < 0.05
    assert facts.width is None and facts.has_audio is False


@pytest.mark.parametrize("fmt", ["wav", "mp3"])
def test_wav_and_mp3(tmp_path: Path, fmt: str) -> None:
    path = make_audio(tmp_path / "sound.mp4", seconds=3.0, fmt=fmt)
    facts = probe_file(path)
    assert (facts.kind, facts.format) == (MediaKind.AUDIO, fmt)
    assert facts.duration is not None and abs(facts.duration - 3.0) < 0.1


@pytest.mark.parametrize(("fmt", "codec", "rate"), [
    ("flac", "flac", 44100), ("ogg", "libopus", 48000),
])
def test_other_audio_reported_by_name(tmp_path: Path, fmt: str, codec: str, rate: int) -> None:
    path = tmp_path / "sound.wav"
    with av.open(str(path), "w", format=fmt) as out:
        stream = out.add_stream(codec, rate=rate, layout="mono")
        assert isinstance(stream, av.audio.stream.AudioStream)
        _write_tone(out, stream, 2.0)
    facts = probe_file(path)
    assert (facts.kind, facts.format) == (MediaKind.AUDIO, fmt)


def test_text_renamed_mp4_is_unreadable(tmp_path: Path) -> None:
    path = tmp_path / "movie.mp4"
    path.write_text("this is not a movie\n" * 200)
    with pytest.raises(UnreadableMedia, match="is not an image, video or audio file we can read"):
        probe_file(path)


def test_ansi_text_is_not_media(tmp_path: Path) -> None:
    # FFmpeg's "tty" demuxer will happily "play" text files; they are still not media.
    path = tmp_path / "notes.txt"
    path.write_text("\x1b[31mred\x1b[0m plain words\n" * 300)
    with pytest.raises(UnreadableMedia):
        probe_file(path)


@pytest.mark.parametrize("content", [b"", bytes(range(256)) * 400])
def test_empty_and_random_bytes(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "x.png"
    path.write_bytes(content)
    with pytest.raises(UnreadableMedia):
        probe_file(path)


def test_truncated_mp4_is_unreadable(tmp_path: Path) -> None:
    whole = make_video(tmp_path / "whole.mp4", 320, 240, seconds=2.0)
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    with pytest.raises(UnreadableMedia):
        probe_file(cut)


def test_png_with_broken_checksum_is_damaged(tmp_path: Path) -> None:
    data = bytearray(make_image(tmp_path / "a.png", 320, 200).read_bytes())
    idat = data.index(b"IDAT")
    length = int.from_bytes(data[idat - 4 : idat], "big")
    data[idat + 4] ^= 0xFF  # flip a data byte; the chunk's CRC no longer matches
    assert zlib.crc32(bytes(data[idat : idat + 4 + length])) != int.from_bytes(
        data[idat + 4 + length : idat + 8 + length], "big")
    bad = tmp_path / "bad.png"
    bad.write_bytes(bytes(data))
    with pytest.raises(UnreadableMedia, match="damaged png"):
        probe_file(bad)


def photo_like_jpeg(path: Path) -> Path:
    """A 640x480 JPEG with real detail, so half of its bytes is half of its picture."""
    rng = np.random.default_rng(3)
    Image.fromarray(rng.integers(0, 256, (480, 640, 3), dtype=np.uint8)).save(path, "JPEG")
    return path


@pytest.mark.parametrize("source", ["factory", "photo"])
def test_truncated_jpeg_is_damaged(tmp_path: Path, source: str) -> None:
    if source == "factory":
        whole = make_image(tmp_path / "whole.jpg", 640, 480, fmt="JPEG")
    else:
        whole = photo_like_jpeg(tmp_path / "whole.jpg")
    assert probe_file(whole).format == "jpeg"
    cut = cut_in_half(whole, tmp_path / "holiday.jpg")
    with pytest.raises(UnreadableMedia, match=r"holiday\.jpg is a damaged jpeg image") as info:
        probe_file(cut)
    assert info.value.hint is not None and "damaged JPEG" in info.value.hint


def test_truncated_png_is_damaged(tmp_path: Path) -> None:
    cut = cut_in_half(make_image(tmp_path / "a.png", 640, 480), tmp_path / "cut.png")
    with pytest.raises(UnreadableMedia, match="damaged png"):
        probe_file(cut)


def test_images_above_the_decode_limit_are_measured_not_decoded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Decoding a 50-megapixel image would take hundreds of MB; its edges get it refused anyway.
    monkeypatch.setattr(probe, "_MAX_DECODE_PIXELS", 640 * 480 - 1)
    cut = cut_in_half(photo_like_jpeg(tmp_path / "whole.jpg"), tmp_path / "cut.jpg")
    facts = probe_file(cut)
    assert (facts.format, facts.width, facts.height) == ("jpeg", 640, 480)


@pytest.mark.parametrize(("name", "exported"), [
    ("logo.svg", False), ("logo.png", False), ("drawing.svg", True), ("drawing.png", True),
])
def test_svg_is_refused_with_a_hint(tmp_path: Path, name: str, exported: bool) -> None:
    path = make_svg(tmp_path / name, exported=exported)
    with pytest.raises(UnreadableMedia,
                       match=r"not an image we can read \(SVG is not supported; export PNG\)"
                       ) as info:
        probe_file(path)
    assert info.value.hint is not None and "SVG" in info.value.hint and "PNG" in info.value.hint


def test_unknown_bytes_carry_no_hint(tmp_path: Path) -> None:
    path = tmp_path / "movie.mp4"
    path.write_text("<html><body>not a movie</body></html>\n" * 100)
    with pytest.raises(UnreadableMedia, match=probe._NOT_MEDIA) as info:
        probe_file(path)
    assert info.value.hint is None

def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(UnreadableMedia, match="cannot be opened"):
        probe_file(tmp_path / "nope.mp4")


async def test_probe_file_async(tmp_path: Path) -> None:
    facts = await probe_file_async(make_video(tmp_path / "v.mp4", 320, 240, 1.0, audio=True))
    assert (facts.kind, facts.format, facts.has_audio) == (MediaKind.VIDEO, "mp4", True)


def _remux(src: Path, dest: Path, movflags: str) -> Path:
    """`src`'s packets in a new MP4 written with `movflags` (moov first, or fragments)."""
    with av.open(str(src)) as inp, av.open(str(dest), "w", format="mp4",
                                            options={"movflags": movflags}) as out:
        streams = {s.index: out.add_stream_from_template(s) for s in inp.streams}
        for packet in inp.demux():
            if packet.dts is None:
                continue
            packet.stream = streams[packet.stream.index]
            out.mux(packet)
    return dest


def _iso_bmff_files(tmp_path: Path) -> dict[str, Path]:
    clip = make_video(tmp_path / "clip.mp4", 640, 360, 2.0, audio=True)
    voice = tmp_path / "voice.m4a"
    with av.open(str(voice), "w", format="mp4") as out:
        _write_tone(out, out.add_stream("aac", rate=44100, layout="mono"), 1.5)
    return {
        "mp4 with audio, moov last": clip,
        "mp4, moov first": _remux(clip, tmp_path / "fast.mp4", "+faststart"),
        "fragmented mp4": _remux(clip, tmp_path / "frag.mp4", "frag_keyframe+empty_moov"),
        "mov": make_video(tmp_path / "clip.mov", 320, 240, 1.0, fmt="mov"),
        "3gp": make_video(tmp_path / "clip.3gp", 320, 240, 1.0, fmt="3gp"),
        "portrait phone clip": make_video(tmp_path / "phone.mp4", 1280, 720, 1.0, rotation=90),
        "m4a": voice,
    }


def test_an_iso_bmff_file_is_measured_as_the_full_stream_search_measures_it(
        tmp_path: Path) -> None:
    """The quick open of MP4-family files (`probe._QUICK_SEARCH`) answers for the common
    files, and every answer equals the one FFmpeg's full stream search gives."""
    quick_answers = 0
    for name, path in _iso_bmff_files(tmp_path).items():
        size, head = path.stat().st_size, path.read_bytes()[:probe._HEAD]
        full = probe._open_and_measure(path, size, head, None)
        assert probe_file(path) == full, name
        try:
            quick = probe._open_and_measure(path, size, head, probe._QUICK_SEARCH)
        except probe._SearchNeeded:
            continue  # the full search ran instead: the answer above is the full one
        assert quick == full, name
        quick_answers += 1
    assert quick_answers >= 5


def test_a_quick_open_that_misses_a_fact_falls_back_to_the_full_search(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Were FFmpeg's header read to leave the frame rate out, the file is opened again with the
    full search, and its facts are the full search's."""
    path = make_video(tmp_path / "clip.mp4", 320, 240, 1.0, audio=True)
    opened: list[object] = []
    real_open, real_fps = av.open, probe._fps

    def counting_open(*args: Any, **kwargs: Any) -> Any:
        opened.append(kwargs.get("options"))
        return real_open(*args, **kwargs)

    def fps_only_after_full_search(stream: object) -> float | None:
        return real_fps(stream) if opened[-1] is None else None

    monkeypatch.setattr(probe.av, "open", counting_open)
    monkeypatch.setattr(probe, "_fps", fps_only_after_full_search)
    facts = probe_file(path)
    assert opened == [probe._QUICK_SEARCH, None]
    assert facts.fps == 24.0 and facts.duration is not None


def test_the_quick_open_reads_the_named_file_and_nothing_else(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The quick open hands FFmpeg the file's own path: a name that looks like a pattern, a
    query or another protocol is read as the plain file it is, in one open."""
    plain = make_video(tmp_path / "clip.mp4", 320, 240, 1.0, audio=True)
    odd = tmp_path / "concat:clip%03d?x=1#y.mp4"
    odd.write_bytes(plain.read_bytes())
    (tmp_path / "clip000.mp4").write_bytes(b"not this one")  # what a pattern would open
    opened: list[object] = []
    real_open = av.open

    def counting_open(*args: Any, **kwargs: Any) -> Any:
        opened.append(args[0])
        return real_open(*args, **kwargs)

    monkeypatch.setattr(probe.av, "open", counting_open)
    assert probe_file(odd) == probe_file(plain)
    assert opened[0] == f"file:{odd}" and len(opened) == 2  # one open per probe
    # A relative name is made absolute, not resolved: a link is opened as the kernel finds it.
    (tmp_path / "linked").mkdir()
    (tmp_path / "linked" / "to.mp4").symlink_to(plain)
    monkeypatch.chdir(tmp_path)
    assert probe_file(Path("linked/to.mp4")) == probe_file(plain)
    assert opened[2] == f"file:{Path.cwd() / 'linked' / 'to.mp4'}" and len(opened) == 4
