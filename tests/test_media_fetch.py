"""Downloads against a real aiohttp server on 127.0.0.1 that can lie, omit sizes and expire."""

from __future__ import annotations

import gzip
import os
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from aiohttp import web

from bot.errors import DownloadError, RefusedDownload, ResultExpiredError
from bot.httpclient import new_client
from bot.media.fetch import (
    STRICT,
    NetworkPolicy,
    download,
    host_allowed,
    is_public,
    safe_url,
)

BODY = os.urandom(200_000)
#: The operator listed loopback (SEEDANCE_PRIVATE_HOSTS=127.0.0.1), as the tests' fakes need.
LOOPBACK = NetworkPolicy.parse("127.0.0.1")


class FileServer:
    """Serves a few behaviours a CDN or a gateway's result host really shows."""

    def __init__(self) -> None:
        self.paths: list[str] = []
        self.app = web.Application()
        r = self.app.router
        r.add_get("/file", self.file)
        r.add_get("/chunked", self.chunked)
        r.add_get("/gzip-bomb", self.gzip_bomb)
        r.add_get("/big-declared", self.big_declared)
        r.add_get("/cut", self.cut)
        r.add_get("/status/{code}", self.status)
        r.add_get("/redirect", self.redirect)
        r.add_get("/host", self.host_then_file)
        self.hosts: list[str] = []
        self.runner = web.AppRunner(self.app)
        self.base = ""

    async def __aenter__(self) -> FileServer:
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        port = self.runner.addresses[0][1]
        self.base = f"http://127.0.0.1:{port}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.runner.cleanup()

    def _log(self, request: web.Request) -> None:
        self.paths.append(request.path_qs)

    async def file(self, request: web.Request) -> web.Response:
        self._log(request)
        return web.Response(body=BODY, content_type="video/mp4")

    async def chunked(self, request: web.Request) -> web.StreamResponse:
        """No Content-Length at all: only the streamed count can enforce the limit."""
        self._log(request)
        resp = web.StreamResponse()
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        for i in range(0, len(BODY), 10_000):
            await resp.write(BODY[i : i + 10_000])
        await resp.write_eof()
        return resp

    async def gzip_bomb(self, request: web.Request) -> web.Response:
        """Content-Length states the small compressed size; the decoded body is far larger."""
        self._log(request)
        packed = gzip.compress(b"\0" * 2_000_000)
        return web.Response(body=packed, headers={"Content-Encoding": "gzip",
                                                  "Content-Type": "video/mp4"})

    async def big_declared(self, request: web.Request) -> web.StreamResponse:
        self._log(request)
        resp = web.StreamResponse(headers={"Content-Length": "900000000"})
        await resp.prepare(request)
        await resp.write(b"x" * 1000)
        return resp

    async def cut(self, request: web.Request) -> web.StreamResponse:
        """Promises 100 kB, sends 30 kB, drops the connection."""
        self._log(request)
        resp = web.StreamResponse(headers={"Content-Length": "100000"})
        await resp.prepare(request)
        await resp.write(b"y" * 30_000)
        assert request.transport is not None
        request.transport.close()
        return resp

    async def status(self, request: web.Request) -> web.Response:
        self._log(request)
        return web.Response(status=int(request.match_info["code"]), text="nope")

    async def redirect(self, request: web.Request) -> web.Response:
        self._log(request)
        raise web.HTTPFound(request.query["to"])

    async def host_then_file(self, request: web.Request) -> web.Response:
        """Records the Host header the client sent, then sends it on to /file."""
        self._log(request)
        self.hosts.append(request.headers["Host"])
        raise web.HTTPFound("/file")


@pytest.fixture
async def server() -> AsyncIterator[FileServer]:
    async with FileServer() as s:
        yield s


@pytest.fixture(params=["aiohttp", "httpcore"])
async def client(request: pytest.FixtureRequest) -> AsyncIterator[httpx.AsyncClient]:
    """The client the bot builds (bot/httpclient.py) and httpx's own, which tests and callers
    may hand in: downloads keep every rule whichever carries them."""
    made = new_client(timeout=10) if request.param == "aiohttp" else httpx.AsyncClient(timeout=10)
    async with made as c:
        yield c


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


async def test_serves_a_file(server: FileServer, client: httpx.AsyncClient,
                             tmp_path: Path) -> None:
    dest = tmp_path / "out" / "video.mp4"
    n = await download(client, f"{server.base}/file", dest, max_bytes=1_000_000,
                       policy=LOOPBACK)
    assert n == len(BODY)
    assert dest.read_bytes() == BODY
    assert leftovers(dest.parent) == ["video.mp4"]


