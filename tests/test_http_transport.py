"""bot/providers/http.py's bound on requests in flight: however many jobs poll at once, a
gateway sees at most `max_in_flight` requests together, and every one is answered."""

from __future__ import annotations

import asyncio

import httpx
from aiohttp import web

from bot.errors import GatewayError
from bot.providers.http import HttpTransport


def never_an_error(response: httpx.Response) -> GatewayError:
    raise AssertionError(f"the gateway answered {response.status_code}")


async def test_many_requests_at_once_are_kept_to_the_bound() -> None:
    in_flight = peak = 0

    async def slow(_request: web.Request) -> web.Response:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        await asyncio.sleep(0.01)
        in_flight -= 1
        return web.json_response({"ok": True})

    app = web.Application()
    app.router.add_get("/task", slow)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    transport = HttpTransport("fake", f"http://127.0.0.1:{port}", {}, never_an_error,
                              max_in_flight=8)
    try:
        answers = await asyncio.gather(*(transport.request("GET", "/task", idempotent=True)
                                         for _ in range(200)))
    finally:
        await transport.aclose()
        await runner.cleanup()
    assert all(a.status_code == 200 for a in answers)
    assert peak == 8 and transport.requests_sent == 200
