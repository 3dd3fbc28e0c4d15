"""Every reason the bot says no to a person, as a type: front ends render them, never decide them.

All are `bot.errors.Refusal`s (nothing written or spent; the CLI exits 2). The admission limits
checked in the job's own transaction (credits, queued caps, the per-minute rate) are raised by
the engine as `QuotaExceeded`, `QueueFull` and `RateLimited`, Refusals too.
"""

from __future__ import annotations

from bot.errors import Refusal


class Blocked(Refusal):
    """The server's admins blocked this member."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        if reason:
            super().__init__(key="errors.refusal.blocked_because", reason=reason)
        else:
            super().__init__(key="errors.refusal.blocked")


class NotInThisChannel(Refusal):
    def __init__(self, channels: tuple[str, ...]) -> None:
        self.channels = channels
        super().__init__(key="errors.refusal.not_in_this_channel",
                         channels=", ".join(f"<#{c}>" for c in channels))


class RoleRequired(Refusal):
    def __init__(self, roles: tuple[str, ...]) -> None:
        self.roles = roles
        names = ", ".join(f"<@&{r}>" for r in roles)
        super().__init__(key="errors.refusal.role_required", roles=names)


class BlockedWords(Refusal):
    """The prompt breaks a blocklist rule. Names the rule, never the matched words (a
    screenshot of the refusal should not spread the term)."""

    def __init__(self, rule_id: int) -> None:
        self.rule_id = rule_id
        super().__init__(key="errors.refusal.blocked_words", rule_id=rule_id)


class EventClosed(Refusal):
    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(key="errors.refusal.event_closed", name=name)


class VotingClosed(Refusal):
    """The event's votes are closed (they close with its entries)."""

    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(key="errors.refusal.voting_closed", name=name)


class ReviewUnavailable(Refusal):
    """Moderation is on but nobody could review: fail closed."""

    def __init__(self) -> None:
        super().__init__(key="errors.refusal.review_unavailable")


class ReviewedServer(Refusal):
    """A personal job (the app installed to the user) in a server whose moderators review
    every video: it cannot go through their review, so it is refused, never shown unreviewed."""

    def __init__(self) -> None:
        super().__init__(key="installs.refusal.reviewed_server")


class GatewayUnavailable(Refusal):
    """The gateway asked for cannot be used here (no key configured, unknown name)."""

    def __init__(self, provider: str, why: str) -> None:
        """`why` is the gateway's own words, or a `Said` (bot/i18n) when the bot's."""
        self.provider = provider
        super().__init__(key="errors.refusal.gateway_unavailable", provider=provider, why=why)


class NotAllowed(Refusal):
    """The person may not act on this job or this setting."""


class NothingThere(Refusal):
    """What was asked for does not exist (any more): a job, an event, a file."""


class BadSetting(Refusal):
    """A setting an admin tried is not allowed; the message says which and why."""


class UnfinishedJobs(Refusal):
    """Deleting a member's data while their jobs still hold it."""

    def __init__(self, count: int) -> None:
        self.count = count
        super().__init__(key="errors.refusal.unfinished_jobs", count=count)
