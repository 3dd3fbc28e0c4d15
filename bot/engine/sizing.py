"""Asking a gateway for a file that already fits where it will be posted.

Some gateways take a compression quality (`Capabilities.output_quality`: Runware's
outputQuality, 20–99). A result that fits the server's upload limit as it comes needs none of
our transcoding (bot/media/transcode.py), which costs CPU and a generation of quality. So when
the front end says how many bytes it can post (its upload limit, shared by every video of a
set posted in one message), the quality asked for is the highest whose estimated size fits.

The estimate: bytes = seconds × pixels × k × 2^((quality − default) / QUALITY_STEP), where k
(bytes per pixel-second at the gateway's default quality) starts from a prior and is learned
from the sizes of that gateway's past results at that resolution (the median of the latest,
store table `result_sizes`, migration 0011), so a gateway that compresses harder or softer than
assumed is asked better next time.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from pathlib import Path

from bot.models import SIZE_TABLE, GenerationRequest, Ratio, Resolution
from bot.providers.base import Capabilities
from bot.store import Store

#: Quality points that double (or halve) the size: x264's CRF rule of thumb (six steps per
#: doubling) spread over a 0–100 quality scale.
QUALITY_STEP = 10.0
#: Bytes per pixel-second at a gateway's default quality before any result was seen: a 5 s
#: 720p Seedance clip of about 5.5 MB (what the fake gateways' and the pages' samples weigh).
PRIOR_BYTES_PER_PIXEL_SECOND = 1.2
#: Aim below the budget: estimates are estimates, and the container needs room.
HEADROOM = 0.85
#: Results read to learn from (the latest per gateway and resolution).
SAMPLES = 20
#: The front end's upload limit, in a job's context (bytes per message): the Discord layer
#: writes it (cogs/utils/core.py `DiscordJobContext.filesize_limit`).
UPLOAD_LIMIT_KEY = "filesize_limit"


def _pixels(resolution: Resolution) -> int:
    width, height = SIZE_TABLE[resolution][Ratio.R16_9]
    return width * height


def bytes_per_pixel_second(samples: Sequence[tuple[int, float, int]], resolution: Resolution,
                           default_quality: int) -> float:
    """k learned from (quality, seconds, bytes) samples (quality 0: the gateway's default);
    the prior without any."""
    pixels = _pixels(resolution)
    ks = []
    for quality, seconds, size in samples:
        if seconds <= 0 or size <= 0:
            continue
        q = quality or default_quality
        ks.append(size / (seconds * pixels * 2 ** ((q - default_quality) / QUALITY_STEP)))
    return statistics.median(ks) if ks else PRIOR_BYTES_PER_PIXEL_SECOND


def estimate_bytes(request: GenerationRequest, quality: int, default_quality: int,
                   k: float) -> float:
    """The expected size of one video of `request` at `quality` (pixels as in the learning:
    the resolution's 16:9 size; its other ratios hold about as many)."""
    return (request.duration * _pixels(request.resolution) * k
            * 2 ** ((quality - default_quality) / QUALITY_STEP))


def pick_quality(request: GenerationRequest, caps: Capabilities, budget: int,
                 samples: Sequence[tuple[int, float, int]]) -> int | None:
    """The highest quality (at most the gateway's default) whose estimate fits `budget` bytes
    per video; the lowest when none does (our transcode does the rest). None: the gateway
    takes no quality."""
    if caps.output_quality is None:
        return None
    low, high, default = caps.output_quality
    k = bytes_per_pixel_second(samples, request.resolution, default)
    for quality in range(min(high, default), low - 1, -1):
        if estimate_bytes(request, quality, default, k) <= budget * HEADROOM:
            return quality
    return low


async def choose_quality(store: Store, request: GenerationRequest, caps: Capabilities,
                         upload_limit: int | None) -> int | None:
    """The quality to ask of the gateway for `request`, whose videos are posted together in
    one message of at most `upload_limit` bytes (None: no limit known, the gateway's own)."""
    if caps.output_quality is None or not upload_limit:
        return None
    samples = await store.recent_result_sizes(caps.provider, request.resolution.value,
                                              limit=SAMPLES)
    return pick_quality(request, caps, upload_limit // max(1, request.results), samples)


async def remember_sizes(store: Store, provider: str, request: GenerationRequest,
                         videos: Sequence[Path], *, now: float) -> None:
    """What the results weighed, for the next estimate."""
    for path in videos:
        await store.record_result_size(provider, request.resolution.value,
                                       request.output_quality or 0, float(request.duration),
                                       path.stat().st_size, now=now)


__all__ = ["UPLOAD_LIMIT_KEY", "choose_quality", "estimate_bytes", "pick_quality",
           "remember_sizes"]
