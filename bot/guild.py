"""A server's own settings, typed: what `/seedance-admin` sets and every front end reads.

Stored whole as one JSON object per guild (bot/store), validated whole on every write, so a
typo'd key or a value of the wrong kind is refused where it is made instead of being read back
as "not set" somewhere else. Everything has a default that means "not set by the server":
the bot's configuration (Settings) and the engine's limits apply then.
"""

from __future__ import annotations

import logging
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from bot.config import ProviderName
from bot.models import Ratio, Resolution, SafetyCheck

log = logging.getLogger(__name__)


class ReviewMode(StrEnum):
    """What moderators see before anyone else does."""

    OFF = "off"
    PROMPTS = "prompts"  # a prompt (and its files) waits for approval before generation
    RESULTS = "results"  # a finished video waits for approval before it is posted
    BOTH = "both"

    @property
    def prompts(self) -> bool:
        return self in (ReviewMode.PROMPTS, ReviewMode.BOTH)

    @property
    def results(self) -> bool:
        return self in (ReviewMode.RESULTS, ReviewMode.BOTH)

    @classmethod
    def of(cls, value: object) -> ReviewMode:
        try:
            return cls(str(value))
        except ValueError:
            return cls.OFF


#: Bounds of what an admin may set: generous, but a typo of 10,000 is refused.
MAX_RUNNING = 1000
MAX_QUEUED = 10_000


class GuildLimits(BaseModel):
    """How much of the bot one server may hold at once; None: the bot's default."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    running: int | None = Field(default=None, ge=1, le=MAX_RUNNING)  # jobs running at once
    queued: int | None = Field(default=None, ge=1, le=MAX_QUEUED)  # jobs waiting at once
    user_running: int | None = Field(default=None, ge=1, le=MAX_RUNNING)  # per member
    user_queued: int | None = Field(default=None, ge=1, le=MAX_QUEUED)  # per member


class GuildSettings(BaseModel):
    """One server's settings. Unknown keys are refused; ids are Discord snowflakes as text."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    provider: ProviderName | None = None
    model: str | None = None  # belongs to `provider`: used only on that gateway
    #: The server's own ordered failover list (bot/service/failover.py); empty: none.
    providers: tuple[ProviderName, ...] = ()
    resolution: Resolution | None = None
    duration: int | None = Field(default=None, ge=4, le=15)
    audio: bool | None = None
    #: Applied where the gateway's table takes it (like `audio`); a member's choice wins.
    ratio: Ratio | None = None
    watermark: bool | None = None
    allowed_channels: tuple[str, ...] = ()  # empty: every channel
    allowed_roles: tuple[str, ...] = ()  # empty: everyone
    moderation: ReviewMode = ReviewMode.OFF
    mod_channel: str | None = None  # where review cards go
    audit_channel: str | None = None
    audit_since: float | None = None  # when the audit log was switched on (unix time)
    rate_per_minute: int | None = Field(default=None, ge=1, le=60)
    #: The gateway's own check of finished videos, where it has one (Runware); None: key
    #: frames when results are reviewed, else the gateway account's default.
    safety: SafetyCheck | None = None
    limits: GuildLimits = GuildLimits()
    #: Results and status as components-v2 cards; None: the bot's default
    #: (SEEDANCE_RESULT_CARDS), False: the older embeds (cogs/utils/layout.py).
    cards: bool | None = None
    #: Prompts on result cards behind a spoiler, for servers that ask for it.
    spoiler_prompts: bool = False

    @field_validator("allowed_channels", "allowed_roles", mode="before")
    @classmethod
    def _ids(cls, value: Any) -> Any:
        if isinstance(value, list | tuple):
            return tuple(str(v) for v in value)
        return value

    @field_validator("mod_channel", "audit_channel", mode="before")
    @classmethod
    def _id(cls, value: Any) -> Any:
        return str(value) if isinstance(value, int) else value

    @property
    def review(self) -> ReviewMode:
        return self.moderation

    def changed(self, **values: Any) -> GuildSettings:
        """A copy with `values` set (None resets a setting to its default), validated whole.

        Raises `ValueError` naming the setting when a value is not allowed.
        """
        data = self.model_dump()
        for key, value in values.items():
            if key not in type(self).model_fields:
                raise ValueError(f"there is no server setting {key!r}")
            if value is None:
                data.pop(key, None)
            else:
                data[key] = value
        try:
            return type(self).model_validate(data)
        except ValidationError as exc:
            raise ValueError(_first_error(exc)) from None

    def stored(self) -> dict[str, Any]:
        """What the store keeps: only what differs from the defaults, in JSON types."""
        return self.model_dump(mode="json", exclude_defaults=True)

    @classmethod
    def from_stored(cls, data: dict[str, Any], *, guild_id: str = "") -> GuildSettings:
        """Read what the store kept. A key this version does not know (a newer version wrote
        it, or an old one this one retired) is dropped with a warning, not a crash."""
        known = {k: v for k, v in data.items() if k in cls.model_fields}
        dropped = sorted(set(data) - set(known))
        if dropped:
            log.warning("guild %s: ignoring unknown settings %s", guild_id, ", ".join(dropped))
        try:
            return cls.model_validate(known)
        except ValidationError as exc:
            log.warning("guild %s: settings unreadable (%s); using defaults", guild_id,
                        _first_error(exc))
            return cls()


class FixedSettings(BaseModel):
    """What an event fixes for every entry (`/event start`); None: not fixed.

    A model belongs to a gateway, so fixing the model fixes its `provider` too. A member's
    choice that contradicts a fixed value is refused before anything is spent
    (bot/service/options.py); a value left out takes the fixed one.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    provider: ProviderName | None = None
    model: str | None = None
    ratio: Ratio | None = None
    resolution: Resolution | None = None
    duration: int | None = Field(default=None, ge=4, le=15)
    audio: bool | None = None
    watermark: bool | None = None

    def values(self) -> dict[str, Any]:
        """The fixed settings only, in JSON types (what the store keeps)."""
        return self.model_dump(mode="json", exclude_none=True)

    def words(self) -> str:
        """`ratio 9:16 · audio off`, for announcements, status messages and the export."""
        shown = []
        for key, value in self.values().items():
            if isinstance(value, bool):
                value = "on" if value else "off"
            elif key == "duration":
                value = f"{value} s"
            shown.append(f"{key} {value}")
        return " · ".join(shown)

    @classmethod
    def from_stored(cls, data: dict[str, Any]) -> FixedSettings:
        """What the store kept; an unreadable value fixes nothing rather than crashing."""
        try:
            return cls.model_validate({k: v for k, v in data.items() if k in cls.model_fields})
        except ValidationError as exc:
            log.warning("event settings unreadable (%s); nothing fixed", _first_error(exc))
            return cls()


def _first_error(exc: ValidationError) -> str:
    err = exc.errors()[0]
    where = ".".join(str(p) for p in err["loc"]) or "settings"
    return f"{where}: {err['msg']}"
