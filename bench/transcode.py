"""transcode: a 15 s 720p clip above 10 MiB made to fit Discord's 10 MiB upload limit.

The clip is a moving gradient with per-frame noise (hard to compress, like grain or rain) and
an AAC track, encoded at ~8 Mbit/s so it lands above 10 MiB. `fit_to_size` then gets the budget
the delivery cog uses (limit minus its upload margin). Figure: wall time / clip length.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import av
import numpy as np

from bench.common import report
from bot.media.probe import probe_file
from bot.media.transcode import fit_to_size

SECONDS = 15
FPS = 24
WIDTH, HEIGHT = 1280, 720
LIMIT = 10 * 1024 * 1024
UPLOAD_MARGIN = 256 * 1024  # as cogs/delivery.py


def noisy_clip(path: Path) -> None:
    rng = np.random.default_rng(7)
    with av.open(str(path), "w") as out:
        video = out.add_stream("libx264", rate=FPS)
        video.width, video.height, video.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        video.bit_rate = 8_000_000
        video.options = {"preset": "ultrafast"}
        audio = out.add_stream("aac", rate=44100, layout="stereo")
        ramp = np.linspace(0, 255, WIDTH, dtype=np.float32)
        for i in range(SECONDS * FPS):
            base = np.empty((HEIGHT, WIDTH, 3), dtype=np.float32)
            base[:, :, 0] = (ramp + i * 4) % 256
            base[:, :, 1] = np.linspace(0, 255, HEIGHT, dtype=np.float32)[:, None]
            base[:, :, 2] = 128
            noise = rng.integers(-40, 40, size=(HEIGHT, WIDTH, 1), dtype=np.int16)
            pixels = np.clip(base + noise, 0, 255).astype(np.uint8)
            frame = av.VideoFrame.from_ndarray(pixels, format="rgb24")
            for packet in video.encode(frame):
                out.mux(packet)
        for packet in video.encode():
            out.mux(packet)
        samples = 1024
        t = 0
        while t < SECONDS * 44100:
            wave = (0.2 * np.sin(2 * np.pi * 440 * (np.arange(samples) + t) / 44100))
            block = np.stack([wave, wave]).astype(np.float32)
            aframe = av.AudioFrame.from_ndarray(block, format="fltp", layout="stereo")
            aframe.sample_rate = 44100
            aframe.pts = t
            for packet in audio.encode(aframe):
                out.mux(packet)
            t += samples
        for packet in audio.encode():
            out.mux(packet)


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        src, dest = Path(tmp) / "noisy.mp4", Path(tmp) / "fit.mp4"
        noisy_clip(src)
        before = src.stat().st_size
        started = time.perf_counter()
        fitted = fit_to_size(src, dest, LIMIT - UPLOAD_MARGIN)
        wall = time.perf_counter() - started
        after = dest.stat().st_size if fitted else 0
        facts = probe_file(dest) if fitted else None
    ratio = wall / SECONDS
    report("transcode", [
        ("wall time / clip length (15 s 720p)", f"{ratio:.2f} ({wall:.1f} s)", "≤ 1.0"),
    ], {"source_bytes": before, "fitted": fitted, "result_bytes": after,
        "budget_bytes": LIMIT - UPLOAD_MARGIN, "wall_s": round(wall, 2), "ratio": round(ratio, 3),
        "result": None if facts is None else {"width": facts.width, "height": facts.height,
                                               "duration": facts.duration}})


if __name__ == "__main__":
    main()
