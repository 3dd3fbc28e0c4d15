"""Real media made on the fly with Pillow and PyAV, so tests never need checked-in blobs."""

from __future__ import annotations

import math
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from PIL import Image


def make_image(
    path: Path, width: int = 640, height: int = 480, fmt: str = "PNG",
    color: tuple[int, int, int] = (200, 40, 40),
) -> Path:
    """A solid image with a gradient stripe, in `fmt` (PNG, JPEG, WEBP, BMP, TIFF, GIF)."""
    img = Image.new("RGB", (width, height), color)
    for x in range(0, width, max(1, width // 16)):
        for y in range(0, min(height, 8)):
            img.putpixel((x, y), (255, 255, 255))
    img.save(path, format=fmt)
    return path


def make_svg(path: Path, width: int = 640, height: int = 480, *, exported: bool = False) -> Path:
    """A small SVG drawing. `exported` adds what design tools write first (BOM, comment,
    DOCTYPE), which FFmpeg does not recognise as SVG."""
    head = '<?xml version="1.0" encoding="UTF-8"?>\n'
    if exported:
        head = ("\ufeff<!-- Generator: Adobe Illustrator 27.0, SVG Export Plug-In -->\n"
                '<!DOCTYPE svg PUBLIC "-//W3C//DTD SVG 1.1//EN" '
                '"http://www.w3.org/Graphics/SVG/1.1/DTD/svg11.dtd">\n')
    path.write_text(
        f'{head}<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}">'
        f'<rect width="{width}" height="{height}" fill="#c82828"/>'
        f'<circle cx="{width // 2}" cy="{height // 2}" r="{min(width, height) // 4}" '
        'fill="#ffffff"/></svg>\n',
        encoding="utf-8",
    )
    return path


def cut_in_half(src: Path, dest: Path) -> Path:
    """The first half of `src`'s bytes: a file cut short, as by an interrupted upload."""
    data = src.read_bytes()
    dest.write_bytes(data[: len(data) // 2])
    return dest


def make_video(
    path: Path, width: int = 864, height: int = 496, seconds: float = 3.0, fps: int = 24,
    audio: bool = False, fmt: str = "mp4", color: tuple[int, int, int] = (30, 90, 200),
    rotation: int = 0, rotate_tag: bool = False, top_color: tuple[int, int, int] | None = None,
) -> Path:
    """An H.264 clip of `seconds` at `fps`, optionally with an AAC track.

    `width` x `height` is the stored picture. `rotation` (clockwise degrees) is written as a
    display matrix, as phones do (1280x720 with 90 plays as 720x1280), or with `rotate_tag` as
    the old `rotate` tag (Matroska keeps it). `top_color` paints the top eighth of the picture
    as displayed, so a test can tell whether a reader turned the frames upright.
    """
    with av.open(str(path), "w", format=fmt) as out:
        stream = out.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"preset": "ultrafast"}
        if rotation and rotate_tag:
            stream.metadata["rotate"] = str(rotation)
        elif rotation:
            stream.set_display_rotation(-rotation)  # PyAV counts counter-clockwise
        astream = out.add_stream("aac", rate=44100, layout="mono") if audio else None
        frames = round(seconds * fps)
        base = np.zeros((height, width, 3), dtype=np.uint8)
        base[:, :] = color
        turns = rotation // 90 % 4
        for i in range(frames):
            arr = base.copy()
            x = int(i / max(1, frames - 1) * (width - 16))
            arr[:, x : x + 16] = 255
            if top_color is not None:
                shown = np.rot90(arr, k=-turns)  # np.rot90 turns counter-clockwise
                shown[: shown.shape[0] // 8] = top_color
                arr = np.ascontiguousarray(np.rot90(shown, k=turns))
            for packet in stream.encode(av.VideoFrame.from_ndarray(arr, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
        if astream is not None:
            _write_tone(out, astream, seconds)
    return path


def make_audio(path: Path, seconds: float = 3.0, fmt: str = "wav") -> Path:
    """A 440 Hz tone as WAV (PCM) or MP3."""
    codec = {"wav": "pcm_s16le", "mp3": "libmp3lame"}[fmt]
    with av.open(str(path), "w", format=fmt) as out:
        stream = out.add_stream(codec, rate=44100, layout="mono")
        assert isinstance(stream, av.audio.stream.AudioStream)
        _write_tone(out, stream, seconds)
    return path


def _write_tone(out: av.container.OutputContainer, stream: av.audio.stream.AudioStream,
                seconds: float) -> None:
    rate = 44100
    total = int(seconds * rate)
    frame_size = stream.codec_context.frame_size or 1024
    fmt = stream.codec_context.format.name if stream.codec_context.format else "s16"
    pts = 0
    while pts < total:
        n = min(frame_size, total - pts)
        t = (np.arange(pts, pts + n) / rate).astype(np.float32)
        wave = 0.3 * np.sin(2 * math.pi * 440 * t)
        if fmt.startswith("flt"):
            data = wave.astype(np.float32).reshape(1, -1)
        elif fmt.startswith("s32"):
            data = (wave * 2**31 * 0.99).astype(np.int32).reshape(1, -1)
        else:
            data = (wave * 32767).astype(np.int16).reshape(1, -1)
        frame = av.AudioFrame.from_ndarray(data, format=fmt, layout="mono")
        frame.sample_rate = rate
        frame.pts = pts
        frame.time_base = Fraction(1, rate)
        for packet in stream.encode(frame):
            out.mux(packet)
        pts += n
    for packet in stream.encode():
        out.mux(packet)


def make_noisy_video(
    path: Path, width: int = 320, height: int = 240, seconds: float = 2.0, fps: int = 24,
    audio: bool = True, seed: int = 7, rotation: int = 0,
) -> Path:
    """Random-noise frames at near-lossless quality: a clip far larger than its length needs,
    the worst case for fitting under an upload limit. `rotation` as in `make_video`."""
    rng = np.random.default_rng(seed)
    with av.open(str(path), "w", format="mp4") as out:
        stream = out.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"preset": "ultrafast", "crf": "4"}
        if rotation:
            stream.set_display_rotation(-rotation)
        astream = out.add_stream("aac", rate=44100, layout="mono") if audio else None
        for _ in range(round(seconds * fps)):
            arr = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(arr, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
        if astream is not None:
            _write_tone(out, astream, seconds)
    return path


def ramp_color(i: int) -> tuple[int, int, int]:
    """The solid colour of frame `i` in `make_color_ramp_video`: every frame differs."""
    return (min(255, 20 + i * 3), max(0, 230 - i * 3), 60 + (i * 7) % 120)


def make_color_ramp_video(
    path: Path, width: int = 320, height: int = 240, frames: int = 60, fps: int = 24,
    gop: int = 12,
) -> Path:
    """Each frame a different solid colour (`ramp_color(i)`), a keyframe every `gop` frames,
    and B-frames, so a seek lands mid-clip, decode order differs from display order, and only
    the true last frame has the last colour."""
    with av.open(str(path), "w", format="mp4") as out:
        stream = out.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"preset": "veryfast", "g": str(gop), "bf": "3", "crf": "10"}
        for i in range(frames):
            arr = np.zeros((height, width, 3), dtype=np.uint8)
            arr[:, :] = ramp_color(i)
            for packet in stream.encode(av.VideoFrame.from_ndarray(arr, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path
