"""Whether a new job may be written: credits, queue places, and the member's pace.

Every guard is checked by `Store.create_job` inside the transaction that writes the job, so
nothing can slip in between a check and the insert: first the quota windows (bot/engine/quota.py),
then the server's cap on waiting jobs, the member's cap on waiting jobs, and the member's
per-minute rate. The first guard that fails becomes a `Refusal` here; nothing was written.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import replace

from bot.config import Settings
from bot.errors import Refusal
from bot.guild import GuildLimits
from bot.skus import Sku
from bot.store import Store
from bot.store.records import Admission, AdmissionRefused

from .quota import PERSONAL_SCOPE, Applicable, resolve_limits
from .scheduler import EngineLimits


class QueueFull(Refusal):
    """A queue is full: the member's own (`scope` "user") or the whole server's ("server")."""

    def __init__(self, scope: str, limit: int, waiting: int) -> None:
        self.scope = scope
        self.limit = limit
        self.waiting = waiting
        if scope == "user":
            super().__init__(key="errors.queue.user_full", count=waiting)
        else:
            super().__init__(key="errors.queue.server_full", count=waiting)


class RateLimited(Refusal):
    """The member started as many videos in this server in the last minute as it allows."""

    def __init__(self, per_minute: int) -> None:
        self.per_minute = per_minute
        super().__init__(key="errors.queue.rate_limited", count=per_minute)


def admission_for(
    limits: EngineLimits, guild: GuildLimits, per_minute: int | None
) -> Admission:
    """The admission caps of a server: its own where set, else the engine's defaults."""
    return Admission(
        guild_queued=guild.queued if guild.queued is not None else limits.guild_queued,
        user_queued=guild.user_queued if guild.user_queued is not None else limits.user_queued,
        per_minute=per_minute or None,
    )


def refusal(refused: AdmissionRefused) -> Refusal:
    """The sentence for a member whose job an admission cap refused."""
    if refused.cap == "per_minute":
        return RateLimited(refused.limit)
    return QueueFull("user" if refused.cap == "user_queued" else "server", refused.limit,
                     refused.count)


async def applicable_limits(
    settings: Settings, store: Store, *, guild_id: str, user_id: str, role_ids: Sequence[str],
    event_id: str | None, now: float | None = None,
) -> Applicable:
    """The credit limits that apply to a member in a server (and an event), raised by the
    active premium subscriptions (a limit < 0, unlimited, stays so)."""
    applicable = resolve_limits(
        await store.quota_limits(guild_id),
        user_id=user_id,
        role_ids=list(role_ids),
        event_id=event_id,
        default_user_daily=settings.seedance_user_daily_credits,
        default_guild_monthly=personal_pool(settings) if guild_id == PERSONAL_SCOPE
        else settings.seedance_guild_monthly_credits,
    )
    if not any(s.kind != "consumable" for s in settings.skus.values()):
        return applicable
    user, guild = await subscription_bonus(
        store, settings.skus, guild_id=guild_id, user_id=user_id,
        user_window=applicable.user_window, now=time.time() if now is None else now)
    return replace(
        applicable,
        user_limit=applicable.user_limit + user if applicable.user_limit >= 0 else -1,
        guild_limit=applicable.guild_limit + guild if applicable.guild_limit >= 0 else -1)


def personal_pool(settings: Settings) -> int:
    """The monthly credits all personal jobs share (SEEDANCE_PERSONAL_MONTHLY_CREDITS, else
    what a server gets)."""
    chosen = settings.seedance_personal_monthly_credits
    return settings.seedance_guild_monthly_credits if chosen is None else chosen


#: Days a month's credits are spread over for a daily window, and the other way round.
DAYS_PER_MONTH = 30


async def subscription_bonus(store: Store, skus: Mapping[str, Sku], *, guild_id: str,
                             user_id: str, user_window: str, now: float) -> tuple[int, int]:
    """(user, guild) credits active subscriptions (bot/service/premium.py) add to the
    member's window and the server's month. A month's credits count 1/30 a day on a daily
    window, a day's 30 times on a monthly one."""
    kinds = {s.kind for s in skus.values()}
    user = guild = 0
    if "guild_subscription" in kinds:
        guild = await store.subscription_credits("guild_subscription", guild_id, "month",
                                                 now=now)
    if "user_subscription" in kinds:
        same = await store.subscription_credits("user_subscription", user_id, user_window,
                                                now=now)
        other = await store.subscription_credits(
            "user_subscription", user_id, "month" if user_window == "day" else "day", now=now)
        user = same + (other // DAYS_PER_MONTH if user_window == "day"
                       else other * DAYS_PER_MONTH)
    return user, guild


__all__ = ["QueueFull", "RateLimited", "admission_for", "applicable_limits", "refusal",
           "subscription_bonus"]
