"""What every fake gateway shares: a real aiohttp server on loopback, a record of what it
received, scripted faults, result files whose URLs expire, and callbacks sent twice.

Each gateway's fake (tests/fakes/<gateway>.py) subclasses `FakeGateway`, adds its routes in
`setup_routes`, and speaks that gateway's protocol as docs/GATEWAYS.md describes.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from tests.media_factory import make_image, make_video

#: Where the middleware leaves the parsed body for the gateway handlers.
JSON_BODY: web.RequestKey[Any] = web.RequestKey("json_body", object)
_VIDEO_CACHE: dict[tuple[int, int, float, bool], bytes] = {}


def sample_video(width: int = 496, height: int = 864, seconds: float = 4.0,
                 audio: bool = True) -> bytes:
    """A real small MP4 (made once per shape per process) for fakes to hand back."""
    key = (width, height, seconds, audio)
    if key not in _VIDEO_CACHE:
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:
            path = make_video(Path(tmp) / "result.mp4", width, height, seconds, audio=audio)
            _VIDEO_CACHE[key] = path.read_bytes()
    return _VIDEO_CACHE[key]


def sample_image(width: int = 496, height: int = 864) -> bytes:
    """A real small PNG, e.g. a result's last frame."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        return make_image(Path(tmp) / "frame.png", width, height).read_bytes()


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    body: Any  # parsed JSON when it was JSON, else raw bytes


@dataclass
class Fault:
    """One scripted answer replacing the normal one for the next matching request."""

    status: int
    body: Any = None  # dict → JSON; str → text (e.g. malformed JSON); None → empty
    headers: dict[str, str] = field(default_factory=dict)
    method: str | None = None  # only for this method
    path_prefix: str | None = None  # only for paths starting with this
    delay: float = 0.0  # seconds before answering (to provoke client timeouts)
    body_contains: str | None = None  # only for raw bodies holding this (Runware's one route)
    #: Let the real handler do the work, then hold its answer `delay` seconds: the task exists
    #: but the client times out (status and body are ignored).
    after: bool = False


class FakeGateway:
    """Base of the per-gateway fakes. Use `async with FakeX() as fake:`; `fake.base_url`."""

    api_key = "test-key"
    #: The tasks the gateway made (and would bill), by id; each fake fills its own.
    tasks: dict[str, Any]

    def __init__(self) -> None:
        self.app = web.Application(middlewares=[self._middleware])
        self.requests: list[Recorded] = []
        self.faults: deque[Fault] = deque()
        self.files: dict[str, tuple[bytes, float]] = {}  # name -> (bytes, expires_at)
        self.callbacks_sent: list[tuple[str, Any]] = []
        self._runner: web.AppRunner | None = None
        self.port = 0
        self.app.router.add_get("/files/{name}", self._serve_file)
        self.setup_routes(self.app.router)

    # ---- for subclasses -------------------------------------------------------------------
    def setup_routes(self, router: web.UrlDispatcher) -> None:
        """Each gateway's fake adds its own routes here."""

    # ---- lifecycle ------------------------------------------------------------------------
    async def __aenter__(self) -> FakeGateway:
        self._runner = web.AppRunner(self.app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        sockets = site._server.sockets  # type: ignore[union-attr]
        self.port = sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._runner:
            await self._runner.cleanup()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # ---- helpers --------------------------------------------------------------------------
    def fail_next(self, status: int, body: Any = None, *, times: int = 1, **kw: Any) -> None:
        """Script the next `times` matching requests (see `Fault` for the filters)."""
        for _ in range(times):
            self.faults.append(Fault(status, body, **kw))

    def answer_late(self, seconds: float, *, times: int = 1, **kw: Any) -> None:
        """Do the next matching requests' work, then answer `seconds` late (lost answers)."""
        self.fail_next(200, None, times=times, delay=seconds, after=True, **kw)

    def add_file(self, name: str, data: bytes, ttl: float = 3600.0) -> str:
        """Serve `data` at a URL that stops working (403, as S3 does) after `ttl` seconds."""
        self.files[name] = (data, time.time() + ttl)
        return f"{self.base_url}/files/{name}?X-Amz-Signature=secret-signature"

    def expire_files(self) -> None:
        self.files = {k: (v, 0.0) for k, (v, _) in self.files.items()}

    def received(self, method: str | None = None, path_prefix: str = "") -> list[Recorded]:
        return [
            r for r in self.requests
            if (method is None or r.method == method) and r.path.startswith(path_prefix)
        ]

    async def send_callback(self, url: str, body: Any, headers: dict[str, str] | None = None,
                            *, times: int = 2) -> list[int]:
        """POST a callback `times` times (gateways redeliver); returns the statuses."""
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        statuses = []
        async with aiohttp.ClientSession() as session:
            for _ in range(times):
                async with session.post(
                    url, data=raw, headers={"Content-Type": "application/json", **(headers or {})}
                ) as resp:
                    statuses.append(resp.status)
        self.callbacks_sent.append((url, body))
        return statuses

    # ---- internals ------------------------------------------------------------------------
    @web.middleware
    async def _middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        raw = await request.read()
        try:
            body: Any = json.loads(raw) if raw else None
        except ValueError:
            body = raw
        if not request.path.startswith("/files/"):
            self.requests.append(
                Recorded(request.method, request.path, dict(request.headers), body)
            )
        for fault in list(self.faults):
            if fault.method and fault.method != request.method:
                continue
            if fault.path_prefix and not request.path.startswith(fault.path_prefix):
                continue
            if fault.body_contains is not None and fault.body_contains.encode() not in raw:
                continue
            self.faults.remove(fault)
            if fault.after:
                request[JSON_BODY] = body
                late: web.StreamResponse = await handler(request)
                await asyncio.sleep(fault.delay)
                return late
            if fault.delay:
                await asyncio.sleep(fault.delay)
            if isinstance(fault.body, dict | list):
                return web.json_response(fault.body, status=fault.status, headers=fault.headers)
            return web.Response(
                status=fault.status, text=fault.body or "", headers=fault.headers,
                content_type="application/json",
            )
        request[JSON_BODY] = body
        response: web.StreamResponse = await handler(request)
        return response

    async def _serve_file(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        if name not in self.files:
            return web.Response(status=404, text="NoSuchKey")
        data, expires = self.files[name]
        if time.time() > expires:
            return web.Response(status=403, text="<Error><Code>AccessDenied</Code>"
                                "<Message>Request has expired</Message></Error>")
        return web.Response(body=data, content_type="video/mp4")
