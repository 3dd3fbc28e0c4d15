"""http: the CPU one gateway request costs the engine, by layer.

Every gateway call goes through the bot's HTTP client: httpx's interface (what the providers
and bot/media/fetch.py speak, and what tests hand in) over aiohttp's pool (bot/httpclient.py).
A job makes two such requests with callbacks (create, download) and five with polling (three
polls), so this is the figure that decides how much of bench/inflight.py's "≤ 5 ms per job"
the HTTP stack takes. Three ways of making the same status request to the fake Magnific, in a
child process whose `time.process_time` counts the client alone (the fake answers in this
process).

- a poll through the real MagnificProvider (bot/providers/magnific.py → bot/providers/http.py
  → the bot's client), parsed into a TaskState, as the engine polls;
- the same GET through the bot's client, body parsed as JSON;
- the same GET through aiohttp alone, with the session options bot/httpclient.py uses.

Each at 32 and at 2,000 requests at once (bench/inflight.py's level; the pool keeps 100
connections, so most wait for one). Each variant runs three times, interleaved; the median is
reported. Figures only (target "report").

    python -m bench.http
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from bench.common import (
    BENCH_KEY,
    WorkerProcess,
    bench_magnific,
    bench_request,
    emit,
    report,
)

REQUESTS = int(os.environ.get("HTTP_REQUESTS", "6000"))
LEVELS = (32, 2000)
ROUNDS = 3


async def _per_request_us(call: Callable[[], Awaitable[Any]], at_once: int) -> float:
    """Process CPU per call, in µs, for REQUESTS calls with `at_once` in flight."""
    gate = asyncio.Semaphore(at_once)

    async def one() -> None:
        async with gate:
            await call()

    cpu = time.process_time()
    await asyncio.gather(*(one() for _ in range(REQUESTS)))
    return (time.process_time() - cpu) / REQUESTS * 1e6


async def measure(cfg: dict[str, Any]) -> None:
    """The child: one real create, then the three variants at each level."""
    import aiohttp

    from bot.config import Settings
    from bot.httpclient import MAX_CONNECTIONS, new_client
    from bot.providers import create_provider
    from bot.providers.magnific import TASK_PATH

    settings = Settings(seedance_data_dir=Path(cfg["data_dir"]), magnific_api_key=BENCH_KEY,
                        magnific_base_url=cfg["base_url"])
    client = new_client(timeout=60.0)  # as cogs/app.py builds it
    provider = create_provider("magnific", settings, client=client)
    task_id = (await provider.submit(bench_request(0), idempotency_key="bench-http")).task_id
    url = cfg["base_url"] + TASK_PATH.format(task_id=task_id)
    headers = {"x-magnific-api-key": BENCH_KEY, "Accept": "application/json"}
    session = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=MAX_CONNECTIONS),
        auto_decompress=False, cookie_jar=aiohttp.DummyCookieJar(),
        timeout=aiohttp.ClientTimeout(total=None, sock_connect=60.0, sock_read=60.0))

    async def poll() -> None:
        await provider.poll(task_id)

    async def client_get() -> None:
        (await client.request("GET", url, headers=headers)).json()

    async def aiohttp_get() -> None:
        async with session.get(url, headers=headers) as response:
            await response.json()

    variants = {"provider poll": poll, "bot client GET": client_get, "aiohttp GET": aiohttp_get}
    results: dict[str, dict[str, Any]] = {}
    try:
        for level in LEVELS:
            runs: dict[str, list[float]] = {name: [] for name in variants}
            for call in variants.values():  # warm each pool and code path once
                await _per_request_us(call, level)
            for _ in range(ROUNDS):
                for name, call in variants.items():
                    runs[name].append(await _per_request_us(call, level))
            results[str(level)] = {name: round(statistics.median(v), 1)
                                   for name, v in runs.items()}
            results[f"{level} runs"] = {name: [round(x, 1) for x in v]
                                        for name, v in runs.items()}
    finally:
        await session.close()
        await client.aclose()
    emit("result", results=results)


async def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        async with bench_magnific(3600.0) as gw:  # tasks stay IN_PROGRESS: every poll alike
            worker = WorkerProcess("bench.http", {"base_url": gw.base_url,
                                                  "data_dir": str(Path(tmp) / "data")})
            await worker.start()
            try:
                done = await worker.wait("result", 600)
            finally:
                await worker.close()
    results = done["results"]
    rows = []
    for level in LEVELS:
        r = results[str(level)]
        httpx_share = (r["bot client GET"] - r["aiohttp GET"]) / r["bot client GET"] * 100
        rows += [
            (f"CPU per status request, {level} at once: a poll through MagnificProvider "
             "(bot client)", f"{r['provider poll']:.0f} µs", "report"),
            (f"CPU per status request, {level} at once: GET through the bot's client "
             "(httpx over aiohttp)", f"{r['bot client GET']:.0f} µs", "report"),
            (f"CPU per status request, {level} at once: GET through aiohttp alone",
             f"{r['aiohttp GET']:.0f} µs ({httpx_share:.0f} % of the bot client's is httpx's)",
             "report"),
        ]
    report("http", rows, {"requests": REQUESTS, "rounds": ROUNDS, "results": results})


def _worker() -> None:
    cfg = json.loads(sys.argv[sys.argv.index("--worker") + 1])
    Path(cfg["data_dir"]).mkdir(parents=True, exist_ok=True)
    asyncio.run(measure(cfg))


if __name__ == "__main__":
    if "--worker" in sys.argv:
        _worker()
    else:
        asyncio.run(main())
