"""The process's HTTP client: httpx's interface over aiohttp's connection pool.

Every module speaks httpx (bot/providers/http.py, bot/media/fetch.py, bot/intake.py), and
tests hand their own `httpx.AsyncClient` in. Underneath, httpx's own pool (httpcore on anyio)
costs about 1.3 ms of CPU per request with 32 on the wire, aiohttp's about 0.25 ms through this
transport (bench/README.md): with a create, polls and a download per job, that pool was the
largest single cost of a job. aiohttp is already installed (discord.py is built on it).

The transport is ours, not httpx-aiohttp's, because of one rule bot/providers/http.py lives
by: a create whose answer was lost may have made a task, so only an error that proves the
request never left may be retried. httpx-aiohttp reports a server that hung up after the
request was sent (`ServerDisconnectedError`) as `ConnectTimeout`, i.e. "never sent": a second
create, a second bill. Here:

- the connection could not be made (refused, DNS, TLS, connect timeout) → `ConnectError` /
  `ConnectTimeout` (never sent);
- anything after it was made (disconnect, reset, read timeout, a garbled answer) →
  `ReadTimeout` / `RemoteProtocolError` / `ReadError` (maybe sent).

URLs go out byte for byte (signed result URLs break if re-quoted); redirects are httpx's
business (and bot/media/fetch.py's, which checks every hop); the `sni_hostname` extension that
fetch.py uses to pin a checked address keeps TLS and the certificate on the host name; bodies
stream both ways; content encodings are decoded once, by httpx.
"""

from __future__ import annotations

import contextlib
import datetime
import ssl
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import httpx
from yarl import URL

#: Connections kept per client, as httpx's default pool.
MAX_CONNECTIONS = 100
_CHUNK = 1 << 16


@contextlib.contextmanager
def _mapped(*, sent: bool) -> Iterator[None]:
    """aiohttp's errors as the httpx errors that say whether the request may have left."""
    try:
        yield
    except aiohttp.ConnectionTimeoutError as exc:
        raise httpx.ConnectTimeout(str(exc) or "connect timed out") from exc
    except aiohttp.ClientConnectorError as exc:  # refused, DNS, TLS/certificate
        raise httpx.ConnectError(str(exc) or type(exc).__name__) from exc
    except (aiohttp.InvalidURL, aiohttp.NonHttpUrlClientError) as exc:
        raise httpx.UnsupportedProtocol(str(exc)) from exc
    except (TimeoutError, aiohttp.ServerTimeoutError) as exc:
        raise httpx.ReadTimeout(str(exc) or "read timed out") from exc
    except aiohttp.ClientPayloadError as exc:
        raise httpx.ReadError(str(exc) or "the body was cut short") from exc
    except aiohttp.ClientOSError as exc:  # reset or broken pipe on an open connection
        raise (httpx.ReadError if sent else httpx.WriteError)(str(exc)) from exc
    except aiohttp.ClientError as exc:  # disconnected, a malformed answer, …
        raise httpx.RemoteProtocolError(str(exc) or type(exc).__name__) from exc


class _Body(httpx.AsyncByteStream):
    """An aiohttp response's body, read as httpx reads a stream; closing it stamps the httpx
    response's `elapsed`, as httpx's own client does."""

    def __init__(self, response: aiohttp.ClientResponse, start: float) -> None:
        self._response = response
        self._start = start
        self.owner: httpx.Response | None = None

    async def __aiter__(self) -> AsyncIterator[bytes]:
        with _mapped(sent=True):
            async for chunk in self._response.content.iter_chunked(_CHUNK):
                yield chunk

    async def aclose(self) -> None:
        if self.owner is not None:
            self.owner.elapsed = datetime.timedelta(seconds=time.perf_counter() - self._start)
        # Back to the pool when the body was read to the end; closed otherwise.
        self._response.release()


