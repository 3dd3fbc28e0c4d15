"""A server's own settings, quotas, limits, blocklist, blocks and export: the rules of changing
them, for `/seedance-admin` (and any other front end). Every method needs an admin (on Discord,
Manage Server); each change is validated whole before it is written (bot/guild.py)."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from bot.config import Settings
from bot.engine.scheduler import EngineLimits
from bot.errors import ConfigError
from bot.guild import GuildLimits, GuildSettings, ReviewMode
from bot.models import Ratio, Resolution, SafetyCheck
from bot.moderation import fixed_words, jobs_csv, matching_rule, rule_problem
from bot.providers import model_refusal
from bot.providers.base import Capabilities, Provider
from bot.store import BlockRule, QuotaLimitRow, Store

from .people import Requester
from .refusals import BadSetting, NotAllowed

ListAction = Literal["add", "remove", "clear"]
#: `quota_limits` scopes an admin sets, and the window each is counted in.
QUOTA_WINDOWS = {"user": "day", "role": "day", "guild": "month"}


@dataclass(frozen=True)
class Overview:
    """Everything `/seedance-admin show` shows, as values."""

    settings: GuildSettings
    provider: str
    model: str | None
    limits: GuildLimits  # effective: the server's own, else the bot's defaults
    quotas: tuple[QuotaLimitRow, ...]
    rules: int
    blocked: int
    user_daily: int
    guild_monthly: int


@dataclass(frozen=True)
class Export:
    jobs: int
    filename: str
    data: bytes


def effective_limits(current: GuildSettings, defaults: EngineLimits) -> GuildLimits:
    """The caps that apply on a server: its own, else the bot's defaults."""
    own = current.limits
    return GuildLimits(
        running=own.running or defaults.guild_running,
        queued=own.queued or defaults.guild_queued,
        user_running=own.user_running or defaults.user_running,
        user_queued=own.user_queued or defaults.user_queued,
    )