async def test_no_content_length_within_limit(server: FileServer, client: httpx.AsyncClient,
                                              tmp_path: Path) -> None:
    dest = tmp_path / "v.mp4"
    assert await download(client, f"{server.base}/chunked", dest, max_bytes=len(BODY),
                          policy=LOOPBACK) == len(
        BODY
    )
    assert dest.read_bytes() == BODY


async def test_no_content_length_over_limit_aborts(server: FileServer,
                                                   client: httpx.AsyncClient,
                                                   tmp_path: Path) -> None:
    dest = tmp_path / "v.mp4"
    with pytest.raises(DownloadError, match="limit"):
        await download(client, f"{server.base}/chunked", dest, max_bytes=len(BODY) - 1,
                       policy=LOOPBACK)
    assert leftovers(tmp_path) == []


async def test_lying_content_length_is_caught_by_the_count(
    server: FileServer, client: httpx.AsyncClient, tmp_path: Path
) -> None:
    dest = tmp_path / "v.mp4"
    with pytest.raises(DownloadError, match="limit"):
        await download(client, f"{server.base}/gzip-bomb", dest, max_bytes=100_000,
                       policy=LOOPBACK)
    assert leftovers(tmp_path) == []


async def test_declared_size_over_limit_refused(server: FileServer, client: httpx.AsyncClient,
                                                tmp_path: Path) -> None:
    with pytest.raises(DownloadError, match=r"858 MiB, more than the 1\.0 MiB limit"):
        await download(client, f"{server.base}/big-declared", tmp_path / "v.mp4",
                       max_bytes=1_000_000, policy=LOOPBACK)
    assert leftovers(tmp_path) == []


async def test_connection_dropped_midway(server: FileServer, client: httpx.AsyncClient,
                                         tmp_path: Path) -> None:
    with pytest.raises(DownloadError, match="failed"):
        await download(client, f"{server.base}/cut", tmp_path / "v.mp4", max_bytes=1_000_000,
                       policy=LOOPBACK)
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("code", [403, 404, 410])
async def test_gone_means_expired_and_hides_the_signature(
    server: FileServer, client: httpx.AsyncClient, tmp_path: Path, code: int
) -> None:
    url = f"{server.base}/status/{code}?X-Amz-Signature=SECRETSIG123&expires=99"
    with pytest.raises(ResultExpiredError) as info:
        await download(client, url, tmp_path / "v.mp4", max_bytes=1000, policy=LOOPBACK)
    assert info.value.status == code
    assert "SECRETSIG123" not in str(info.value)
    assert "expires=99" not in str(info.value)
    assert f"/status/{code}" in str(info.value)
    assert leftovers(tmp_path) == []


async def test_server_error_is_a_download_error_without_query(
    server: FileServer, client: httpx.AsyncClient, tmp_path: Path
) -> None:
    url = f"{server.base}/status/502?token=abcdefSECRET"
    with pytest.raises(DownloadError, match="HTTP 502") as info:
        await download(client, url, tmp_path / "v.mp4", max_bytes=1000, policy=LOOPBACK)
    assert not isinstance(info.value, ResultExpiredError)
    assert "abcdefSECRET" not in str(info.value)


async def test_disallowed_host_refused_without_a_request(
    server: FileServer, client: httpx.AsyncClient, tmp_path: Path
) -> None:
    with pytest.raises(DownloadError, match="not allowed"):
        await download(client, f"{server.base}/file", tmp_path / "v.mp4", max_bytes=10**6,
                       policy=LOOPBACK, allowed_hosts=("cdn.discordapp.com", ".runware.ai"))
    assert server.paths == []
    assert leftovers(tmp_path) == []


async def test_allowed_loopback_host_is_fetched(server: FileServer, client: httpx.AsyncClient,
                                                tmp_path: Path) -> None:
    n = await download(client, f"{server.base}/file", tmp_path / "v.mp4", max_bytes=10**6,
                       policy=LOOPBACK, allowed_hosts=("cdn.discordapp.com", "127.0.0.1"))
    assert n == len(BODY)


async def test_redirect_to_disallowed_host_is_refused(
    server: FileServer, client: httpx.AsyncClient, tmp_path: Path
) -> None:
    url = f"{server.base}/redirect?to=http://10.0.0.1/secret"
    with pytest.raises(DownloadError, match="only https"):
        await download(client, url, tmp_path / "v.mp4", max_bytes=10**6, policy=LOOPBACK)
    assert server.paths == ["/redirect?to=http://10.0.0.1/secret"]


async def test_redirect_within_allowed_hosts_is_followed(
    server: FileServer, client: httpx.AsyncClient, tmp_path: Path
) -> None:
    url = f"{server.base}/redirect?to=/file"
    n = await download(client, url, tmp_path / "v.mp4", max_bytes=10**6, policy=LOOPBACK)
    assert n == len(BODY)
    assert server.paths == ["/redirect?to=/file", "/file"]


