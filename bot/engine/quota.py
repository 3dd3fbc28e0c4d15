"""Which credit limits apply to a user in a guild, and when their windows roll over.

Windows are UTC: a day is a UTC calendar day, a month a UTC calendar month, an event has no
end. Limits come from `quota_limits` rows, most specific first, falling back to the settings:

- user (daily by default): a row for this user > the most generous row among the user's roles
  (a role override replaces the user default) > the guild's default user row > settings;
- guild (monthly): the guild's row > settings;
- event: a row for the event id; it caps each user's spending inside that event, instead of
  the user's daily limit (event credits are separate; daily windows ignore event spending).

A negative limit means unlimited. The checks themselves run inside the store's reservation
transaction, so nothing here can race.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from bot.errors import Refusal
from bot.i18n import Said
from bot.store import QuotaLimitRow, UsageCheck

#: The scope of jobs asked outside any server (the app installed to a user, a DM): one pool
#: for all of them, each person with their own daily credits in it (bot/service/people.py).
PERSONAL_SCOPE = "dm"
USER_WINDOW = "user"
GUILD_WINDOW = "guild"
EVENT_WINDOW = "event"


def window_bounds(window: str, now: float) -> tuple[float, float | None]:
    """(start, reset) of the window containing `now`; an event window never resets."""
    moment = datetime.fromtimestamp(now, UTC)
    if window == "day":
        start = moment.replace(hour=0, minute=0, second=0, microsecond=0)
        return start.timestamp(), (start + timedelta(days=1)).timestamp()
    if window == "month":
        start = moment.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
        if start.month == 12:
            reset = start.replace(year=start.year + 1, month=1)
        else:
            reset = start.replace(month=start.month + 1)
        return start.timestamp(), reset.timestamp()
    if window == "event":
        return 0.0, None
    raise ValueError(f"unknown quota window {window!r}; use day, month or event")


@dataclass(frozen=True)
class QuotaWindow:
    """One limit as a person sees it in /quota."""

    name: str  # user | guild | event
    window: str  # day | month | event
    used: int
    limit: int | None  # None: unlimited
    resets_at: float | None  # unix time; None for an event (or unlimited)
    personal: bool = False  # counted in the personal scope, not a server's

    @property
    def left(self) -> int | None:
        return None if self.limit is None else max(0, self.limit - self.used)

    def describe(self) -> Said:
        """The window as a sentence part ("your daily credits: 3 of 10 used, …"): English as a
        str, said in the reader's language by a front end (bot.i18n.say)."""
        what = Said(f"errors.quota.window.{self.name}_{self.window}")
        if self.personal and self.name == "guild":  # no server's: every personal job's
            what = Said("installs.quota.personal_pool")
        if self.limit is None:
            return Said("errors.quota.unlimited", what=what, used=self.used)
        if self.resets_at is None:
            return Said("errors.quota.limited", what=what, used=self.used, limit=self.limit,
                        left=self.left)
        stamp = datetime.fromtimestamp(self.resets_at, UTC).strftime("%Y-%m-%d %H:%M UTC")
        return Said("errors.quota.limited_resets", what=what, used=self.used, limit=self.limit,
                    left=self.left, when=stamp)


@dataclass(frozen=True)
class QuotaStatus:
    windows: tuple[QuotaWindow, ...]

    @property
    def left(self) -> int | None:
        """What can still be spent now: the tightest window (None when none is limited)."""
        lefts = [w.left for w in self.windows if w.left is not None]
        return min(lefts) if lefts else None

    @property
    def resets_at(self) -> float | None:
        """When the tightest window resets."""
        limited = [w for w in self.windows if w.left is not None]
        if not limited:
            return None
        return min(limited, key=lambda w: (w.left, w.resets_at or float("inf"))).resets_at

    def window(self, name: str) -> QuotaWindow | None:
        return next((w for w in self.windows if w.name == name), None)


class QuotaExceeded(Refusal):
    """A job would spend more than a limit allows; nothing was written or reserved."""

    def __init__(self, window: QuotaWindow, needed: int) -> None:
        self.window = window
        self.needed = needed
        self.left = window.left or 0
        self.resets_at = window.resets_at
        super().__init__(key="errors.quota.exceeded", needed=needed, window=window.describe())


@dataclass(frozen=True)
class Applicable:
    """The limits resolved for one user in one guild (before reading any usage)."""

    user_limit: int
    user_window: str
    guild_limit: int
    event_limit: int | None = None


def resolve_limits(
    rows: Sequence[QuotaLimitRow],
    *,
    user_id: str,
    role_ids: Sequence[str],
    event_id: str | None,
    default_user_daily: int,
    default_guild_monthly: int,
) -> Applicable:
    by_key = {(r.scope, r.subject_id): r for r in rows}
    user_row = by_key.get(("user", user_id))
    if user_row is None:
        role_rows = [by_key[("role", r)] for r in role_ids if ("role", r) in by_key]
        if role_rows:
            # The most generous role wins; unlimited (< 0) beats any number.
            user_row = max(role_rows, key=lambda r: float("inf") if r.credits < 0 else r.credits)
    if user_row is None:
        user_row = by_key.get(("user", ""))
    user_limit, user_window = (
        (user_row.credits, user_row.window) if user_row else (default_user_daily, "day")
    )
    if user_window == "event":
        user_window = "day"
    guild_row = by_key.get(("guild", ""))
    guild_limit = guild_row.credits if guild_row else default_guild_monthly
    event_limit = None
    if event_id is not None and ("event", event_id) in by_key:
        event_limit = by_key[("event", event_id)].credits
    return Applicable(user_limit, user_window, guild_limit, event_limit)


def checks_for(
    applicable: Applicable, *, guild_id: str, user_id: str, event_id: str | None, now: float
) -> list[UsageCheck]:
    """The usage checks a reservation must pass, tightest scopes first.

    Event credits are separate from daily ones: a job inside an event with its own limit is
    checked against that limit (and the server's month), and daily windows ignore event spend.
    """
    guild_since, _ = window_bounds("month", now)
    guild = UsageCheck(GUILD_WINDOW, guild_id, applicable.guild_limit, guild_since)
    if applicable.event_limit is not None and event_id is not None:
        event = UsageCheck(EVENT_WINDOW, guild_id, applicable.event_limit, 0.0, user_id=user_id,
                           event_id=event_id)
        return [event, guild]
    user_since, _ = window_bounds(applicable.user_window, now)
    user = UsageCheck(USER_WINDOW, guild_id, applicable.user_limit, user_since, user_id=user_id,
                      outside_events=True)
    return [user, guild]


def window_of(check: UsageCheck, applicable: Applicable, used: int, now: float) -> QuotaWindow:
    """How a checked window looks to a person."""
    window = {
        USER_WINDOW: applicable.user_window, GUILD_WINDOW: "month", EVENT_WINDOW: "event"
    }[check.name]
    _, reset = window_bounds(window, now)
    limit = None if check.limit < 0 else check.limit
    return QuotaWindow(check.name, window, used, limit, reset if limit is not None else None,
                       personal=check.guild_id == PERSONAL_SCOPE)
