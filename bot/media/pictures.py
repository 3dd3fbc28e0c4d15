"""The local renderer's pictures: what each frame shows, and the overlays drawn on it.

The picture follows the inputs the way the real model is asked to: the first frame is the
`first_frame` image, the last one is the `last_frame` image, reference images and videos are
shown in order (cross-faded clips), and a text-only request draws its prompt over a moving
gradient. Everything seed-dependent comes from the one `numpy` generator bot/media/render.py
seeds. Frames are streamed: at most a few are held at a time.
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Generator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av
import numpy as np
from PIL import Image, ImageDraw, ImageFont, ImageOps

from bot.media.probe import display_rotation, upright
from bot.models import GenerationRequest, MediaKind, Reference, Role

FPS = 24
Frame = np.ndarray  # (height, width, 3) uint8, RGB


class RenderError(Exception):
    """An input could not be read or the output could not be written."""


def picture(
    request: GenerationRequest, size: tuple[int, int], total: int, rng: np.random.Generator
) -> Generator[Frame, None, None]:
    """Exactly `total` frames for the request's inputs."""
    clips = _clips(request, rng)
    if not clips:
        return _prompt_frames(request.prompt, size, total, rng)
    first_last = len(clips) == 2 and clips[0].role is Role.FIRST_FRAME and (
        clips[1].role is Role.LAST_FRAME
    )
    # A first+last request is one long morph; a montage uses short cross-fades between clips.
    overlap = total // 2 if first_last else min(12, total // (2 * len(clips)))
    return _sequence(clips, size, total, overlap)


@dataclass(frozen=True)
class _Clip:
    kind: MediaKind
    path: Path
    role: Role | None
    zoom_from: float = 1.0
    zoom_to: float = 1.0
    pan: tuple[float, float] = (0.0, 0.0)


def local_path(ref: Reference) -> Path:
    path = Path(ref.local_path or ref.source)
    if not path.is_file():
        raise RenderError(f"{ref.name}: the local renderer needs the file on disk, not {path}")
    return path


def _clips(request: GenerationRequest, rng: np.random.Generator) -> list[_Clip]:
    """Pictured inputs in order: first frame, reference images and videos, last frame.

    Still images get a slow seed-dependent push-in or pull-out (none with `camera_fixed`); the
    first frame starts unzoomed and the last frame ends unzoomed so the ends are the images.
    """
    move = not request.camera_fixed
    zoom = 1.12 if move else 1.0

    def pan() -> tuple[float, float]:
        dx, dy = rng.uniform(-1.0, 1.0, size=2)
        return (float(dx), float(dy)) if move else (0.0, 0.0)

    clips: list[_Clip] = []
    firsts = request.with_role(Role.FIRST_FRAME)
    if firsts:
        clips.append(_Clip(MediaKind.IMAGE, local_path(firsts[0]), Role.FIRST_FRAME,
                           1.0, zoom, pan()))
    for ref in request.references:
        if ref.role in (Role.FIRST_FRAME, Role.LAST_FRAME) or ref.kind is MediaKind.AUDIO:
            continue
        if ref.kind is MediaKind.IMAGE:
            inward = bool(rng.integers(0, 2))
            z0, z1 = (1.0, zoom) if inward else (zoom, 1.0)
            clips.append(_Clip(MediaKind.IMAGE, local_path(ref), ref.role, z0, z1, pan()))
        else:
            clips.append(_Clip(MediaKind.VIDEO, local_path(ref), ref.role))
    lasts = request.with_role(Role.LAST_FRAME)
    if lasts:
        clips.append(_Clip(MediaKind.IMAGE, local_path(lasts[0]), Role.LAST_FRAME,
                           zoom, 1.0, pan()))
    return clips


