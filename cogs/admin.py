"""`/seedance-admin …`: a server's own settings, for people with Manage Server.

The group's default permissions hide it from others, every command checks Manage Server again
at run time (server admins can change who sees a command, not who may run it here), and the
AdminService (bot/service/admin.py) checks it a third time and makes every decision; this cog
only parses options and renders answers. A refused setting raises a `Refusal`, which the
command tree (cogs/app.py) answers privately.
"""

from __future__ import annotations

import io
from typing import TYPE_CHECKING, Any, Literal

import discord
from discord import app_commands
from discord.ext import commands

from bot.errors import Refusal
from bot.guild import ReviewMode
from bot.i18n import DEFAULT, say, t
from bot.models import Ratio, Resolution, SafetyCheck
from bot.service import AdminService, Overview, Requester
from cogs.utils.acks import acknowledged, defer
from cogs.utils.card_texts import cards_setting_text
from cogs.utils.core import requester_of
from cogs.utils.status import status_embed
from cogs.utils.texts import clip, limits_line

if TYPE_CHECKING:
    from cogs.app import SeedanceBot

ListAction = Literal["add", "remove", "clear"]


def _manage_guild() -> Any:
    return app_commands.checks.has_permissions(manage_guild=True)


def overview_text(o: Overview, lang: object = DEFAULT) -> str:
    """The server's settings as /seedance-admin show lists them, in the reader's language."""
    s = o.settings

    def word(key: str) -> str:
        return t(lang, f"cogs.admin.word.{key}")

    model_default = word("model_default")
    on_off = {True: word("on"), False: word("off")}
    lines = [
        t(lang, "cogs.admin.overview.provider", provider=o.provider,
          model=o.model or word("default")),
        t(lang, "cogs.admin.overview.defaults",
          resolution=s.resolution.value if s.resolution else model_default,
          duration=s.duration or model_default,
          audio=on_off[True] if s.audio is None else on_off[bool(s.audio)],
          ratio=s.ratio.value if s.ratio else model_default,
          watermark=on_off[bool(s.watermark)]),
        t(lang, "cogs.admin.overview.channels",
          channels=", ".join(f"<#{c}>" for c in s.allowed_channels) or word("all")),
        t(lang, "cogs.admin.overview.roles",
          roles=", ".join(f"<@&{r}>" for r in s.allowed_roles) or word("everyone")),
        t(lang, "cogs.admin.overview.quotas", user=o.user_daily, guild=o.guild_monthly),
        t(lang, "cogs.admin.overview.limits", limits=limits_line(o.limits)),
        t(lang, "cogs.admin.overview.moderation",
          mode=t(lang, f"cogs.review_mode.{s.moderation.value}"))
        + (t(lang, "cogs.admin.overview.mod_cards", channel=s.mod_channel)
           if s.mod_channel else ""),
        t(lang, "cogs.admin.overview.audit",
          where=f"<#{s.audit_channel}>" if s.audit_channel else word("off")),
        t(lang, "cogs.admin.overview.safety",
          mode=t(lang, f"cogs.admin.safety_mode.{s.safety.value}") if s.safety
          else word("safety_default")),
        t(lang, "cogs.admin.overview.rate", count=s.rate_per_minute) if s.rate_per_minute
        else t(lang, "cogs.admin.overview.rate_off"),
        t(lang, "cogs.admin.overview.blocklist", rules=o.rules, blocked=o.blocked),
    ]
    for row in o.quotas:
        who = {"user": f"<@{row.subject_id}>", "role": f"<@&{row.subject_id}>",
               "guild": t(lang, "cogs.admin.this_server"),
               "event": t(lang, "cogs.admin.overview.event", id=row.subject_id)}[row.scope]
        lines.append(t(lang, f"cogs.admin.quota_per.{row.window}", who=who,
                       credits=row.credits))
    return "\n".join(lines)


