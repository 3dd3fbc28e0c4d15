"""One error hierarchy for the whole core.

Three families: `InvalidInput` (the user's request is wrong; nothing was sent or spent; exit 2),
`Refusal` (the request is fine but a rule or a limit says no; nothing was spent; exit 2) and
`GatewayError` (a gateway or the network failed; exit 1). Gateway errors carry the
gateway's own reason, already scrubbed of secrets, and whether retrying can help.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from bot.i18n import Localized, Said, t


class SeedanceError(Exception):
    """Base of every error the core raises on purpose."""


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a request: which file or field, and a sentence saying rule and fix."""

    subject: str  # "file2 (cat.mov)", "duration", "prompt"
    message: str  # one sentence a Discord user understands, naming the rule and the fix
    #: The catalog key of `message` and its params (bot/i18n), so a front end can say it in
    #: the reader's language; `message` is the English text.
    key: str | None = None
    params: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def keyed(cls, subject: str, key: str, /, **params: Any) -> Problem:
        """A problem whose sentence comes from the catalog (English kept in `message`)."""
        return cls(subject, t("en", key, **params), key, params)

    def said(self) -> str:
        """The sentence as a value a front end says in the reader's language (bot/i18n `Said`),
        or the English text when it has no key."""
        return Said(self.key, **self.params) if self.key else self.message

    def __str__(self) -> str:
        return f"{self.subject}: {self.message}"


def said_together(problems: list[Problem]) -> str:
    """ "subject: sentence subject: sentence", each part said in the reader's language."""
    said: str = ""
    for problem in reversed(problems):
        line = Said("errors.problems.line", subject=problem.subject, message=problem.said())
        said = Said("errors.problems.then", first=line, rest=said) if said else line
    return said


class InvalidInput(SeedanceError):
    """The request breaks one or more rules. Raised before anything is spent."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = list(problems)
        super().__init__("; ".join(str(p) for p in self.problems))


class Refusal(Localized, SeedanceError):
    """A request the bot will not take, for a reason the person can act on: a block, a rule of
    the server, a limit. Nothing was written or spent. The message is a sentence for them:
    given as English text, or as a catalog `key` and params (bot/i18n) that a front end says in
    the reader's language (`bot.i18n.say`); str() is English (the CLI exits 2)."""

    def __init__(self, message: str = "", /, *, key: str | None = None, **params: Any) -> None:
        if key is not None:
            self.key, self.params = key, params
            message = t("en", key, **params)
        super().__init__(message)


class ConfigError(SeedanceError):
    """A configuration value is missing or invalid; the message names the variable."""


_SECRET_PATTERNS = [
    re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._\-]{6,}"),
    re.compile(r"(?i)((?:api[_-]?key|token|secret|signature|x-[a-z-]*key)[\"'=:\s]+)[^\s\"'&,}]{6,}"),
    re.compile(r"(?i)([?&](?:key|token|sig|signature|x-amz-signature|x-amz-credential)=)[^&\s\"']+"),
]


def scrub(text: str, secrets: list[str] | tuple[str, ...] = ()) -> str:
    """Remove API keys, bearer tokens and URL signatures from a message meant for a person."""
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, "***")
    for pattern in _SECRET_PATTERNS:
        text = pattern.sub(lambda m: m.group(1) + "***", text)
    return text


class GatewayError(SeedanceError):
    """A gateway or the network failed. `retryable` says whether the same call may succeed."""

    retryable = False
    kind = "gateway"
    #: False when the request provably never reached the gateway (no connection was made);
    #: None when nobody knows (bot/engine/fleet.py moves a job only on proof).
    sent: bool | None = None

    def __init__(
        self,
        message: str,
        *,
        provider: str = "",
        status: int | None = None,
        code: str | None = None,
        retry_after: float | None = None,
        refunded: bool | None = None,
    ) -> None:
        self.provider = provider
        self.status = status
        self.code = code
        self.retry_after = retry_after
        # What the gateway's own answer says about billing for the failed work: True (not
        # billed, or refunded), False (billed). None when it says nothing: the engine's refund
        # table (bot/engine/refunds.py) then decides from where in the job's life it failed, so
        # a new error type is never refunded (or charged) by accident of a default.
        self.refunded = refunded
        self.reason = message
        super().__init__(self.describe())

    def describe(self) -> str:
        who = self.provider or "gateway"
        bits = [f"{who}"]
        if self.status:
            bits.append(f"HTTP {self.status}")
        if self.code:
            bits.append(self.code)
        return f"{' '.join(bits)}: {self.reason}"


class InvalidRequestError(GatewayError):
    kind = "invalid_request"


class AuthenticationError(GatewayError):
    kind = "auth"


class InsufficientBalanceError(GatewayError):
    kind = "balance"


class RateLimitError(GatewayError):
    kind = "rate_limited"
    retryable = True


class GatewayUnavailableError(GatewayError):
    """5xx, connect errors, timeouts before a request was sent."""

    kind = "unavailable"
    retryable = True


class TaskNotFoundError(GatewayError):
    kind = "not_found"


class ContentRejectedError(GatewayError):
    """The gateway's moderation refused the prompt, an input or the output.

    Said as moderation, not as a fault: the person can change the prompt or the files.
    """

    kind = "moderation"

    def describe(self) -> str:
        who = self.provider or "the gateway"
        return (f"{who}'s safety check refused it ({self.reason}); try different words or "
                "files")


class AudioModerationError(ContentRejectedError):
    """Generated audio was flagged; the same request without audio usually succeeds."""

    kind = "audio_moderation"


class RealFaceError(ContentRejectedError):
    """An input looks like a real person; final, never retried."""

    kind = "real_face"


class TaskFailedError(GatewayError):
    kind = "task_failed"


class ResultExpiredError(GatewayError):
    """The result URL no longer works (every gateway's URLs expire, 12 h to 7 days)."""

    kind = "expired"


class DownloadError(SeedanceError):
    """A download was refused (host, size) or failed."""


class RefusedDownload(DownloadError):
    """A download refused for good: its URL breaks the address rules (scheme, host list, a
    private address, a file outside its folder), or its bytes are not the video or image they
    claim to be. Never retried as it is."""


_AUDIO_MODERATION = re.compile(r"(?i)audio\w*sensitive|sensitive\w*audio|audio content")
_REAL_FACE = re.compile(r"(?i)privacyinformation|real person|real[- ]face|celebrity")
_MODERATION = re.compile(
    r"(?i)sensitive|moderat|nsfw|safety|content[ _]?polic|blocked|inappropriate|violat"
)


def classify_failure(message: str, code: str | None, *, provider: str) -> GatewayError:
    """Map a gateway's failure text/code to the error kind the engine reacts to."""
    text = f"{code or ''} {message}"
    if _AUDIO_MODERATION.search(text):
        return AudioModerationError(message, provider=provider, code=code)
    if _REAL_FACE.search(text):
        return RealFaceError(message, provider=provider, code=code)
    if _MODERATION.search(text):
        return ContentRejectedError(message, provider=provider, code=code)
    return TaskFailedError(message or "the task failed", provider=provider, code=code)
