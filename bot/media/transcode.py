"""Re-encode, last frame and thumbnails with PyAV (no ffmpeg binary on the host).

Results must fit a Discord upload limit, a continuation needs the true last frame, and previews
want a small JPEG. Everything streams frame by frame: a 15 s 1080p clip is never in memory.
These functions block; call them through `asyncio.to_thread` from async code.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
from PIL import Image, ImageOps

from bot.media.probe import UnreadableMedia, display_rotation, probe_file, upright
from bot.models import MediaKind

#: Share of the byte budget the container (moov, headers) and rate-control slack may take.
CONTAINER_OVERHEAD = 0.05
AUDIO_KBPS = 96
AUDIO_KBPS_TIGHT = 64
#: Below this video bitrate a clip is mush; saying "cannot fit" is more honest than posting it.
MIN_VIDEO_KBPS = 100
#: Each pass may scale the picture down by this factor when lowering the bitrate is not enough.
_SCALE_STEP = 0.75
_MAX_PASSES = 3
_PRESET = "veryfast"  # two shared cores: quality per second of CPU matters more than the last %


@dataclass(frozen=True)
class _Plan:
    video_kbps: int
    audio_kbps: int
    width: int  # as stored, before `rotation`
    height: int
    rotation: int = 0  # clockwise display rotation, carried over from the source


def fit_to_size(src: Path, dest: Path, max_bytes: int) -> bool:
    """Re-encode the MP4 `src` into `dest` so it is at most `max_bytes`; False if it cannot.

    Keeps fps, duration and audio; lowers the bitrate and, if needed, the picture size over up
    to three passes. On False no `dest` is left behind.
    """
    src, dest = Path(src), Path(dest)
    facts = probe_file(src)
    if facts.kind is not MediaKind.VIDEO:
        raise UnreadableMedia(f"{src.name} is not a video")
    tmp = dest.with_suffix(dest.suffix + ".part")
    try:
        if facts.size_bytes <= max_bytes:  # already fits: a copy loses no quality
            shutil.copyfile(src, tmp)
            os.replace(tmp, dest)
            return True
        if not facts.duration or not facts.width or not facts.height:
            return False
        # Re-encode the pictures as stored and keep the display rotation: turning every frame
        # would cost a pass over the pixels and change nothing a player shows.
        width, height = _even(facts.width), _even(facts.height)
        if facts.rotation in (90, 270):
            width, height = height, width
        share = 1.0  # the part of the computed budget the next pass aims at
        for _ in range(_MAX_PASSES):
            plan = _plan(max_bytes, facts.duration, facts.has_audio, width, height, share,
                         facts.rotation)
            if plan is None:
                return False
            _encode(src, tmp, plan)
            size = tmp.stat().st_size
            if size <= max_bytes:
                os.replace(tmp, dest)
                return True
            # Aim the next pass lower by the ratio we overshot plus a margin. A large overshoot
            # means x264 could not go that low at this size (quantiser at its ceiling), and a
            # starved bitrate looks worse at full size: either way, shrink the picture too.
            share *= max_bytes / size * 0.9
            if size > max_bytes * 1.25 or plan.video_kbps * share < MIN_VIDEO_KBPS * 2:
                width, height = _even(width * _SCALE_STEP), _even(height * _SCALE_STEP)
        return False
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)


def _plan(max_bytes: int, duration: float, has_audio: bool, width: int, height: int,
          share: float, rotation: int = 0) -> _Plan | None:
    """Bitrates for a budget: total from bytes and seconds, minus audio; None if too low."""
    total_kbps = max_bytes * 8 * (1 - CONTAINER_OVERHEAD) / duration / 1000 * share
    audio = 0
    if has_audio:
        audio = AUDIO_KBPS if total_kbps - AUDIO_KBPS >= 4 * AUDIO_KBPS else AUDIO_KBPS_TIGHT
    video = int(total_kbps - audio)
    if video < MIN_VIDEO_KBPS:
        return None
    return _Plan(video_kbps=video, audio_kbps=audio, width=width, height=height,
                 rotation=rotation)


def _even(n: float) -> int:
    return max(2, int(n) // 2 * 2)


def _encode(src: Path, out_path: Path, plan: _Plan) -> None:
    """One decode→encode pass: H.264 at a VBV-capped bitrate, AAC, same frame rate."""
    with av.open(str(src)) as inp, av.open(str(out_path), "w", format="mp4",
                                          options={"movflags": "+faststart"}) as out:
        vin = inp.streams.video[0]
        ain = inp.streams.audio[0] if inp.streams.audio and plan.audio_kbps else None
        rate = vin.average_rate or vin.guessed_rate or Fraction(24)
        vout = out.add_stream("libx264", rate=rate)
        vout.width, vout.height, vout.pix_fmt = plan.width, plan.height, "yuv420p"
        if plan.rotation:
            vout.set_display_rotation(-plan.rotation)  # PyAV counts counter-clockwise
        kbps = plan.video_kbps
        vout.bit_rate = kbps * 1000
        # maxrate/bufsize bound every second, so a noisy stretch cannot blow the budget.
        vout.options = {"preset": _PRESET, "maxrate": f"{kbps}k", "bufsize": f"{kbps}k"}
        vout.codec_context.time_base = 1 / Fraction(rate)
        aout: Any = None
        resampler: Any = None
        if ain is not None:
            sample_rate = ain.codec_context.sample_rate or 44100
            layout = "mono" if ain.codec_context.layout.nb_channels == 1 else "stereo"
            aout = out.add_stream("aac", rate=sample_rate, layout=layout)
            aout.bit_rate = plan.audio_kbps * 1000
            resampler = av.AudioResampler(format="fltp", layout=layout, rate=sample_rate)
        streams = [s for s in (vin, ain) if s is not None]
        for packet in inp.demux(*streams):
            for frame in _decode(packet):
                if packet.stream is vin:
                    for p in vout.encode(_video_frame(frame, plan)):
                        out.mux(p)
                else:
                    for resampled in resampler.resample(frame):
                        for p in aout.encode(resampled):
                            out.mux(p)
        for p in vout.encode(None):
            out.mux(p)
        if aout is not None:
            for resampled in resampler.resample(None):
                for p in aout.encode(resampled):
                    out.mux(p)
            for p in aout.encode(None):
                out.mux(p)


def _decode(packet: Any) -> Iterator[Any]:
    """Decode a packet, skipping a damaged one rather than failing the whole clip."""
    try:
        yield from packet.decode()
    except av.InvalidDataError:
        return


def _video_frame(frame: Any, plan: _Plan) -> Any:
    """Scale/convert for the encoder; keep the source timestamps so fps and duration hold."""
    out = frame.reformat(width=plan.width, height=plan.height, format="yuv420p")
    out.pts, out.time_base = frame.pts, frame.time_base
    out.pict_type = av.video.frame.PictureType.NONE  # let x264 choose; don't copy source types
    return out


def extract_last_frame(src: Path, dest: Path) -> Path:
    """The video's true last frame as a PNG (for continuing a clip from where it ended), upright
    as players show it."""
    src, dest = Path(src), Path(dest)
    found = _last_frame_from(src, seek=True)
    if found is None:  # seeking is unreliable in some files: decode the whole thing
        found = _last_frame_from(src, seek=False)
    if found is None:
        raise UnreadableMedia(f"{src.name} has no video frames we can decode")
    last, rotation = found
    _save_atomic(upright(last.to_image(), rotation), dest, "PNG")
    return dest


def _last_frame_from(src: Path, *, seek: bool) -> tuple[Any, int] | None:
    """Seek to a keyframe about a second before the end, then decode to the end.

    The backward seek lands on a keyframe at or before the target, so every later frame is
    decoded; the frame with the greatest timestamp is the last one shown. Returned with its
    clockwise display rotation.
    """
    with av.open(str(src)) as inp:
        if not inp.streams.video:
            raise UnreadableMedia(f"{src.name} has no video stream")
        stream = inp.streams.video[0]
        if seek:
            end = _end_pts(stream, inp)
            if end is None or not stream.time_base:
                return None
            target = max(0, end - int(1 / stream.time_base))
            try:
                inp.seek(target, stream=stream, backward=True, any_frame=False)
            except av.FFmpegError:
                return None
        best: Any = None
        for packet in inp.demux(stream):
            for frame in _decode(packet):
                if best is None or (frame.pts or 0) >= (best.pts or 0):
                    best = frame
        return None if best is None else (best, display_rotation(stream, best))


def _end_pts(stream: Any, container: Any) -> int | None:
    if stream.time_base is None:
        return None
    if stream.duration:
        return int((stream.start_time or 0) + stream.duration)
    if container.duration:
        return int(container.duration / av.time_base / stream.time_base)
    return None


def thumbnail(src: Path, dest: Path, max_edge: int = 480) -> Path:
    """A JPEG of the first frame of a video, or of an image, no edge above `max_edge`."""
    src, dest = Path(src), Path(dest)
    facts = probe_file(src)
    if facts.kind is MediaKind.IMAGE:
        with Image.open(src) as img:
            img.seek(0)
            picture = ImageOps.exif_transpose(img) or img
            picture.thumbnail((max_edge, max_edge))
            flat = _flatten(picture)
    elif facts.kind is MediaKind.VIDEO:
        with av.open(str(src)) as inp:
            stream = inp.streams.video[0]
            frame = next((f for p in inp.demux(stream) for f in _decode(p)), None)
            if frame is None:
                raise UnreadableMedia(f"{src.name} has no video frames we can decode")
            picture = upright(frame.to_image(), display_rotation(stream, frame))
        picture.thumbnail((max_edge, max_edge))
        flat = _flatten(picture)
    else:
        raise UnreadableMedia(f"{src.name} is audio; it has no picture")
    _save_atomic(flat, dest, "JPEG", quality=85)
    return dest


def _flatten(img: Image.Image) -> Image.Image:
    """JPEG has no alpha: put transparent pixels on white instead of black."""
    if img.mode in ("RGBA", "LA", "P", "PA"):
        rgba = img.convert("RGBA")
        canvas = Image.new("RGB", rgba.size, (255, 255, 255))
        canvas.paste(rgba, mask=rgba.getchannel("A"))
        return canvas
    return img.convert("RGB")


def _save_atomic(img: Image.Image, dest: Path, fmt: str, **params: Any) -> None:
    tmp = dest.with_suffix(dest.suffix + ".part")
    try:
        img.save(tmp, format=fmt, **params)
        os.replace(tmp, dest)
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
