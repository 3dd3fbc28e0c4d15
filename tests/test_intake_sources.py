"""Where inputs may come from and what becomes of their copies: a member's URL never reaches a
private address, the operator's CLI may use its own network, SEEDANCE_MAX_DOWNLOAD_BYTES caps
every input, and a refused request leaves no downloaded file behind."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from aiohttp import web

from bot.errors import InvalidInput
from bot.intake import MediaInput, RequestOptions, prepare
from bot.media.fetch import STRICT, NetworkPolicy
from bot.models import MediaKind, SourceKind
from bot.providers.base import Capabilities
from tests.media_factory import make_image

CAPS = Capabilities(provider="test", model="m", accepts={k: frozenset(SourceKind)
                                                         for k in MediaKind})
CDN = ("cdn.discordapp.com", "media.discordapp.net")


class Files:
    """A loopback web server holding one PNG (an attachment, or a page on the LAN)."""

    def __init__(self, png: bytes) -> None:
        self.png = png
        self.hits = 0
        self.app = web.Application()
        self.app.router.add_get("/cat.png", self.serve)
        self.runner = web.AppRunner(self.app)
        self.port = 0

    async def serve(self, request: web.Request) -> web.Response:
        self.hits += 1
        return web.Response(body=self.png, content_type="image/png")

    async def __aenter__(self) -> Files:
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.port = self.runner.addresses[0][1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.runner.cleanup()


@pytest.fixture
async def files(tmp_path: Path) -> AsyncIterator[Files]:
    png = make_image(tmp_path / "cat.png", 640, 480).read_bytes()
    async with Files(png) as f:
        yield f


async def problems(inputs: list[MediaInput], cache: Path, **kw: object) -> list[str]:
    async with httpx.AsyncClient() as http:
        try:
            await prepare(inputs, RequestOptions(prompt="a cat"), CAPS, http=http,
                          cache_dir=cache, **kw)  # type: ignore[arg-type]
        except InvalidInput as exc:
            return [str(p) for p in exc.problems]
    return []


def resolving_to(address: str) -> NetworkPolicy:
    async def resolve(host: str, port: int) -> list[str]:
        return [address]

    return NetworkPolicy(resolve=resolve)


@pytest.mark.parametrize("address", ["127.0.0.1", "10.0.0.7", "169.254.169.254", "::1"])
async def test_a_members_url_never_reaches_a_private_address(tmp_path: Path,
                                                             address: str) -> None:
    """Even on an allowed CDN host name: what the name resolves to decides."""
    found = await problems([MediaInput("https://cdn.discordapp.com/attachments/1/2/cat.png",
                                       name="file1 (cat.png)")],
                           tmp_path / "cache", allowed_hosts=CDN, policy=resolving_to(address))
    assert len(found) == 1
    assert "file1 (cat.png)" in found[0] and "private or reserved address" in found[0]
    assert not any((tmp_path / "cache").iterdir())


async def test_a_members_loopback_url_is_refused_without_a_request(files: Files,
                                                                   tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{files.port}/cat.png"
    found = await problems([MediaInput(url, name="file1")], tmp_path / "cache",
                           allowed_hosts=(*CDN, "127.0.0.1"), policy=STRICT)
    assert "only https" in found[0]
    assert files.hits == 0


async def test_the_operators_cli_may_use_its_own_network(files: Files, tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{files.port}/cat.png"
    async with httpx.AsyncClient() as http:
        req = await prepare([MediaInput(url)], RequestOptions(prompt="a cat"), CAPS, http=http,
                            cache_dir=tmp_path / "cache", policy=STRICT.trusting())
    assert req.references[0].kind is MediaKind.IMAGE and files.hits == 1


async def test_max_download_bytes_caps_local_and_remote_inputs(files: Files,
                                                               tmp_path: Path) -> None:
    """SEEDANCE_MAX_DOWNLOAD_BYTES used to be ignored for inputs (only the 50 MiB per-kind
    ceiling applied)."""
    big = make_image(tmp_path / "big.png", 2000, 2000)
    limit = big.stat().st_size - 1
    url = f"http://127.0.0.1:{files.port}/cat.png"
    found = await problems(
        [MediaInput(str(big), name="big.png"), MediaInput(url, name="remote.png")],
        tmp_path / "cache", max_bytes=min(limit, len(files.png) - 1),
        policy=NetworkPolicy.parse("127.0.0.1"))
    assert any("big.png" in p and "larger than" in p for p in found), found
    assert any("remote.png" in p and "limit" in p for p in found), found


async def test_a_refused_request_leaves_no_download_behind(files: Files, tmp_path: Path) -> None:
    """Refused uploads used to stay in data/cache for good."""
    cache = tmp_path / "cache"
    url = f"http://127.0.0.1:{files.port}/cat.png"
    async with httpx.AsyncClient() as http:
        with pytest.raises(InvalidInput, match="@image3"):
            await prepare([MediaInput(url, name="file1"), MediaInput(url, name="file2")],
                          RequestOptions(prompt="@image1 meets @image3"), CAPS, http=http,
                          cache_dir=cache, policy=NetworkPolicy.parse("127.0.0.1"))
    assert files.hits == 2
    assert sorted(cache.iterdir()) == []


async def test_each_request_downloads_its_own_copy(files: Files, tmp_path: Path) -> None:
    """Two requests for the same URL never share a file, so retention can delete one job's
    inputs without breaking the other's."""
    url = f"http://127.0.0.1:{files.port}/cat.png"
    paths = []
    async with httpx.AsyncClient() as http:
        for _ in range(2):
            req = await prepare([MediaInput(url)], RequestOptions(prompt="a cat"), CAPS,
                                http=http, cache_dir=tmp_path / "cache",
                                policy=NetworkPolicy.parse("127.0.0.1"))
            paths.append(req.references[0].local_path)
    assert paths[0] != paths[1] and all(Path(str(p)).is_file() for p in paths)
