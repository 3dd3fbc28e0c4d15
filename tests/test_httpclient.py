"""bot/httpclient.py: httpx's interface over aiohttp, against real loopback servers.

What matters most is the line between "never sent" and "maybe sent": a create is resent only
after an error that proves the request never left (bot/providers/http.py)."""

from __future__ import annotations

import asyncio
import ssl
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiohttp import web

from bot.errors import DownloadError, GatewayError, GatewayUnavailableError
from bot.httpclient import AiohttpTransport, new_client
from bot.media.fetch import NetworkPolicy, download
from bot.providers.http import HttpTransport


def never_an_error(response: httpx.Response) -> GatewayError:
    raise AssertionError(f"the gateway answered {response.status_code}")


class Server:
    """A loopback aiohttp server that records what it saw."""

    def __init__(self, ssl_context: ssl.SSLContext | None = None) -> None:
        self.paths: list[str] = []
        self.cookies: list[str | None] = []
        self.peers: set[object] = set()
        self.bodies: list[bytes] = []
        self.ssl_context = ssl_context
        app = web.Application()
        app.router.add_route("*", "/echo", self.echo)
        app.router.add_post("/hang-up", self.hang_up)
        app.router.add_get("/slow", self.slow)
        app.router.add_get("/file", self.file)
        app.router.add_get("/sets-cookie", self.sets_cookie)
        app.router.add_get("/moved", self.moved)
        self.runner = web.AppRunner(app)
        self.port = 0

    async def __aenter__(self) -> Server:
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0, ssl_context=self.ssl_context)
        await site.start()
        self.port = self.runner.addresses[0][1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.runner.cleanup()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    async def echo(self, request: web.Request) -> web.Response:
        self.paths.append(request.raw_path)
        self.peers.add(request.transport)
        self.bodies.append(await request.read())
        return web.json_response({"ok": True})

    async def hang_up(self, request: web.Request) -> web.Response:
        """Reads the whole create, then hangs up without answering: the task may exist."""
        self.bodies.append(await request.read())
        assert request.transport is not None
        request.transport.close()
        await asyncio.sleep(1)
        return web.json_response({"never": "sent"})

    async def slow(self, request: web.Request) -> web.Response:
        await asyncio.sleep(1)
        return web.json_response({"late": True})

    async def file(self, request: web.Request) -> web.Response:
        return web.Response(body=b"v" * 5000, content_type="video/mp4")

    async def moved(self, request: web.Request) -> web.Response:
        self.cookies.append(request.headers.get("Authorization"))
        raise web.HTTPFound("/echo?from=moved")

    async def sets_cookie(self, request: web.Request) -> web.Response:
        self.cookies.append(request.headers.get("Cookie"))
        response = web.json_response({"ok": True})
        response.headers.add("Set-Cookie", "session=abc; Path=/")
        return response


@pytest.fixture
async def server() -> AsyncIterator[Server]:
    async with Server() as s:
        yield s


async def test_a_create_answered_by_a_hang_up_is_not_resent(server: Server) -> None:
    """The request reached the gateway and the answer was lost: maybe a task, never resent."""
    transport = HttpTransport("fake", server.url(""), {}, never_an_error)
    try:
        with pytest.raises(GatewayUnavailableError, match="not sent again") as info:
            await transport.create("/hang-up", json={"prompt": "a fox"}, idempotent=False)
    finally:
        await transport.aclose()
    assert info.value.retryable is False and info.value.status is None
    assert server.bodies == [b'{"prompt":"a fox"}'] and transport.requests_sent == 1


async def test_a_create_that_never_connected_is_retryable() -> None:
    async with new_client(timeout=5) as client:
        with pytest.raises(httpx.ConnectError):
            await client.post("http://127.0.0.1:9/tasks", json={})
        transport = HttpTransport("fake", "http://127.0.0.1:9", {}, never_an_error, client=client)
        with pytest.raises(GatewayUnavailableError, match="could not connect") as info:
            await transport.create("/tasks", json={}, idempotent=False)
    assert info.value.retryable and info.value.status is None


async def test_a_late_answer_is_a_read_timeout(server: Server) -> None:
    async with new_client(timeout=httpx.Timeout(5.0, read=0.2)) as client:
        with pytest.raises(httpx.ReadTimeout):
            await client.get(server.url("/slow"))


async def test_signed_urls_go_out_byte_for_byte(server: Server) -> None:
    """A presigned result URL breaks if one escape is re-quoted or decoded."""
    raw = "/echo?X-Amz-Signature=ab%2Fcd%3D&X-Amz-Credential=k%2F2026%2Fus&e=%7Ex+y"
    async with new_client() as client:
        response = await client.get(server.url(raw))
    assert response.json() == {"ok": True} and server.paths == [raw]


async def test_no_cookie_a_host_sets_is_kept_or_sent_back(server: Server) -> None:
    """Gateways authenticate by header, results by signed URL: a cookie is never needed, and
    one a host set must not follow later requests (there or anywhere)."""
    async with new_client() as client:
        for _ in range(2):
            response = await client.get(server.url("/sets-cookie"))
            assert response.cookies.get("session") == "abc"  # the response still shows it
        assert not client.cookies
        client.cookies = {"given": "1"}  # cookies the caller sets still go out
        await client.get(server.url("/sets-cookie"))
    assert server.cookies == [None, None, "given=1"]


async def test_connections_are_reused_and_uploads_stream(server: Server) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for i in range(50):
            yield bytes([i % 256]) * 10_000

    async with new_client() as client:
        for _ in range(10):
            assert (await client.get(server.url("/echo"))).status_code == 200
        response = await client.post(server.url("/echo"), content=chunks())
    assert response.status_code == 200
    assert len(server.peers) == 1  # one connection for eleven requests
    assert server.bodies[-1] == b"".join(bytes([i % 256]) * 10_000 for i in range(50))


class _HttpxSteps:
    """Counts the requests that went through httpx's own auth/redirect/hook steps."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.seen = 0
        original = httpx.AsyncClient._send_handling_auth

        async def counted(client: httpx.AsyncClient, *args: Any, **kwargs: Any) -> Any:
            self.seen += 1
            return await original(client, *args, **kwargs)

        monkeypatch.setattr(httpx.AsyncClient, "_send_handling_auth", counted)


async def test_a_plain_request_skips_httpx_s_steps_and_answers_as_httpx_would(
    server: Server, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """No auth, no hooks, no mounts, no redirect to follow: the request goes straight to the
    transport, and the response, its stream and its errors look as httpx's `send` makes them."""
    steps = _HttpxSteps(monkeypatch)
    async with new_client(timeout=httpx.Timeout(5.0, read=0.2)) as client:
        response = await client.get(server.url("/echo"), headers={"X-Probe": "1"})
        assert response.json() == {"ok": True} and response.request.url.path == "/echo"
        assert response.request.extensions["timeout"]["read"] == 0.2  # the client's timeout
        assert response.elapsed.total_seconds() > 0
        moved = await client.get(server.url("/moved"))  # not followed; where it points
        assert moved.status_code == 302 and moved.next_request is not None
        assert moved.next_request.url == server.url("/echo?from=moved")
        async with client.stream("GET", server.url("/file")) as streamed:
            assert len(await streamed.aread()) == 5000
        assert streamed.elapsed.total_seconds() > 0
        with pytest.raises(httpx.ReadTimeout) as late:
            await client.get(server.url("/slow"))
        assert late.value.request.url == server.url("/slow")
    assert steps.seen == 0


async def test_auth_hooks_and_followed_redirects_take_httpx_s_own_steps(
    server: Server, monkeypatch: pytest.MonkeyPatch,
) -> None:
    steps = _HttpxSteps(monkeypatch)
    hooked: list[str] = []

    async def hook(request: httpx.Request) -> None:
        hooked.append(request.url.path)

    async with new_client(event_hooks={"request": [hook]}) as client:
        await client.get(server.url("/echo"))
    async with new_client() as client:
        followed = await client.get(server.url("/moved"), follow_redirects=True)
        assert followed.json() == {"ok": True} and len(followed.history) == 1
        await client.get(server.url("/moved"), auth=("bot", "pw"))
    assert hooked == ["/echo"] and steps.seen == 3
    assert server.cookies[-1] is not None and server.cookies[-1].startswith("Basic ")
    assert server.paths == ["/echo", "/echo?from=moved"]


def _certificate(folder: Path, host: str) -> tuple[Path, Path]:
    cert, key = folder / f"{host}.pem", folder / f"{host}.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
         "-subj", f"/CN={host}", "-addext", f"subjectAltName=DNS:{host}",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )
    return cert, key


