"""Links to server-library files, for gateways that take a kind of file only as a URL.

A library item has no lasting public link of its own (a Discord attachment's expires), so
where SEEDANCE_WEBHOOK_BASE_URL names this bot's public receiver, a request sends such a
gateway `{base}/library/{blob}/{token}/{name}`: the receiver (bot/webhooks.py) serves the bytes
from the database, so any process on any host answers. The token is an HMAC of the blob id
under the receiver's secret, so nothing is stored to check it and a link can't be guessed; the
bytes are there while an item or an unfinished job refers to them (bot/store/library.py).
"""

from __future__ import annotations

import hashlib
import hmac
import mimetypes
from collections.abc import Awaitable, Callable
from urllib.parse import quote

from aiohttp import web

#: Reads a blob's bytes (None when it is gone): `Store.library_blob`.
BlobReader = Callable[[str], Awaitable[bytes | None]]
TOKEN_CHARS = 32


def library_token(secret: str, blob_id: str) -> str:
    digest = hmac.new(secret.encode(), f"library:{blob_id}".encode(), hashlib.sha256)
    return digest.hexdigest()[:TOKEN_CHARS]


def library_url(base_url: str, secret: str, blob_id: str, filename: str) -> str:
    """The public link of a blob, ending in a file name (some gateways read its extension)."""
    return (f"{base_url.rstrip('/')}/library/{quote(blob_id, safe='')}/"
            f"{library_token(secret, blob_id)}/{quote(filename, safe='')}")


def add_library_route(app: web.Application, secret: str, read: BlobReader) -> None:
    """Serve `GET /library/{blob}/{token}/{name}` on the receiver's app."""

    async def serve(request: web.Request) -> web.Response:
        blob_id = request.match_info["blob"]
        expected = library_token(secret, blob_id)
        token = request.match_info["token"].encode("utf-8", "replace")
        if not hmac.compare_digest(expected.encode(), token):
            return web.Response(status=404)  # the same answer as for a blob that is gone
        data = await read(blob_id)
        if data is None:
            return web.Response(status=404)
        kind = mimetypes.guess_type(request.match_info["name"])[0]
        return web.Response(body=data, content_type=kind or "application/octet-stream")

    app.router.add_get("/library/{blob}/{token}/{name}", serve)