@pytest.mark.parametrize("url", [
    "http://cdn.discordapp.com/attachments/1/2/a.png",
    "ftp://127.0.0.1/a.png",
    "http://127.0.0.2/a.png",
])
async def test_https_only_except_loopback(client: httpx.AsyncClient, tmp_path: Path,
                                          url: str) -> None:
    with pytest.raises(DownloadError, match="only https"):
        await download(client, url, tmp_path / "v.mp4", max_bytes=10**6, policy=LOOPBACK)


async def test_disk_full_removes_part(server: FileServer, client: httpx.AsyncClient,
                                      tmp_path: Path) -> None:
    if not Path("/dev/full").exists():  # pragma: no cover - every Linux has it
        pytest.fail("/dev/full is needed to provoke ENOSPC")
    dest = tmp_path / "v.mp4"
    part = tmp_path / "v.mp4.part"
    part.symlink_to("/dev/full")  # writes to the .part now fail with ENOSPC, as on a full disk
    with pytest.raises(DownloadError, match="disk is full"):
        await download(client, f"{server.base}/file", dest, max_bytes=10**6, policy=LOOPBACK)
    assert leftovers(tmp_path) == []


async def test_file_url_inside_root(client: httpx.AsyncClient, tmp_path: Path) -> None:
    root = tmp_path / "results"
    root.mkdir()
    (root / "a b.mp4").write_bytes(BODY)
    out = tmp_path / "out.mp4"
    url = (root / "a b.mp4").as_uri()
    assert await download(client, url, out, max_bytes=10**6, file_root=root) == len(BODY)
    assert out.read_bytes() == BODY
    with pytest.raises(DownloadError, match="limit"):
        await download(client, url, tmp_path / "small.mp4", max_bytes=1000, file_root=root)
    assert not (tmp_path / "small.mp4").exists()
    with pytest.raises(ResultExpiredError):
        await download(client, (root / "gone.mp4").as_uri(), out, max_bytes=10**6,
                       file_root=root)


async def test_file_url_outside_root_or_without_root(client: httpx.AsyncClient,
                                                     tmp_path: Path) -> None:
    root = tmp_path / "results"
    root.mkdir()
    secret = tmp_path / "secret.txt"
    secret.write_bytes(b"do not copy")
    (root / "link.mp4").symlink_to(secret)
    out = tmp_path / "out.mp4"
    for url in (secret.as_uri(), (root / "link.mp4").as_uri(),
                f"file://{root}/../secret.txt"):
        with pytest.raises(DownloadError, match="outside"):
            await download(client, url, out, max_bytes=10**6, file_root=root)
    with pytest.raises(DownloadError, match="not allowed"):
        await download(client, (root / "link.mp4").as_uri(), out, max_bytes=10**6)
    assert not out.exists()


@pytest.mark.parametrize(("url", "allowed", "expected"), [
    ("https://cdn.discordapp.com/a.png", ("cdn.discordapp.com",), True),
    ("https://media.cdn.discordapp.com/a.png", ("cdn.discordapp.com",), True),
    ("https://evilcdn.discordapp.com/a.png", ("cdn.discordapp.com",), False),
    ("https://cdn.discordapp.com.evil.net/a.png", ("cdn.discordapp.com",), False),
    ("https://im.runware.ai/v.mp4", (".runware.ai",), True),
    ("https://runware.ai/v.mp4", (".runware.ai",), True),
    ("https://notrunware.ai/v.mp4", (".runware.ai",), False),
    ("https://IM.RUNWARE.AI./v.mp4", (".runware.ai",), True),
    ("https://anything.example/v.mp4", (), True),
    ("not a url", (), False),
])
def test_host_allowed(url: str, allowed: tuple[str, ...], expected: bool) -> None:
    assert host_allowed(url, allowed) is expected


def test_safe_url_drops_query_and_credentials() -> None:
    shown = safe_url("https://user:pw@x.example:8443/v.mp4?sig=abc#frag")
    assert shown == "https://x.example:8443/v.mp4"


# ---- where a download may go (SEEDANCE_PRIVATE_HOSTS, address checks, pinning) --------------
def resolver(table: dict[str, list[str]]) -> tuple[list[str], NetworkPolicy]:
    """A fake DNS: names map to addresses; the list records every lookup."""
    asked: list[str] = []

    async def resolve(host: str, port: int) -> list[str]:
        asked.append(host)
        return table[host]

    return asked, NetworkPolicy(resolve=resolve)