async def test_a_pinned_https_download_checks_the_certificate_of_the_name(tmp_path: Path) -> None:
    """bot/media/fetch.py connects to the address it checked (the URL names 127.0.0.1) and
    names the host in TLS SNI: the certificate must be the host name's, not the address's."""

    async def resolve(host: str, port: int) -> list[str]:
        return ["127.0.0.1"]

    policy = NetworkPolicy.parse("results.example", resolve=resolve)
    for served_name, ok in (("results.example", True), ("elsewhere.example", False)):
        cert, key = _certificate(tmp_path, served_name)
        served = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        served.load_cert_chain(cert, key)
        trusting = ssl.create_default_context(cafile=str(cert))
        dest = tmp_path / f"{served_name}.mp4"
        async with Server(ssl_context=served) as tls, httpx.AsyncClient(
                transport=AiohttpTransport(verify=trusting)) as client:
            url = f"https://results.example:{tls.port}/file"
            if ok:
                assert await download(client, url, dest, max_bytes=10_000, policy=policy) == 5000
                assert dest.read_bytes() == b"v" * 5000
            else:
                with pytest.raises(DownloadError, match=r"(?i)hostname|certificate"):
                    await download(client, url, dest, max_bytes=10_000, policy=policy)
                assert not dest.exists()