@app_commands.default_permissions(manage_guild=True)
@app_commands.guild_only()
class Admin(commands.GroupCog, group_name="seedance-admin",
            group_description="Server settings for the video bot (Manage Server)"):
    def __init__(self, bot: SeedanceBot) -> None:
        self.bot = bot
        super().__init__()

    @property
    def admin(self) -> AdminService:
        return self.bot.core.services.admin

    async def _reply(self, interaction: discord.Interaction[Any], text: str) -> None:
        await interaction.response.send_message(clip(text, 2000), ephemeral=True,
                                                allowed_mentions=discord.AllowedMentions.none())
        acknowledged(interaction)

    def _who(self, interaction: discord.Interaction[Any]) -> Requester:
        return requester_of(interaction)

    @app_commands.command(name="show", description="Show this server's settings and quotas")
    @_manage_guild()
    async def show(self, interaction: discord.Interaction[Any]) -> None:
        await self._reply(interaction, overview_text(await self.admin.overview(
            self._who(interaction)), interaction.locale))

    @app_commands.command(name="status", description="How each gateway is doing (whole bot)")
    @_manage_guild()
    async def status(self, interaction: discord.Interaction[Any]) -> None:
        await defer(interaction, ephemeral=True, thinking=True)
        fleet = await self.bot.core.services.fleet.status(self._who(interaction))
        await interaction.followup.send(embed=status_embed(fleet, interaction.locale),
                                        ephemeral=True)

    @app_commands.command(name="quota-user", description="Daily credits for one member")
    @app_commands.describe(credits="Credits per UTC day; -1 removes the override")
    @_manage_guild()
    async def quota_user(self, interaction: discord.Interaction[Any], member: discord.Member,
                         credits: app_commands.Range[int, -1, 1_000_000]) -> None:
        await self._set_quota(interaction, "user", str(member.id), credits, member.mention)

    @app_commands.command(name="quota-role", description="Daily credits for members of a role")
    @app_commands.describe(credits="Credits per UTC day; -1 removes the override")
    @_manage_guild()
    async def quota_role(self, interaction: discord.Interaction[Any], role: discord.Role,
                         credits: app_commands.Range[int, -1, 1_000_000]) -> None:
        await self._set_quota(interaction, "role", str(role.id), credits, role.mention)

    @app_commands.command(name="quota-server", description="Monthly credits for the server")
    @app_commands.describe(credits="Credits per UTC month; -1 restores the default")
    @_manage_guild()
    async def quota_server(self, interaction: discord.Interaction[Any],
                           credits: app_commands.Range[int, -1, 100_000_000]) -> None:
        await self._set_quota(interaction, "guild", "", credits,
                              t(interaction.locale, "cogs.admin.this_server"))

    async def _set_quota(self, interaction: discord.Interaction[Any], scope: str, subject: str,
                         credits: int, who: str) -> None:
        changed = await self.admin.set_quota(self._who(interaction), scope, subject, credits)
        lang = interaction.locale
        if credits < 0:
            await self._reply(interaction, t(lang, "cogs.admin.quota_removed", who=who)
                              if changed else t(lang, "cogs.admin.quota_none", who=who))
            return
        window = "month" if scope == "guild" else "day"
        await self._reply(interaction, t(lang, f"cogs.admin.quota_set.{window}", who=who,
                                         credits=credits))

    @app_commands.command(name="provider", description="Gateway and model for this server")
    @app_commands.describe(failover="Gateways to move to when it is down, in order, "
                                    "e.g. runware,anyfast")
    @_manage_guild()
    async def provider(
        self, interaction: discord.Interaction[Any],
        provider: Literal["local", "anyfast", "runware", "magnific", "hiapi"],
        model: str | None = None,
        failover: str | None = None,
    ) -> None:
        later = [n.strip().lower() for n in (failover or "").split(",") if n.strip()]
        caps = await self.admin.set_provider(self._who(interaction), provider, model, later)
        lang = interaction.locale
        then = t(lang, "cogs.admin.provider_then", gateways=", ".join(later)) if later else ""
        await self._reply(interaction, t(lang, "cogs.admin.provider_set",
                                         provider=caps.provider, model=caps.model, then=then))

    @app_commands.command(name="defaults",
                          description="Default resolution, duration, audio, ratio and watermark")
    @_manage_guild()
    async def defaults(
        self, interaction: discord.Interaction[Any],
        resolution: Literal["480p", "720p", "1080p"] | None = None,
        duration: app_commands.Range[int, 4, 15] | None = None,
        audio: bool | None = None,
        ratio: Literal["16:9", "4:3", "1:1", "3:4", "9:16", "21:9", "9:21",
                       "adaptive"] | None = None,
        watermark: bool | None = None,
    ) -> None:
        current = await self.admin.set_defaults(
            self._who(interaction), resolution=Resolution(resolution) if resolution else None,
            duration=duration, audio=audio, ratio=Ratio(ratio) if ratio else None,
            watermark=watermark)
        shown = {k: v for k, v in (("resolution", current.resolution and current.resolution.value),
                                   ("duration", current.duration), ("audio", current.audio),
                                   ("ratio", current.ratio and current.ratio.value),
                                   ("watermark", current.watermark))
                 if v is not None}
        await self._reply(interaction, t(interaction.locale, "cogs.admin.defaults_set",
                                         shown=shown or t(interaction.locale,
                                                          "cogs.admin.word.model_defaults")))

    @app_commands.command(name="limits", description="How many videos run and wait at once")
    @app_commands.describe(
        running="Videos of this server made at once (0: the bot's default)",
        queued="Videos of this server waiting at once (0: the bot's default)",
        member_running="Videos of one member made at once (0: the bot's default)",
        member_queued="Videos of one member waiting at once (0: the bot's default)",
    )
    @_manage_guild()
    async def limits(
        self, interaction: discord.Interaction[Any],
        running: app_commands.Range[int, 0, 1000] | None = None,
        queued: app_commands.Range[int, 0, 10_000] | None = None,
        member_running: app_commands.Range[int, 0, 1000] | None = None,
        member_queued: app_commands.Range[int, 0, 10_000] | None = None,
    ) -> None:
        who = self._who(interaction)
        current = await self.admin.set_limits(who, running=running, queued=queued,
                                              user_running=member_running,
                                              user_queued=member_queued)
        await self._reply(interaction, limits_line(self.admin.effective_limits(current),
                                                   interaction.locale))

    @app_commands.command(name="channels", description="Channels where /video may be used")
    @_manage_guild()
    async def channels(self, interaction: discord.Interaction[Any], action: ListAction,
                       channel: discord.TextChannel | None = None) -> None:
        allowed = await self.admin.edit_list(self._who(interaction), "allowed_channels", action,
                                             str(channel.id) if channel else None)
        lang = interaction.locale
        await self._reply(interaction, t(lang, "cogs.admin.allowed", who=", ".join(
            f"<#{c}>" for c in allowed) or t(lang, "cogs.admin.word.all_channels")))

    @app_commands.command(name="roles", description="Roles allowed to use /video")
    @_manage_guild()
    async def roles(self, interaction: discord.Interaction[Any], action: ListAction,
                    role: discord.Role | None = None) -> None:
        allowed = await self.admin.edit_list(self._who(interaction), "allowed_roles", action,
                                             str(role.id) if role else None)
        lang = interaction.locale
        await self._reply(interaction, t(lang, "cogs.admin.allowed", who=", ".join(
            f"<@&{r}>" for r in allowed) or t(lang, "cogs.admin.word.everyone")))

    # ---- moderation -----------------------------------------------------------------------
    @app_commands.command(name="moderation",
                          description="Review prompts and/or videos before they appear")
    @app_commands.describe(mode="off; prompts: approve before generating; results: approve "
                                "before posting; both",
                           channel="The moderators' channel where review cards go")
    @_manage_guild()
    async def moderation(self, interaction: discord.Interaction[Any],
                         mode: Literal["off", "prompts", "results", "both"],
                         channel: discord.TextChannel | None = None) -> None:
        current = await self.admin.set_moderation(self._who(interaction), ReviewMode(mode),
                                                  str(channel.id) if channel else None)
        lang = interaction.locale
        if current.moderation is ReviewMode.OFF:
            await self._reply(interaction, t(lang, "cogs.admin.moderation_off"))
            return
        what = t(lang, f"cogs.admin.moderation_what.{current.moderation.value}")
        await self._reply(interaction, t(lang, "cogs.admin.moderation_on", what=what,
                                         channel=current.mod_channel))

    @app_commands.command(name="audit-channel",
                          description="Where one entry per finished job is logged")
    @app_commands.describe(channel="Leave empty to stop the audit log")
    @_manage_guild()
    async def audit_channel(self, interaction: discord.Interaction[Any],
                            channel: discord.TextChannel | None = None) -> None:
        await self.admin.set_audit_channel(self._who(interaction),
                                           str(channel.id) if channel else None)
        lang = interaction.locale
        await self._reply(interaction, t(lang, "cogs.admin.audit_on", channel=channel.mention)
                          if channel else t(lang, "cogs.admin.audit_off"))

    @app_commands.command(name="blocklist-add", description="Refuse prompts with a word or regex")
    @app_commands.describe(kind="word: whole words or a phrase, any case; regex: Python syntax",
                           pattern="The word, phrase or regular expression")
    @_manage_guild()
    async def blocklist_add(self, interaction: discord.Interaction[Any],
                            kind: Literal["word", "regex"],
                            pattern: app_commands.Range[str, 1, 200]) -> None:
        rule = await self.admin.add_rule(self._who(interaction), kind, pattern)
        await self._reply(interaction, t(interaction.locale, "cogs.admin.rule_added", id=rule.id,
                                         kind=kind, pattern=clip(pattern, 200)))

    @app_commands.command(name="blocklist-remove", description="Remove a blocklist rule")
    @_manage_guild()
    async def blocklist_remove(self, interaction: discord.Interaction[Any],
                               rule: app_commands.Range[int, 1]) -> None:
        removed = await self.admin.remove_rule(self._who(interaction), rule)
        lang = interaction.locale
        await self._reply(interaction, t(lang, "cogs.admin.rule_removed", id=rule,
                                         pattern=clip(removed.pattern, 200))
                          if removed else t(lang, "cogs.admin.rule_unknown", id=rule))

    @app_commands.command(name="blocklist", description="List the blocklist rules")
    @_manage_guild()
    async def blocklist(self, interaction: discord.Interaction[Any]) -> None:
        rules = await self.admin.rules(self._who(interaction))
        await self._reply(interaction, "\n".join(
            f"#{r.id} · {r.kind} · `{clip(r.pattern, 120)}`" for r in rules)
            or t(interaction.locale, "cogs.admin.no_rules"))

    @app_commands.command(name="blocklist-test", description="Which rule, if any, a text breaks")
    @_manage_guild()
    async def blocklist_test(self, interaction: discord.Interaction[Any],
                             text: app_commands.Range[str, 1, 2000]) -> None:
        rule = await self.admin.test_rule(self._who(interaction), text)
        lang = interaction.locale
        await self._reply(interaction, t(lang, "cogs.admin.rule_no_match") if rule is None
                          else t(lang, "cogs.admin.rule_match", id=rule.id, kind=rule.kind,
                                 pattern=clip(rule.pattern, 200)))

    @app_commands.command(name="block", description="Stop a member from making videos here")
    @_manage_guild()
    async def block(self, interaction: discord.Interaction[Any], member: discord.Member,
                    reason: app_commands.Range[str, 1, 300]) -> None:
        await self.admin.block(self._who(interaction), str(member.id), reason)
        await self._reply(interaction, t(interaction.locale, "cogs.admin.blocked",
                                         member=member.mention, reason=reason))

    @app_commands.command(name="unblock", description="Let a blocked member make videos again")
    @_manage_guild()
    async def unblock(self, interaction: discord.Interaction[Any],
                      member: discord.Member) -> None:
        removed = await self.admin.unblock(self._who(interaction), str(member.id))
        lang = interaction.locale
        await self._reply(interaction, t(lang, "cogs.admin.unblocked", member=member.mention)
                          if removed else t(lang, "cogs.admin.not_blocked",
                                            member=member.mention))

    @app_commands.command(name="rate-limit", description="Videos per member per minute")
    @app_commands.describe(per_minute="0 turns the rate limit off (quotas still apply)")
    @_manage_guild()
    async def rate_limit(self, interaction: discord.Interaction[Any],
                         per_minute: app_commands.Range[int, 0, 60]) -> None:
        await self.admin.set_rate_limit(self._who(interaction), per_minute)
        lang = interaction.locale
        await self._reply(interaction, t(lang, "cogs.admin.rate_set", count=per_minute)
                          if per_minute else t(lang, "cogs.admin.rate_off"))

    @app_commands.command(name="safety",
                          description="The gateway's own check of finished videos")
    @app_commands.describe(mode="none, key frames or all frames where the gateway checks "
                                "(Runware); default: key frames when results are reviewed")
    @_manage_guild()
    async def safety(self, interaction: discord.Interaction[Any],
                     mode: Literal["default", "none", "key_frames", "all_frames"]) -> None:
        chosen = None if mode == "default" else SafetyCheck(mode)
        await self.admin.set_safety(self._who(interaction), chosen)
        lang = interaction.locale
        await self._reply(interaction, (
            t(lang, "cogs.admin.safety_on", mode=t(lang, f"cogs.admin.safety_mode.{mode}"))
            if mode != "none" else t(lang, "cogs.admin.safety_off")))

    @app_commands.command(name="cards", description="How finished videos are shown")
    @app_commands.describe(style="cards (components v2) or the older embeds; default: the bot's",
                           spoiler_prompts="hide prompts on result cards behind a spoiler")
    @_manage_guild()
    async def cards(self, interaction: discord.Interaction[Any],
                    style: Literal["default", "cards", "embeds"],
                    spoiler_prompts: bool | None = None) -> None:
        chosen = None if style == "default" else style == "cards"
        done = await self.admin.set_cards(self._who(interaction), chosen, spoiler_prompts)
        await self._reply(interaction, cards_setting_text(style, done.spoiler_prompts,
                                                          interaction.locale))

    @app_commands.command(name="export", description="This server's job history as CSV")
    @app_commands.describe(since="First day, YYYY-MM-DD (UTC)",
                           until="Last day, YYYY-MM-DD (UTC), included")
    @_manage_guild()
    async def export(self, interaction: discord.Interaction[Any], since: str,
                     until: str) -> None:
        await defer(interaction, ephemeral=True, thinking=True)
        try:
            export = await self.admin.export(self._who(interaction), since, until)
        except Refusal as exc:
            await interaction.followup.send(say(exc, interaction.locale), ephemeral=True)
            return
        await interaction.followup.send(
            t(interaction.locale, "cogs.admin.exported", count=export.jobs, since=since,
              until=until),
            file=discord.File(io.BytesIO(export.data), filename=export.filename),
            ephemeral=True)


async def setup(bot: SeedanceBot) -> None:
    await bot.add_cog(Admin(bot))