class AiohttpTransport(httpx.AsyncBaseTransport):
    """An httpx transport that sends through one aiohttp session (made at first use, inside
    the running loop, as aiohttp requires)."""

    def __init__(self, *, verify: ssl.SSLContext | bool = True,
                 max_connections: int = MAX_CONNECTIONS) -> None:
        self._ssl: ssl.SSLContext | bool = verify
        self._max_connections = max_connections
        self._session: aiohttp.ClientSession | None = None

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self._max_connections, ssl=self._ssl),
                auto_decompress=False,  # httpx decodes Content-Encoding itself
                cookie_jar=aiohttp.DummyCookieJar(),  # httpx keeps cookies, if anyone
                timeout=aiohttp.ClientTimeout(total=None),
            )
        return self._session

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        start = time.perf_counter()
        timeout = request.extensions.get("timeout", {})
        data: Any
        # From the raw pairs: httpx's `multi_items()` guesses an encoding at every call.
        headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in request.headers.raw]
        try:
            data = request.content
        except httpx.RequestNotRead:
            data = request.stream  # an upload: streamed, not held in memory
            # aiohttp frames a body of unknown length itself and refuses to be told to.
            headers = [(k, v) for k, v in headers if k.lower() != "transfer-encoding"]
        kwargs: dict[str, Any] = {}
        sni = request.extensions.get("sni_hostname")
        if sni:
            kwargs["server_hostname"] = sni.decode() if isinstance(sni, bytes) else sni
        with _mapped(sent=False):
            response = await self._get_session().request(
                request.method,
                URL(str(request.url), encoded=True),
                headers=headers,
                data=data or None,
                allow_redirects=False,
                compress=None,
                skip_auto_headers=("Accept-Encoding", "User-Agent", "Content-Type"),
                timeout=aiohttp.ClientTimeout(
                    total=None, connect=timeout.get("pool"),
                    sock_connect=timeout.get("connect"), sock_read=timeout.get("read"),
                ),
                **kwargs,
            )
        body = _Body(response, start)
        body.owner = httpx.Response(
            status_code=response.status,
            headers=list(response.raw_headers),
            stream=body,
            extensions={"http_version": b"HTTP/1.1",
                        "reason_phrase": (response.reason or "").encode("ascii", "replace")},
        )
        return body.owner

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


class _NoCookies(httpx.Cookies):
    """A jar that keeps nothing a response sets."""

    def extract_cookies(self, response: httpx.Response) -> None:
        return None


class _Client(httpx.AsyncClient):
    """httpx's client without its cookie jar, sending straight to its aiohttp transport.

    No cookies: gateways authenticate by header and result hosts by signed URL, nothing here
    needs a cookie, a cookie one host set must never ride along to it again, and keeping them
    cost every response a urllib request built to parse its (absent) Set-Cookie (~2 % of the
    engine's CPU in bench/inflight.py).

    Straight to the transport: httpx's `send` passes every request through its auth flow,
    its redirect loop, its event hooks and the routing between mounted transports, which is
    40–60 µs of CPU a request (bench/README.md) for steps this client never takes (no auth,
    no hooks, no mounts, redirects not followed: bot/media/fetch.py checks each hop itself).
    So when none of them is asked for, `send` hands the request to the transport itself and
    does what httpx's would have done with the answer (all but its INFO line per request,
    which bot/cli.py silences anyway); when any is, httpx's own `send` runs.
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._cookies = _NoCookies(self._cookies)  # httpx's __init__ set a plain jar
        transport = kwargs.get("transport")
        # Mounts: proxies from the environment (trust_env) or given; httpx routes those.
        self._direct = transport if isinstance(transport, AiohttpTransport) \
            and not self._mounts and "default_encoding" not in kwargs else None

    async def send(self, request: httpx.Request, *, stream: bool = False,
                   auth: Any = httpx.USE_CLIENT_DEFAULT,
                   follow_redirects: Any = httpx.USE_CLIENT_DEFAULT) -> httpx.Response:
        direct = self._direct
        if direct is None or self.is_closed or auth is not httpx.USE_CLIENT_DEFAULT \
                or self.auth is not None or follow_redirects is True \
                or (self.follow_redirects and follow_redirects is not False) \
                or self.event_hooks["request"] or self.event_hooks["response"]:
            return await super().send(request, stream=stream, auth=auth,
                                      follow_redirects=follow_redirects)
        if "timeout" not in request.extensions:
            request.extensions = {**request.extensions, "timeout": self.timeout.as_dict()}
        try:
            response = await direct.handle_async_request(request)
        except httpx.RequestError as exc:
            exc.request = request
            raise
        response.request = request
        try:
            if response.has_redirect_location:  # not followed: say where it points
                response.next_request = self._build_redirect_request(request, response)
            if not stream:
                await response.aread()
        except BaseException:
            await response.aclose()
            raise
        return response

    @property
    def cookies(self) -> httpx.Cookies:
        return self._cookies

    @cookies.setter
    def cookies(self, cookies: Any) -> None:
        self._cookies = _NoCookies(cookies)


def new_client(*, timeout: float | httpx.Timeout = 60.0, **kwargs: Any) -> httpx.AsyncClient:
    """The client the bot, the worker and the CLI use (tests may bring their own)."""
    return _Client(transport=AiohttpTransport(), timeout=timeout, follow_redirects=False,
                   **kwargs)
