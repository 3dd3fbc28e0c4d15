"""`GET /healthz` for orchestrators (Docker, Kubernetes, a load balancer): 200 when this
process's event loop runs its ready callbacks promptly and its database answers a trivial query
in time, 503 with a JSON reason otherwise; and `GET /metrics` (Prometheus text, bot/metrics.py)
beside it. Served by the callback receiver's aiohttp server, or by a server of its own on
SEEDANCE_HTTP_PORT when no callbacks are configured."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from aiohttp import web

log = logging.getLogger(__name__)

#: A query against the database, e.g. `store.db.now`.
Probe = Callable[[], Awaitable[object]]
#: The Prometheus text of this process's metrics and its content type (bot/metrics.py).
Exposition = Callable[[], Awaitable[tuple[bytes, str]]]
DATABASE_SECONDS = 2.0


async def loop_lag() -> float:
    """Seconds a callback made ready now waits for its turn: a loop hogged by blocking code
    (a CPU-bound step, a synchronous call) answers this request late and this figure shows it,
    while an idle loop answers in microseconds."""
    started = time.monotonic()
    await asyncio.sleep(0)
    return time.monotonic() - started


async def healthz(probe: Probe, within: float = DATABASE_SECONDS) -> web.Response:
    """The answer to one health check: the loop first (it ran this, but is it keeping up?),
    then the database, each within `within` seconds."""
    lag = await loop_lag()
    if lag > within:
        reason = f"the event loop is blocked: a ready callback waited {lag:.1f} s"
        log.warning("health check failed: %s", reason)
        return web.json_response({"ok": False, "reason": reason}, status=503)
    started = time.monotonic()
    try:
        await asyncio.wait_for(probe(), within)
    except TimeoutError:
        reason = f"the database did not answer within {within:g} s"
    except Exception as exc:  # whatever the driver raised: the database is not usable
        reason = f"the database failed: {type(exc).__name__}"
    else:
        ms = round((time.monotonic() - started) * 1000, 1)
        return web.json_response({"ok": True, "database_ms": ms,
                                  "loop_ms": round(lag * 1000, 1)})
    log.warning("health check failed: %s", reason)
    return web.json_response({"ok": False, "reason": reason}, status=503)


def add_health_route(app: web.Application, probe: Probe,
                     within: float = DATABASE_SECONDS) -> None:
    async def handle(_request: web.Request) -> web.Response:
        return await healthz(probe, within)

    app.router.add_get("/healthz", handle)


def add_metrics_route(app: web.Application, exposition: Exposition) -> None:
    async def handle(_request: web.Request) -> web.Response:
        body, content_type = await exposition()
        return web.Response(body=body, headers={"Content-Type": content_type})

    app.router.add_get("/metrics", handle)


async def serve(app: web.Application, host: str, port: int) -> tuple[web.AppRunner, int]:
    """Listen with `app` on host:port (0: any free port); its runner and the port listened on.

    No access log: request paths can hold tokens (the callback receiver's do)."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    try:
        await site.start()
    except OSError:
        await runner.cleanup()
        raise
    sockets = getattr(site._server, "sockets", None) or []
    return runner, (sockets[0].getsockname()[1] if sockets else port)


class HealthServer:
    """/healthz (and /metrics, given its exposition), for a process without callbacks."""

    def __init__(self, probe: Probe, *, host: str = "0.0.0.0", port: int = 8080,
                 within: float = DATABASE_SECONDS, metrics: Exposition | None = None) -> None:
        self.host = host
        self.port = port
        self.app = web.Application()
        add_health_route(self.app, probe, within)
        self._paths = "/healthz"
        if metrics is not None:
            add_metrics_route(self.app, metrics)
            self._paths += ", /metrics"
        self._runner: web.AppRunner | None = None
        self.bound_port: int | None = None

    async def start(self) -> None:
        self._runner, self.bound_port = await serve(self.app, self.host, self.port)
        log.info("health check listening on %s:%s (%s)", self.host, self.bound_port,
                 self._paths)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
