"""Sample inputs for a first try (`seedance-bot sample`): two pictures, a clip and a tune, each
within every gateway's limits, made on this machine (Pillow, PyAV, the local renderer)."""

from __future__ import annotations

import math
import wave
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from bot.media.render import render_video
from bot.models import GenerationRequest, Mode, Ratio, Resolution

AUDIO_RATE = 44100


def _picture(dest: Path, colour: tuple[int, int, int], sun: tuple[int, int]) -> Path:
    """A 1280x720 landscape: a sky gradient, a sun, hills."""
    width, height = 1280, 720
    sky = np.linspace(0.0, 1.0, height)[:, None, None]
    top = np.array(colour, dtype=float)
    arr = (top * (1 - sky) + np.array([250.0, 230.0, 200.0]) * sky).astype(np.uint8)
    img = Image.fromarray(np.repeat(arr, width, axis=1))
    draw = ImageDraw.Draw(img)
    x, y = sun
    draw.ellipse((x - 70, y - 70, x + 70, y + 70), fill=(255, 220, 90))
    draw.polygon([(0, 720), (0, 520), (300, 420), (640, 560), (960, 440), (1280, 540),
                  (1280, 720)], fill=(40, 110, 60))
    img.save(dest, format="PNG")
    return dest


def _tune(dest: Path, seconds: float = 4.0) -> Path:
    """A few seconds of a soft arpeggio as 16-bit stereo WAV."""
    notes = (261.63, 329.63, 392.0, 523.25)
    t = np.arange(int(seconds * AUDIO_RATE)) / AUDIO_RATE
    note = np.asarray(notes)[(t * 2).astype(int) % len(notes)]  # two notes a second
    envelope = 0.5 - 0.5 * np.cos(2 * math.pi * (t * 2 % 1.0))
    signal = (0.3 * envelope * np.sin(2 * math.pi * note * t) * 32767).astype(np.int16)
    with wave.open(str(dest), "wb") as out:
        out.setnchannels(2)
        out.setsampwidth(2)
        out.setframerate(AUDIO_RATE)
        out.writeframes(np.repeat(signal[:, None], 2, axis=1).tobytes())
    return dest


def write_samples(folder: Path) -> list[Path]:
    """Write image.png, image2.png, clip.mp4 (4 s, 480p) and tune.wav into `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    first = _picture(folder / "image.png", (70, 120, 200), (980, 180))
    last = _picture(folder / "image2.png", (200, 90, 60), (300, 420))
    clip = folder / "clip.mp4"
    request = GenerationRequest(prompt="sample clip: a slow pan over hills", mode=Mode.TEXT,
                                duration=4, resolution=Resolution.P480, ratio=Ratio.R16_9,
                                audio=False)
    render_video(request, clip, seed=1)
    return [first, last, clip, _tune(folder / "tune.wav")]
