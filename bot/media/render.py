"""The local renderer: a real, deterministic MP4 made from a request, with no network and no GPU.

The `local` provider uses it so the bot, its demos, the end-to-end tests and the benchmarks run
without a paid key, and so the rest of the pipeline (download, probe, transcode, delivery) handles
a real H.264/AAC file of the exact size, frame count and duration a gateway would return.

What each frame shows is bot/media/pictures.py's, the sound bot/media/sound.py's; this module
encodes them. Everything seed-dependent comes from one `numpy` generator seeded with `seed`, and
every step is integer/float arithmetic without threads of our own, and the encoder is set up to
be deterministic (`_X264_OPTIONS`), so the same request and seed give the same MP4, byte for byte.

Frames are streamed: at most a few frames (and one decoded frame per reference video) are held
in memory at a time, whatever the duration or resolution.
"""

from __future__ import annotations

from collections.abc import Callable
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
from PIL import Image

from bot.media.pictures import FPS, Frame, RenderError, fit_cover, local_path, picture, watermark
from bot.media.sound import AUDIO_RATE, RefAudio, Tone
from bot.models import GenerationRequest

__all__ = ["FPS", "RenderCancelled", "RenderError", "fit_cover", "render_video"]

_TIME_BASE = Fraction(1, FPS)
#: x264 settings that make the file a function of the frames alone. With the macroblock tree on,
#: x264's AVX-512 code gave a different file from identical frames depending on what the heap
#: last held, and its SIMD float maths differ between AVX-512 and AVX2 machines; with several
#: threads the file also depends on the thread count, which x264 takes from the core count.
#: One thread and no macroblock tree give the same bytes with AVX-512, AVX2 or SSE4.2. Without
#: the tree the same CRF spends far more bits on smooth gradients for no visible gain, so the
#: CRF is 23 instead of 20: files about the size they were, error within a few percent.
_X264_OPTIONS = {"preset": "veryfast", "crf": "23", "x264-params": "threads=1:mbtree=0"}

ProgressHook = Callable[[int, int], None]
StopHook = Callable[[], bool]


class RenderCancelled(Exception):
    """`should_stop` asked the render to stop; the partial output is not usable."""


def render_video(
    request: GenerationRequest,
    dest: Path,
    *,
    seed: int,
    last_frame_dest: Path | None = None,
    on_frame: ProgressHook | None = None,
    should_stop: StopHook | None = None,
) -> None:
    """Write an MP4 for `request` to `dest` (always MP4, whatever the file name says).

    `on_frame(done, total)` is called after each video frame so a caller can report progress;
    `should_stop()` is checked between frames and raises `RenderCancelled` when true.
    """
    width, height = request.output_size()
    total = request.duration * FPS
    rng = np.random.default_rng(seed % 2**64)
    frames = picture(request, (width, height), total, rng)
    overlay = watermark((width, height)) if request.watermark else None
    tone = None
    if request.audio:
        clips = [local_path(r) for r in request.audios]
        tone = Tone(rng, request.duration, RefAudio(clips) if clips else None)
    last: Frame | None = None
    try:
        with av.open(str(dest), "w", format="mp4") as out:
            vstream: Any = out.add_stream("libx264", rate=FPS)
            vstream.width, vstream.height, vstream.pix_fmt = width, height, "yuv420p"
            vstream.time_base = _TIME_BASE
            vstream.options = _X264_OPTIONS
            astream: Any = (
                out.add_stream("aac", rate=AUDIO_RATE, layout="stereo") if tone else None
            )
            for index, arr in enumerate(frames):
                if should_stop is not None and should_stop():
                    raise RenderCancelled
                if overlay is not None:
                    arr = overlay.apply(arr)
                frame = av.VideoFrame.from_ndarray(arr, format="rgb24")
                frame.pts = index
                frame.time_base = _TIME_BASE
                for packet in vstream.encode(frame):
                    out.mux(packet)
                if tone is not None:
                    # Keep the audio abreast of the video so the muxer never buffers a stream.
                    for aframe in tone.until((index + 1) / FPS):
                        for packet in astream.encode(aframe):
                            out.mux(packet)
                last = arr
                if on_frame is not None:
                    on_frame(index + 1, total)
            for packet in vstream.encode():
                out.mux(packet)
            if tone is not None:
                for aframe in tone.until(float(request.duration)):
                    for packet in astream.encode(aframe):
                        out.mux(packet)
                for packet in astream.encode():
                    out.mux(packet)
    finally:
        frames.close()
        if tone is not None:
            tone.close()
    if last_frame_dest is not None and last is not None:
        Image.fromarray(last).save(last_frame_dest, format="PNG")