@pytest.mark.parametrize("addresses", [
    ["127.0.0.1"], ["10.1.2.3"], ["192.168.0.7"], ["169.254.169.254"], ["100.64.0.1"],
    ["0.0.0.0"], ["::1"], ["fd00::1"], ["fe80::1"], ["::ffff:127.0.0.1"], ["224.0.0.1"],
    ["93.184.216.34", "127.0.0.1"],  # one private answer among public ones is enough
])
async def test_a_name_resolving_to_a_private_address_is_refused_before_connecting(
    client: httpx.AsyncClient, tmp_path: Path, addresses: list[str]
) -> None:
    asked, policy = resolver({"results.example": addresses})
    with pytest.raises(RefusedDownload, match="private or reserved address"):
        await download(client, "https://results.example/v.mp4", tmp_path / "v.mp4",
                       max_bytes=10**6, policy=policy)
    assert asked == ["results.example"]
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("url", [
    "https://127.0.0.1/x.png", "https://[::1]/x.png", "https://10.0.0.8/x.png",
    "https://[::ffff:10.0.0.8]/x.png", "https://169.254.169.254/latest/meta-data",
])
async def test_private_ip_literals_are_refused_by_default(client: httpx.AsyncClient,
                                                          tmp_path: Path, url: str) -> None:
    with pytest.raises(RefusedDownload, match="private or reserved"):
        await download(client, url, tmp_path / "v.mp4", max_bytes=10**6, policy=STRICT)


async def test_loopback_result_is_refused_unless_listed(server: FileServer,
                                                        client: httpx.AsyncClient,
                                                        tmp_path: Path) -> None:
    """The hole: a callback naming http://127.0.0.1:…/x.png got that file delivered."""
    https_url = f"https://127.0.0.1:{server.base.rsplit(':', 1)[1]}/file"
    with pytest.raises(RefusedDownload):
        await download(client, https_url, tmp_path / "v.mp4", max_bytes=10**6)
    with pytest.raises(RefusedDownload, match="only https"):
        await download(client, f"{server.base}/file", tmp_path / "v.mp4", max_bytes=10**6)
    assert server.paths == []


async def test_the_connection_goes_to_the_checked_address(server: FileServer,
                                                          client: httpx.AsyncClient,
                                                          tmp_path: Path) -> None:
    """Pinning: the name is resolved once per hop, by us, and the request goes to that
    address with the name kept in the Host header (a second DNS answer cannot swap it)."""
    port = int(server.base.rsplit(":", 1)[1])
    asked, plain = resolver({"files.internal": ["127.0.0.1"]})
    policy = NetworkPolicy(frozenset({"files.internal"}), resolve=plain.resolve)
    n = await download(client, f"http://files.internal:{port}/host", tmp_path / "v.mp4",
                       max_bytes=10**6, policy=policy)
    assert n == len(BODY)
    assert server.hosts == [f"files.internal:{port}"]
    assert asked == ["files.internal", "files.internal"]  # the redirect hop is checked again


async def test_redirect_from_a_listed_host_to_a_private_one_is_refused(
    server: FileServer, client: httpx.AsyncClient, tmp_path: Path
) -> None:
    asked, plain = resolver({"sneaky.example": ["10.0.0.5"]})
    policy = NetworkPolicy(private_networks=LOOPBACK.private_networks, resolve=plain.resolve)
    url = f"{server.base}/redirect?to=https://sneaky.example/secret"
    with pytest.raises(RefusedDownload, match="private or reserved"):
        await download(client, url, tmp_path / "v.mp4", max_bytes=10**6, policy=policy)
    assert asked == ["sneaky.example"]


async def test_trusted_policy_is_the_operators_own_network(server: FileServer,
                                                           client: httpx.AsyncClient,
                                                           tmp_path: Path) -> None:
    """The CLI's user is the operator: their private URLs may be inputs."""
    n = await download(client, f"{server.base}/file", tmp_path / "v.mp4", max_bytes=10**6,
                       policy=STRICT.trusting())
    assert n == len(BODY)


def test_private_hosts_setting_is_parsed() -> None:
    policy = NetworkPolicy.parse(" proxy.internal., 10.0.0.0/8 ,[::1], 192.168.1.5 ")
    assert policy.private_hosts == frozenset({"proxy.internal"})
    assert policy.listed("PROXY.internal") and policy.listed("10.9.8.7")
    assert policy.listed("::1") and policy.listed("192.168.1.5")
    assert not policy.listed("192.168.1.6") and not policy.listed("other.internal")
    for bad in ("10.0.0.0/33", "http://x", "a b"):
        with pytest.raises(ValueError):
            NetworkPolicy.parse(bad)


@pytest.mark.parametrize(("text", "public"), [
    ("93.184.216.34", True), ("2606:4700::1111", True), ("127.0.0.1", False),
    ("::ffff:8.8.8.8", True), ("::ffff:192.168.0.1", False), ("198.18.0.1", False),
])
def test_is_public(text: str, public: bool) -> None:
    import ipaddress

    assert is_public(ipaddress.ip_address(text)) is public
