"""The local renderer's sound: a seeded tone, or the reference clips played in order."""

from __future__ import annotations

import math
from collections.abc import Generator, Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np

from bot.media.pictures import RenderError

AUDIO_RATE = 44100
_AAC_FRAME = 1024


class RefAudio:
    """Reference clips played one after another, decoded and resampled as they are needed."""

    def __init__(self, paths: list[Path]) -> None:
        self._chunks = self._decode(paths)
        self._buffer = np.zeros((2, 0), dtype=np.float32)

    @staticmethod
    def _decode(paths: list[Path]) -> Generator[np.ndarray, None, None]:
        for path in paths:
            resampler = av.AudioResampler(format="fltp", layout="stereo", rate=AUDIO_RATE)
            try:
                with av.open(str(path)) as src:
                    for frame in src.decode(audio=0):
                        for out in resampler.resample(frame):
                            yield out.to_ndarray()
                    for out in resampler.resample(None):
                        yield out.to_ndarray()
            except av.FFmpegError as exc:
                raise RenderError(f"cannot read audio {path.name}: {exc}") from exc

    def take(self, n: int) -> np.ndarray:
        """The next `n` stereo samples, silence once every clip has played."""
        while self._buffer.shape[1] < n:
            chunk = next(self._chunks, None)
            if chunk is None:
                pad = np.zeros((2, n - self._buffer.shape[1]), dtype=np.float32)
                self._buffer = np.concatenate([self._buffer, pad], axis=1)
                break
            self._buffer = np.concatenate([self._buffer, chunk.astype(np.float32)], axis=1)
        taken, self._buffer = self._buffer[:, :n], self._buffer[:, n:]
        return taken

    def close(self) -> None:
        self._chunks.close()


class Tone:
    """A soft seed-dependent major or minor chord with a slow swell, stereo, full duration.

    Reference audio clips, when given, play over a quieter chord: the soundtrack uses them as
    the real model is asked to.
    """

    def __init__(
        self, rng: np.random.Generator, seconds: float, reference: RefAudio | None = None
    ) -> None:
        root = 196.0 * 2 ** (int(rng.integers(0, 12)) / 12)  # G3 .. F#4
        third = 4 if rng.integers(0, 2) else 3
        self.notes = [root, root * 2 ** (third / 12), root * 2 ** (7 / 12), root * 2]
        self.detune = float(rng.uniform(0.5, 1.5))  # Hz between the ears: a gentle chorus
        self.swell = float(rng.uniform(0.1, 0.3))
        self.total = round(seconds * AUDIO_RATE)
        self.pts = 0
        self.reference = reference

    def close(self) -> None:
        if self.reference is not None:
            self.reference.close()

    def until(self, seconds: float) -> Iterator[Any]:
        """Audio frames covering up to `seconds` (whole AAC frames, a short last one at the end)."""
        target = min(self.total, round(seconds * AUDIO_RATE))
        while self.pts + _AAC_FRAME <= target or (target == self.total and self.pts < target):
            n = min(_AAC_FRAME, self.total - self.pts)
            yield self._frame(n)
            self.pts += n

    def _frame(self, n: int) -> Any:
        t = (np.arange(self.pts, self.pts + n, dtype=np.float64)) / AUDIO_RATE
        duration = self.total / AUDIO_RATE
        fade = np.clip(np.minimum(t / 0.3, (duration - t) / 0.3), 0.0, 1.0)
        env = fade * (0.8 + 0.2 * np.sin(2 * math.pi * self.swell * t))
        left = sum(np.sin(2 * math.pi * f * t) / (i + 1) for i, f in enumerate(self.notes))
        right = sum(
            np.sin(2 * math.pi * (f + self.detune) * t) / (i + 1)
            for i, f in enumerate(self.notes)
        )
        chord = np.stack([left, right]) * env
        if self.reference is None:
            data = (chord * 0.12).astype(np.float32)
        else:
            mixed = chord * 0.04 + self.reference.take(n) * 0.8 * fade
            data = np.clip(mixed, -1.0, 1.0).astype(np.float32)
        frame = av.AudioFrame.from_ndarray(data, format="fltp", layout="stereo")
        frame.sample_rate = AUDIO_RATE
        frame.pts = self.pts
        frame.time_base = Fraction(1, AUDIO_RATE)
        return frame