def _sequence(
    clips: list[_Clip], size: tuple[int, int], total: int, overlap: int
) -> Generator[Frame, None, None]:
    """Play the clips back to back, cross-fading `overlap` frames at each join.

    Blend weights never reach 0 or 1, so the very first and last frames are pure clip frames.
    """
    joins = len(clips) - 1
    span = total + overlap * joins
    lengths = [span // len(clips) + (1 if i < span % len(clips) else 0) for i in range(len(clips))]
    gens = [_clip_frames(c, size, n) for c, n in zip(clips, lengths, strict=True)]
    try:
        for i, gen in enumerate(gens):
            head = overlap if i > 0 else 0
            tail = overlap if i < joins else 0
            for _ in range(lengths[i] - head - tail):
                yield next(gen)
            if tail:
                following = gens[i + 1]
                for j in range(tail):
                    a = (j + 1) / (tail + 1)
                    yield _blend(next(gen), next(following), a)
    finally:
        for gen in gens:
            gen.close()


def _blend(a: Frame, b: Frame, weight: float) -> Frame:
    mixed = a.astype(np.float32) * (1.0 - weight) + b.astype(np.float32) * weight
    return np.rint(mixed).astype(np.uint8)


def _clip_frames(
    clip: _Clip, size: tuple[int, int], count: int
) -> Generator[Frame, None, None]:
    if clip.kind is MediaKind.VIDEO:
        return _video_frames(clip.path, size, count)
    return _still_frames(clip, size, count)


def fit_cover(image: Image.Image, size: tuple[int, int]) -> Image.Image:
    """Scale and centre-crop to fill `size` (the same fit for every pictured input)."""
    return ImageOps.fit(image.convert("RGB"), size, method=Image.Resampling.BILINEAR)


def load_image(path: Path) -> Image.Image:
    """An image as the gateways see it: EXIF orientation applied, first frame of a GIF, RGB."""
    try:
        with Image.open(path) as img:
            img.seek(0)
            return ImageOps.exif_transpose(img).convert("RGB")
    except (OSError, ValueError) as exc:
        raise RenderError(f"cannot read image {path.name}: {exc}") from exc


def _still_frames(
    clip: _Clip, size: tuple[int, int], count: int
) -> Generator[Frame, None, None]:
    base = fit_cover(load_image(clip.path), size)
    base_arr = np.asarray(base, dtype=np.uint8)
    width, height = size
    for k in range(count):
        u = k / (count - 1) if count > 1 else 0.0
        ease = 0.5 - 0.5 * math.cos(math.pi * u)
        z = clip.zoom_from + (clip.zoom_to - clip.zoom_from) * ease
        if z <= 1.0:
            yield base_arr
            continue
        bw, bh = width / z, height / z
        cx = width / 2 + clip.pan[0] * (width - bw) / 2
        cy = height / 2 + clip.pan[1] * (height - bh) / 2
        box = (cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2)
        yield np.asarray(base.resize(size, Image.Resampling.BILINEAR, box=box), dtype=np.uint8)


def _video_frames(
    path: Path, size: tuple[int, int], count: int
) -> Generator[Frame, None, None]:
    """`count` frames at 24 fps sampled by timestamp from a video, looping when it ends.

    Decodes frame by frame; only the frame on screen is kept, and it is scaled only when shown.
    Frames are turned upright first: a phone's portrait clip is stored landscape.
    """
    emitted = 0
    while emitted < count:
        shown = 0  # ticks emitted in this pass over the file
        try:
            with av.open(str(path)) as src:
                stream = src.streams.video[0]
                rate = float(stream.average_rate or stream.guessed_rate or FPS)
                start: float | None = None
                held: Any = None
                held_arr: Frame | None = None
                t = 0.0
                for frame in src.decode(stream):
                    t = float(frame.time) if frame.time is not None else shown / FPS
                    if start is None:
                        start = t
                    t -= start
                    while held is not None and emitted < count and shown / FPS < t:
                        if held_arr is None:
                            held_arr = _fit_frame(held, stream, size)
                        yield held_arr
                        emitted += 1
                        shown += 1
                    if emitted >= count:
                        return
                    held, held_arr = frame, None
                if held is None:
                    raise RenderError(f"video {path.name} has no frames")
                end = t + 1.0 / rate
                while emitted < count and (shown == 0 or shown / FPS < end):
                    if held_arr is None:
                        held_arr = _fit_frame(held, stream, size)
                    yield held_arr
                    emitted += 1
                    shown += 1
        except av.FFmpegError as exc:
            raise RenderError(f"cannot read video {path.name}: {exc}") from exc


def _fit_frame(frame: Any, stream: Any, size: tuple[int, int]) -> Frame:
    picture = upright(frame.to_image(), display_rotation(stream, frame))
    return np.asarray(fit_cover(picture, size), dtype=np.uint8)


def _prompt_frames(
    prompt: str, size: tuple[int, int], total: int, rng: np.random.Generator
) -> Generator[Frame, None, None]:
    """The prompt, wrapped, over a slowly turning two-colour gradient chosen by the seed."""
    width, height = size
    c1 = rng.uniform(20, 235, size=3).astype(np.float32)
    c2 = rng.uniform(20, 235, size=3).astype(np.float32)
    angle0 = float(rng.uniform(0, 2 * math.pi))
    spin = float(rng.uniform(0.15, 0.45)) * (1 if rng.integers(0, 2) else -1)
    wave = float(rng.uniform(2.0, 5.0))
    # The gradient is smooth, so it is computed at a quarter of the size and scaled up: the
    # picture is the same and a frame costs a sixteenth.
    small = (max(2, width // 4), max(2, height // 4))
    ys, xs = np.mgrid[0 : small[1], 0 : small[0]].astype(np.float32)
    xs = (xs - small[0] / 2) / max(small)
    ys = (ys - small[1] / 2) / max(small)
    overlay = _text_overlay(prompt.strip(), size)
    for k in range(total):
        t = k / FPS
        angle = angle0 + spin * t
        proj = xs * math.cos(angle) + ys * math.sin(angle)
        mix = 0.5 + 0.5 * np.sin((proj * wave + t * 0.35) * math.pi)
        arr = np.rint(c1 + (c2 - c1) * mix[..., None]).astype(np.uint8)
        big = Image.fromarray(arr).resize(size, Image.Resampling.BILINEAR)
        frame = np.asarray(big, dtype=np.uint8)
        yield overlay.apply(frame) if overlay is not None else frame


# ---------------------------------------------------------------------------------------------
# Overlays (text, watermark)


@dataclass(frozen=True)
class _Overlay:
    """A pre-rendered RGBA patch blended onto every frame at a fixed place."""

    x: int
    y: int
    rgb: np.ndarray  # float32 (h, w, 3), premultiplied
    alpha: np.ndarray  # float32 (h, w, 1)

    def apply(self, frame: Frame) -> Frame:
        out = frame.copy()
        h, w = self.alpha.shape[:2]
        region = out[self.y : self.y + h, self.x : self.x + w].astype(np.float32)
        mixed = region * (1.0 - self.alpha) + self.rgb
        out[self.y : self.y + h, self.x : self.x + w] = np.rint(mixed).astype(np.uint8)
        return out


def _overlay_from(image: Image.Image, x: int, y: int) -> _Overlay:
    rgba = np.asarray(image, dtype=np.float32) / np.float32(255.0)
    alpha = rgba[..., 3:4]
    return _Overlay(x, y, rgba[..., :3] * alpha * 255.0, alpha)


def _font(px: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=px)
    except (OSError, ImportError, TypeError):  # Pillow without FreeType: the bitmap font
        return ImageFont.load_default()


def _text_overlay(text: str, size: tuple[int, int]) -> _Overlay | None:
    if not text:
        return None
    width, height = size
    px = max(14, min(width, height) // 18)
    font = _font(px)
    probe = ImageDraw.Draw(Image.new("L", (1, 1)))
    margin = px
    box_w = width - 4 * margin
    char_w = max(1.0, probe.textlength("abcdefghijklmnopqrstuvwxyz", font=font) / 26)
    lines = textwrap.wrap(" ".join(text.split()), width=max(8, int(box_w / char_w)))
    line_h = int(px * 1.3)
    max_lines = max(1, (height - 4 * margin) // line_h)
    if len(lines) > max_lines:
        lines = lines[:max_lines]
        lines[-1] = lines[-1][: max(0, len(lines[-1]) - 1)] + "…"
    text_w = int(max(probe.textlength(line, font=font) for line in lines))
    pad = margin // 2
    patch_w = min(width - 2 * margin, text_w + 2 * pad)
    patch_h = min(height - 2 * margin, line_h * len(lines) + 2 * pad)
    patch = Image.new("RGBA", (patch_w, patch_h), (0, 0, 0, 110))
    draw = ImageDraw.Draw(patch)
    for i, line in enumerate(lines):
        lw = probe.textlength(line, font=font)
        draw.text(((patch_w - lw) / 2, pad + i * line_h), line, font=font,
                  fill=(255, 255, 255, 255))
    return _overlay_from(patch, (width - patch_w) // 2, (height - patch_h) // 2)


def watermark(size: tuple[int, int]) -> _Overlay:
    """A small corner mark, as the gateways add when `watermark` is on."""
    width, height = size
    px = max(10, min(width, height) // 40)
    font = _font(px)
    label = "AI generated"
    probe = ImageDraw.Draw(Image.new("L", (1, 1)))
    tw = int(probe.textlength(label, font=font)) + px
    th = int(px * 1.6)
    patch = Image.new("RGBA", (tw, th), (0, 0, 0, 90))
    ImageDraw.Draw(patch).text((px // 2, px // 4), label, font=font, fill=(255, 255, 255, 200))
    return _overlay_from(patch, width - tw - px, height - th - px)
