"""The callback receiver: gateways POST task updates here instead of waiting to be polled.

Each job gets its own URL, `{base}/callbacks/{provider}/{job_id}/{token}`, whose token is an
HMAC of provider and job under a local secret: unguessable, yet nothing has to be stored to
check it. Gateways redeliver, so repeats of the same update are acknowledged but passed on once.
Tokens and secrets never reach a log (aiohttp's access log, which prints paths, is off).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import os
import secrets as secrets_mod
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable, Mapping
from pathlib import Path
from urllib.parse import quote, urlsplit

from aiohttp import web

from bot.config import Settings
from bot.health import Exposition, Probe, add_health_route, add_metrics_route, serve
from bot.library_links import BlobReader, add_library_route
from bot.models import TaskState
from bot.providers.base import Capabilities, Provider

log = logging.getLogger(__name__)

Sink = Callable[[str, TaskState], Awaitable[None]]

LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
MAX_BODY = 1024 * 1024  # 1 MiB: a task update is a few hundred bytes
TOKEN_CHARS = 32
SECRET_FILE = "webhook_secret"

_DedupKey = tuple[str, str, str, str, tuple[str, ...]]


def callback_token(secret: str, provider: str, job_id: str) -> str:
    """hex HMAC-SHA256(secret, "provider:job_id"), truncated to 32 characters (128 bits)."""
    digest = hmac.new(secret.encode(), f"{provider}:{job_id}".encode(), hashlib.sha256)
    return digest.hexdigest()[:TOKEN_CHARS]


def load_or_create_secret(settings: Settings) -> str:
    """SEEDANCE_WEBHOOK_SECRET, else a random one kept in `data_dir/webhook_secret` (0600).

    Persisting it keeps callback URLs of jobs submitted before a restart valid.
    """
    if settings.seedance_webhook_secret:
        return settings.seedance_webhook_secret
    path = Path(settings.data_dir) / SECRET_FILE
    try:
        existing = path.read_text(encoding="ascii").strip()
    except FileNotFoundError:
        existing = ""
    if existing:
        return existing
    path.parent.mkdir(parents=True, exist_ok=True)
    value = secrets_mod.token_hex(32)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process won the race (or left an empty file)
        existing = path.read_text(encoding="ascii").strip()
        if existing:
            return existing
        fd = os.open(path, os.O_WRONLY | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as fh:
        fh.write(value + "\n")
    os.chmod(path, 0o600)
    return value


class CallbackReceiver:
    """An aiohttp server that authenticates gateway callbacks and hands new states to `sink`."""

    def __init__(
        self,
        providers: Mapping[str, Provider],
        sink: Sink,
        *,
        base_url: str,
        secret: str,
        host: str = "0.0.0.0",
        port: int = 8080,
        memory: int = 4096,
        health: Probe | None = None,
        metrics: Exposition | None = None,
        library: BlobReader | None = None,
    ) -> None:
        if not secret:
            raise ValueError("the callback receiver needs a secret to make URL tokens")
        self.providers = dict(providers)
        self.sink = sink
        self.base_url = base_url.rstrip("/")
        self._secret = secret
        self.host = host
        self.port = port
        self._memory = memory
        self._seen: OrderedDict[_DedupKey, None] = OrderedDict()
        self._locks: dict[_DedupKey, tuple[asyncio.Lock, int]] = {}
        self._runner: web.AppRunner | None = None
        self._bound_port: int | None = None
        self.app = web.Application(client_max_size=MAX_BODY)
        self.app.router.add_post("/callbacks/{provider}/{job_id}/{token}", self._handle)
        if health is not None:
            add_health_route(self.app, health)
        if metrics is not None:
            add_metrics_route(self.app, metrics)
        if library is not None:  # server-library files for link-only gateways
            add_library_route(self.app, secret, library)

    def url_for(self, provider: str, job_id: str) -> str:
        """The callback URL to give the gateway when submitting `job_id`."""
        token = callback_token(self._secret, provider, job_id)
        where = f"{quote(provider, safe='')}/{quote(job_id, safe='')}"
        return f"{self.base_url}/callbacks/{where}/{token}"

    @property
    def bound_port(self) -> int:
        """The port actually listened on (useful with port 0)."""
        if self._bound_port is None:
            raise RuntimeError("the callback receiver is not started")
        return self._bound_port

    async def start(self) -> None:
        self._runner, self._bound_port = await serve(self.app, self.host, self.port)
        log.info("callback receiver listening on %s:%s", self.host, self._bound_port)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
            self._bound_port = None

    async def __aenter__(self) -> CallbackReceiver:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # ---- internals ------------------------------------------------------------------------
    def _authentic_url(self, provider_name: str, job_id: str, token: str) -> bool:
        expected = callback_token(self._secret, provider_name, job_id)
        return hmac.compare_digest(expected.encode(), token.encode("utf-8", "replace"))

    async def _handle(self, request: web.Request) -> web.Response:
        provider_name = request.match_info["provider"]
        job_id = request.match_info["job_id"]
        token = request.match_info["token"]
        provider = self.providers.get(provider_name)
        # Same answer for an unknown provider and a wrong token: nothing to learn by probing.
        if provider is None or not self._authentic_url(provider_name, job_id, token):
            return web.Response(status=404)
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            log.warning("callback for %s job %s refused: body too large", provider_name, job_id)
            return web.Response(status=413)
        if not provider.verify_callback(request.headers, body):
            log.warning("callback for %s job %s refused: bad signature", provider_name, job_id)
            return web.Response(status=401)
        try:
            state = provider.parse_callback(request.headers, body)
            state = state.model_copy(update={"gateway": provider_name})
        except Exception as exc:  # any malformed body, whatever the parser raised
            log.warning(
                "callback for %s job %s malformed: %s", provider_name, job_id, type(exc).__name__
            )
            return web.Response(status=400, text="malformed callback body")
        key: _DedupKey = (
            provider_name, job_id, state.task_id, state.status.value,
            tuple(state.result.video_urls) if state.result else (),
        )
        # Concurrent deliveries of one update queue on one lock, so only one reaches the sink.
        lock, waiting = self._locks.get(key) or (asyncio.Lock(), 0)
        self._locks[key] = (lock, waiting + 1)
        try:
            async with lock:
                if key in self._seen:
                    self._seen.move_to_end(key)
                    return web.Response(status=200, text="ok (duplicate)")
                try:
                    await self.sink(job_id, state)
                except Exception:
                    # 5xx makes the gateway deliver again; the update is not remembered.
                    log.exception("callback sink failed for %s job %s", provider_name, job_id)
                    return web.Response(status=500)
                self._remember(key)
        finally:
            lock, waiting = self._locks[key]
            if waiting <= 1:
                del self._locks[key]
            else:
                self._locks[key] = (lock, waiting - 1)
        return web.Response(status=200, text="ok")

    def _remember(self, key: _DedupKey) -> None:
        self._seen[key] = None
        while len(self._seen) > self._memory:
            self._seen.popitem(last=False)


def https_problem(base_url: str, capabilities: Iterable[Capabilities]) -> str | None:
    """Why `base_url` cannot receive the callbacks of these gateways, or None.

    A gateway that calls back only HTTPS URLs would never reach an http:// receiver: its jobs
    would fall back to slow polling with no word why. Loopback stays allowed (tests, a local
    TLS-terminating proxy in front)."""
    parts = urlsplit(base_url)
    if parts.scheme.lower() == "https" or (parts.hostname or "") in LOOPBACK_NAMES:
        return None
    needing = sorted({c.provider for c in capabilities if c.webhooks and c.callbacks_need_https})
    if not needing:
        return None
    return (f"SEEDANCE_WEBHOOK_BASE_URL must be an https:// URL: {', '.join(needing)} calls "
            f"back HTTPS URLs only (got {base_url})")


def build_receiver(
    settings: Settings, providers: Mapping[str, Provider], sink: Sink
) -> CallbackReceiver | None:
    """The receiver the settings ask for, or None when SEEDANCE_WEBHOOK_BASE_URL is unset."""
    if not settings.seedance_webhook_base_url:
        return None
    return CallbackReceiver(
        providers,
        sink,
        base_url=settings.seedance_webhook_base_url,
        secret=load_or_create_secret(settings),
        port=settings.seedance_webhook_port,
    )
