"""streaming: a 100 MB result fetched with `bot.media.fetch.download`; the bot's RSS growth.

The gateway is a real aiohttp server on 127.0.0.1 streaming 100 MB in 1 MiB chunks (never holding
it whole). RSS is sampled every 10 ms during the download; the figure is peak minus baseline.
Target: < 30 MB, i.e. the download streams to disk instead of buffering the body.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from pathlib import Path

import httpx
from aiohttp import web

from bench.common import report, rss_mb
from bot.media.fetch import NetworkPolicy, download

SIZE = 100 * 1024 * 1024
CHUNK = 1024 * 1024


async def serve(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse(headers={"Content-Type": "video/mp4",
                                           "Content-Length": str(SIZE)})
    await response.prepare(request)
    block = bytes(range(256)) * (CHUNK // 256)
    for _ in range(SIZE // CHUNK):
        await response.write(block)
    await response.write_eof()
    return response


async def main() -> None:
    app = web.Application()
    app.router.add_get("/result.mp4", serve)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    peak = baseline = rss_mb()
    done = asyncio.Event()

    async def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, rss_mb())
            await asyncio.sleep(0.01)

    sampler = asyncio.create_task(sample())
    with tempfile.TemporaryDirectory() as tmp:
        async with httpx.AsyncClient() as client:
            started = time.perf_counter()
            written = await download(client, f"http://127.0.0.1:{port}/result.mp4",
                                     Path(tmp) / "result.mp4", max_bytes=200 * 1024 * 1024,
                                     policy=NetworkPolicy.parse("127.0.0.1"),
                                     allowed_hosts=["127.0.0.1"])
            wall = time.perf_counter() - started
        on_disk = (Path(tmp) / "result.mp4").stat().st_size
    done.set()
    await sampler
    await runner.cleanup()
    growth = peak - baseline
    report("streaming", [
        ("RSS growth downloading 100 MB", f"{growth:.1f} MB", "< 30 MB"),
    ], {"bytes": written, "on_disk": on_disk, "baseline_rss_mb": round(baseline, 1),
        "peak_rss_mb": round(peak, 1), "growth_mb": round(growth, 1), "wall_s": round(wall, 2),
        "note": "server and client share the process; the server streams 1 MiB chunks"})


if __name__ == "__main__":
    asyncio.run(main())