class AdminService:
    def __init__(self, settings: Settings, store: Store, providers: Callable[[str], Provider],
                 *, limits: EngineLimits | None = None) -> None:
        self.settings = settings
        self.store = store
        self.providers = providers
        self.defaults = limits or EngineLimits()

    @staticmethod
    def _require(who: Requester) -> str:
        if not who.admin:
            raise NotAllowed(key="errors.setting.manage_server")
        return who.guild_id

    async def _change(self, who: Requester, **values: Any) -> GuildSettings:
        guild = self._require(who)

        def change(current: GuildSettings) -> GuildSettings:
            try:
                return current.changed(**values)
            except ValueError as exc:
                raise BadSetting(key="errors.setting.not_allowed", reason=str(exc)) from None

        return await self.store.update_guild_settings(guild, change)

    # ---- reading ----------------------------------------------------------------------------
    async def overview(self, who: Requester) -> Overview:
        guild = self._require(who)
        current = await self.store.guild_settings(guild)
        provider: str = current.provider or self.settings.seedance_provider
        fleet = () if current.provider else (current.providers or self.settings.providers)
        if fleet:  # an ordered failover list (bot/service/failover.py)
            provider = " → ".join(fleet)
        model = (current.model if current.provider else None) or self.settings.model_for(provider)
        return Overview(
            settings=current, provider=provider, model=model,
            limits=self.effective_limits(current),
            quotas=tuple(await self.store.quota_limits(guild)),
            rules=len(await self.store.block_rules(guild)),
            blocked=len(await self.store.user_blocks(guild)),
            user_daily=self.settings.seedance_user_daily_credits,
            guild_monthly=self.settings.seedance_guild_monthly_credits,
        )

    def effective_limits(self, current: GuildSettings) -> GuildLimits:
        return effective_limits(current, self.defaults)

    # ---- gateway and defaults ---------------------------------------------------------------
    async def set_provider(self, who: Requester, provider: str, model: str | None,
                           failover: Sequence[str] = ()) -> Capabilities:
        """One gateway for the server; with `failover`, an ordered list starting at `provider`
        that jobs move along when a gateway is down (bot/engine/fleet.py)."""
        self._require(who)
        order = [provider, *(n for n in failover if n != provider)]
        if failover and model:
            raise BadSetting(key="errors.setting.model_with_failover")
        for name in order:
            try:
                built = self.providers(name)
            except (ConfigError, KeyError, ValueError) as exc:
                raise BadSetting(key="errors.setting.cant_use", provider=name,
                                 reason=str(exc)) from None
        built = self.providers(provider)
        refusal = model_refusal(built, model)
        if refusal:
            raise BadSetting(key="errors.setting.cant_use", provider=provider, reason=refusal)
        caps = built.capabilities(model)
        if failover:
            await self._change(who, provider=None, model=None, providers=tuple(order))
        else:
            await self._change(who, provider=provider, model=model, providers=())
        return caps

    async def set_defaults(self, who: Requester, *, resolution: Resolution | None = None,
                           duration: int | None = None, audio: bool | None = None,
                           ratio: Ratio | None = None,
                           watermark: bool | None = None) -> GuildSettings:
        """What a member's request gets when they leave a setting out (ratio and watermark
        where the gateway takes them: bot/service/options.py)."""
        values: dict[str, Any] = {}
        if resolution is not None:
            values["resolution"] = resolution
        if duration is not None:
            values["duration"] = duration
        if audio is not None:
            values["audio"] = audio
        if ratio is not None:
            values["ratio"] = ratio
        if watermark is not None:
            values["watermark"] = watermark
        return await self._change(who, **values)

    async def set_limits(self, who: Requester, **caps: int | None) -> GuildSettings:
        """Running and queued caps for the server and per member; 0 restores the default."""
        guild = self._require(who)
        current = (await self.store.guild_settings(guild)).limits.model_dump()
        for key, value in caps.items():
            if value is not None:
                current[key] = value or None
        return await self._change(who, limits=current)

    # ---- where and who ----------------------------------------------------------------------
    async def edit_list(self, who: Requester, key: Literal["allowed_channels", "allowed_roles"],
                        action: ListAction, item: str | None) -> tuple[str, ...]:
        guild = self._require(who)
        if action != "clear" and item is None:
            raise BadSetting(key=f"errors.setting.which.{action}")
        current = list(getattr(await self.store.guild_settings(guild), key))
        if action == "clear" or item is None:
            current = []
        elif action == "add" and item not in current:
            current.append(item)
        elif action == "remove" and item in current:
            current.remove(item)
        changed = await self._change(who, **{key: tuple(current) or None})
        result: tuple[str, ...] = getattr(changed, key)
        return result

    async def set_moderation(self, who: Requester, mode: ReviewMode,
                             channel: str | None) -> GuildSettings:
        guild = self._require(who)
        target = channel or (await self.store.guild_settings(guild)).mod_channel
        if mode is not ReviewMode.OFF and not target:
            raise BadSetting(key="errors.setting.mod_channel")
        return await self._change(who, moderation=mode, mod_channel=target)

    async def set_audit_channel(self, who: Requester, channel: str | None) -> GuildSettings:
        if channel is None:
            return await self._change(who, audit_channel=None, audit_since=None)
        return await self._change(who, audit_channel=channel, audit_since=time.time())

    async def set_rate_limit(self, who: Requester, per_minute: int) -> GuildSettings:
        return await self._change(who, rate_per_minute=per_minute or None)

    async def set_safety(self, who: Requester, mode: SafetyCheck | None) -> GuildSettings:
        """The gateway's own check of finished videos (None: the default, key frames when
        results are reviewed); a flagged video goes to review, or is refused and refunded."""
        return await self._change(who, safety=mode)

    async def set_cards(self, who: Requester, cards: bool | None,
                        spoiler_prompts: bool | None) -> GuildSettings:
        """How results are shown: cards or embeds (None: the bot's default), prompts hidden
        behind a spoiler or not (None: unchanged)."""
        values: dict[str, Any] = {"cards": cards}
        if spoiler_prompts is not None:
            values["spoiler_prompts"] = spoiler_prompts
        return await self._change(who, **values)

    # ---- quotas -----------------------------------------------------------------------------
    async def set_quota(self, who: Requester, scope: str, subject: str,
                        credits: int) -> bool:
        """Set a limit (credits ≥ 0) or remove it (credits < 0: the default applies again).
        Returns whether anything was there to remove, or True for a set."""
        guild = self._require(who)
        if scope not in QUOTA_WINDOWS:
            raise BadSetting(key="errors.setting.no_quota", scope=repr(scope))
        if credits < 0:
            return await self.store.delete_quota_limit(scope, guild, subject)
        await self.store.set_quota_limit(
            QuotaLimitRow(scope, guild, subject, credits, QUOTA_WINDOWS[scope]), now=time.time())
        return True

    # ---- blocklist and blocks ---------------------------------------------------------------
    async def add_rule(self, who: Requester, kind: str, pattern: str) -> BlockRule:
        guild = self._require(who)
        problem = rule_problem(kind, pattern)
        if problem:
            raise BadSetting(key=problem.key, **problem.params)
        rule = await self.store.add_block_rule(guild, kind, pattern, added_by=who.user_id,
                                               now=time.time())
        if rule is None:
            raise BadSetting(key="errors.setting.rule_exists")
        return rule

    async def remove_rule(self, who: Requester, rule_id: int) -> BlockRule | None:
        return await self.store.remove_block_rule(self._require(who), rule_id)

    async def rules(self, who: Requester) -> Sequence[BlockRule]:
        return await self.store.block_rules(self._require(who))

    async def test_rule(self, who: Requester, text: str) -> BlockRule | None:
        return matching_rule(await self.store.block_rules(self._require(who)), text)

    async def block(self, who: Requester, user_id: str, reason: str) -> None:
        await self.store.set_user_block(self._require(who), user_id, reason,
                                        blocked_by=who.user_id, now=time.time())

    async def unblock(self, who: Requester, user_id: str) -> bool:
        return await self.store.remove_user_block(self._require(who), user_id)

    # ---- export -----------------------------------------------------------------------------
    async def export(self, who: Requester, since: str, until: str) -> Export:
        """The server's jobs asked for from `since` to `until` (UTC days, both included)."""
        guild = self._require(who)
        try:
            start = datetime.strptime(since, "%Y-%m-%d").replace(tzinfo=UTC)
            end = datetime.strptime(until, "%Y-%m-%d").replace(tzinfo=UTC) + timedelta(days=1)
        except ValueError:
            raise BadSetting(key="errors.setting.dates") from None
        if end <= start:
            raise BadSetting(key="errors.setting.until_before_since")
        jobs = await self.store.jobs_between(guild, start.timestamp(), end.timestamp())
        fixed = {e.id: fixed_words(e.fixed) for e in await self.store.events(guild) if e.fixed}
        voters: dict[str, list[str]] = {}
        for vote in await self.store.votes_in(guild, start.timestamp(), end.timestamp()):
            voters.setdefault(vote.job_id, []).append(vote.voter_id)
        return Export(len(jobs), f"seedance-jobs-{since}-to-{until}.csv",
                      jobs_csv(jobs, fixed, voters).encode("utf-8"))
