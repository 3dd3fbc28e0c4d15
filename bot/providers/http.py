"""HTTP transport shared by the gateway modules: retries that cannot double-bill.

Reads (polls, Runware's getResponse) are retried here: connect errors, 429/5xx and read
timeouts, up to `max_attempts` tries, honouring `Retry-After`, with bounded exponential backoff
and jitter; `sleep` is injectable so tests run in milliseconds.

A task create is sent exactly once per call (`HttpTransport.create`). Its one retry budget is
the engine's durable requeue (bot/engine/engine.py `_submit`, bounded by
`EngineLimits.submit_retries`, guarded by `resubmit_is_safe` in bot/engine/policies.py): it
survives a restart, frees the gateway slot for other jobs meanwhile and waits at least the
error's `retry_after`. Retrying here as well used to multiply the two budgets (5 tries per
submit x 4 submits = 20 creates). So each create error keeps what `resubmit_is_safe` reads:

* `retryable` - True for 429, 5xx and "could not connect"; False for a create whose answer was
  lost after sending (read timeout) unless the gateway dedupes creates (Runware's taskUUID);
* `status` - None when the request never left, else the HTTP status (429 and 503 say the
  gateway did not take the work; 500/502/504 may hide a task);
* `retry_after` - the gateway's hint in seconds, which the engine waits at least.

Worst case per job: 1 + `submit_retries` create calls (4 with the defaults). At most one of
them made a task: a gateway without idempotency is resent only after a 429, a 503 or a
connection that never opened, and Runware's repeats name the same taskUUID. The announced
retry without audio after an audio-moderation failure sends one more create (a second task,
the only one a job can make). A restart in the middle of a create resends it only where the
gateway dedupes creates; elsewhere the job fails without resending.
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import httpx

from bot.errors import (
    AuthenticationError,
    ContentRejectedError,
    GatewayError,
    GatewayUnavailableError,
    InsufficientBalanceError,
    InvalidRequestError,
    RateLimitError,
    TaskNotFoundError,
    classify_failure,
    scrub,
)
from bot.httpclient import new_client

log = logging.getLogger(__name__)

Sleep = Callable[[float], Awaitable[None]]
ErrorParser = Callable[[httpx.Response], GatewayError]

#: Tries per task create: the engine's requeue is its only retry budget (see above).
CREATE_ATTEMPTS = 1
#: Statuses after which the gateway provably did not take the work.
NOT_ACCEPTED = frozenset({429, 503})
TRANSIENT = frozenset({429, 500, 502, 503, 504})


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds from a Retry-After header (delta seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        parsed = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, parsed.timestamp() - (now if now is not None else time.time()))


def default_error(
    response: httpx.Response, *, provider: str, message: str, code: str | None = None
) -> GatewayError:
    """The error class for an HTTP status, for gateways whose bodies say little more."""
    status = response.status_code
    retry_after = parse_retry_after(response.headers.get("retry-after"))
    kwargs: dict[str, Any] = {"provider": provider, "status": status, "code": code}
    if status == 429:
        return RateLimitError(message, retry_after=retry_after, **kwargs)
    if status == 402:
        return InsufficientBalanceError(message, **kwargs)
    if status in (401, 403):
        return AuthenticationError(message, **kwargs)
    if status == 404:
        return TaskNotFoundError(message, **kwargs)
    if status >= 500:
        return GatewayUnavailableError(message, retry_after=retry_after, **kwargs)
    return InvalidRequestError(message, **kwargs)


def rejected_content(
    message: str, code: str | None, *, provider: str, status: int
) -> ContentRejectedError | None:
    """The moderation verdict a refused create's words carry, with its HTTP status; None when
    the words say nothing of moderation (the status alone decides the kind then)."""
    judged = classify_failure(message, code, provider=provider)
    if not isinstance(judged, ContentRejectedError):
        return None
    return type(judged)(message, provider=provider, status=status, code=code)


class Backoff:
    """Exponential backoff with full jitter, capped, honouring a server hint when given."""

    def __init__(self, base: float = 0.5, cap: float = 30.0, rng: random.Random | None = None):
        self.base = base
        self.cap = cap
        self.rng = rng or random.Random()

    def delay(self, attempt: int, hint: float | None = None) -> float:
        if hint is not None:
            return min(max(hint, 0.0), 300.0)  # honour the gateway, within reason
        return self.rng.uniform(self.base / 2, min(self.cap, self.base * 2**attempt))


#: Requests one gateway's transport keeps on the wire at once (below httpx's 100 connections).
MAX_IN_FLIGHT = 32


class HttpTransport:
    """One gateway's HTTP session: base URL, auth headers, retries, error mapping."""

    def __init__(
        self,
        provider: str,
        base_url: str,
        headers: Mapping[str, str],
        parse_error: ErrorParser,
        *,
        client: httpx.AsyncClient | None = None,
        sleep: Sleep = asyncio.sleep,
        max_attempts: int = 5,
        backoff: Backoff | None = None,
        timeout: float = 30.0,
        secrets: tuple[str, ...] = (),
        max_in_flight: int = MAX_IN_FLIGHT,
    ) -> None:
        self.provider = provider
        self.base_url = base_url.rstrip("/")
        self.headers = dict(headers)
        self.parse_error = parse_error
        self._own_client = client is None
        self.client = client or new_client(timeout=timeout)
        self.sleep = sleep
        self.max_attempts = max_attempts
        self.backoff = backoff or Backoff()
        self.secrets = tuple(s for s in (*secrets, *self.headers.values()) if s)
        self.requests_sent = 0  # for benchmarks: gateway requests per job
        # Requests on the wire at once. Without a bound, 2,000 polls falling due together
        # queue inside httpcore's pool, which rescans its whole queue at every event: the
        # loop spins and nothing finishes (bench/inflight.py). Waiting here costs nothing.
        self._slots = asyncio.Semaphore(max(1, max_in_flight))

    def url(self, path: str) -> str:
        return path if path.startswith("http") else f"{self.base_url}{path}"

    async def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        idempotent: bool,
        attempts: int | None = None,
    ) -> httpx.Response:
        """Send, retrying only where it cannot double-bill. Returns a 2xx response.

        `attempts` caps the tries (default `max_attempts`); `idempotent` says whether a call
        whose answer was lost may be repeated (and is reported as retryable).
        """
        limit = self.max_attempts if attempts is None else max(1, attempts)
        attempt = 0
        while True:
            attempt += 1
            try:
                async with self._slots:
                    self.requests_sent += 1
                    response = await self.client.request(
                        method, self.url(path), json=json, headers=self.headers
                    )
            except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
                # Never reached the gateway: always safe to repeat.
                error: GatewayError = GatewayUnavailableError(
                    f"could not connect ({type(exc).__name__})", provider=self.provider
                )
                error.sent = False
                if attempt >= limit:
                    raise error from None
            except (httpx.TimeoutException, httpx.RemoteProtocolError, httpx.ReadError) as exc:
                if not idempotent:
                    # The request may have created a task: repeating could bill twice. Not
                    # retryable, so the engine does not resubmit it either (a missing status
                    # alone would read as "never sent").
                    error = GatewayUnavailableError(
                        f"no answer from the gateway ({type(exc).__name__}); not sent again, "
                        "since it may already have started a task that would be billed twice",
                        provider=self.provider,
                    )
                    error.retryable = False
                    raise error from None
                error = GatewayUnavailableError(
                    f"no answer from the gateway ({type(exc).__name__})", provider=self.provider
                )
                if attempt >= limit:
                    raise error from None
            else:
                if response.is_success:
                    return response
                error = self._error(response)
                retry = response.status_code in NOT_ACCEPTED or (
                    idempotent and response.status_code in TRANSIENT
                )
                if not retry or attempt >= limit:
                    raise error
            delay = self.backoff.delay(attempt, error.retry_after)
            log.info(
                "%s %s %s: %s; retry %d in %.1fs",
                self.provider, method, path, error.kind, attempt, delay,
            )
            await self.sleep(delay)

    async def create(self, path: str, *, json: Any, idempotent: bool) -> httpx.Response:
        """POST a task create once (`CREATE_ATTEMPTS`): the engine requeues it if it may.

        `idempotent`: the gateway dedupes a repeated create (Runware's taskUUID), so a lost
        answer is still retryable; without that it is not, since the task may exist.
        """
        return await self.request("POST", path, json=json, idempotent=idempotent,
                                  attempts=CREATE_ATTEMPTS)

    def _error(self, response: httpx.Response) -> GatewayError:
        try:
            error = self.parse_error(response)
        except Exception:  # a malformed error body must still become a typed error
            error = default_error(
                response, provider=self.provider, message=response.text[:300] or "no details"
            )
        error.reason = scrub(error.reason, self.secrets)
        error.args = (error.describe(),)
        if error.retry_after is None:
            error.retry_after = parse_retry_after(response.headers.get("retry-after"))
        return error

    async def aclose(self) -> None:
        if self._own_client:
            await self.client.aclose()


def json_body(response: httpx.Response, provider: str) -> Any:
    """Parse a 2xx body; malformed JSON is a transient gateway fault, not a crash.

    The error carries the 2xx status: the gateway took the request, so a create must not be
    resubmitted as if it had never arrived (a poll is still retried: it is retryable).
    """
    try:
        return response.json()
    except ValueError:
        raise GatewayUnavailableError(
            "its answer could not be read (malformed JSON)", provider=provider,
            status=response.status_code,
        ) from None
