"""`/seedance-admin …`: a server's own settings, for people with Manage Server.

The group's default permissions hide it from others, and every command checks Manage Server
again at run time (server admins can change who sees a command, not who may run it here).
"""

from __future__ import annotations

import io
import time
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

import discord
from discord import app_commands
from discord.ext import commands

from bot.models import Resolution
from bot.moderation import jobs_csv, matching_rule, rule_problem
from bot.store import QuotaLimitRow
from cogs.texts import clip

if TYPE_CHECKING:
    from cogs.app import SeedanceBot

ListAction = Literal["add", "remove", "clear"]


def _manage_guild() -> Any:
    return app_commands.checks.has_permissions(manage_guild=True)


@app_commands.default_permissions(manage_guild=True)
@app_commands.guild_only()
class Admin(commands.GroupCog, group_name="seedance-admin",
            group_description="Server settings for the video bot (Manage Server)"):
    def __init__(self, bot: SeedanceBot) -> None:
        self.bot = bot
        super().__init__()

    async def _reply(self, interaction: discord.Interaction[Any], text: str) -> None:
        await interaction.response.send_message(clip(text, 2000), ephemeral=True,
                                                allowed_mentions=discord.AllowedMentions.none())

    def _gid(self, interaction: discord.Interaction[Any]) -> str:
        return str(interaction.guild_id)

    @app_commands.command(name="show", description="Show this server's settings and quotas")
    @_manage_guild()
    async def show(self, interaction: discord.Interaction[Any]) -> None:
        gid = self._gid(interaction)
        settings = await self.bot.store.guild_settings(gid)
        limits = await self.bot.store.quota_limits(gid)
        s = self.bot.settings
        lines = [
            f"**Provider:** {settings.get('provider', s.seedance_provider)}"
            f" · model {settings.get('model') or s.seedance_model or 'default'}",
            f"**Defaults:** resolution {settings.get('resolution', 'model default')}, "
            f"duration {settings.get('duration', 'model default')} s, "
            f"audio {settings.get('audio', 'on')}",
            "**Channels:** " + (", ".join(f"<#{c}>" for c in settings.get("allowed_channels", []))
                                or "all"),
            "**Roles:** " + (", ".join(f"<@&{r}>" for r in settings.get("allowed_roles", []))
                             or "everyone"),
            f"**Default quotas:** {s.seedance_user_daily_credits} credits per user per day, "
            f"{s.seedance_guild_monthly_credits} per server per month",
        ]
        mode = settings.get("moderation", "off")
        lines.append(f"**Moderation:** {mode}"
                     + (f" · cards in <#{settings['mod_channel']}>"
                        if settings.get("mod_channel") else ""))
        lines.append("**Audit log:** " + (f"<#{settings['audit_channel']}>"
                                          if settings.get("audit_channel") else "off"))
        per_minute = settings.get("rate_per_minute")
        lines.append(f"**Rate limit:** {per_minute} per user per minute" if per_minute
                     else "**Rate limit:** off")
        rules = await self.bot.store.block_rules(gid)
        blocks = await self.bot.store.user_blocks(gid)
        lines.append(f"**Blocklist:** {len(rules)} rules · **blocked members:** {len(blocks)}")
        for row in limits:
            who = {"user": f"<@{row.subject_id}>", "role": f"<@&{row.subject_id}>",
                   "guild": "this server", "event": f"event {row.subject_id}"}[row.scope]
            lines.append(f"• {who}: {row.credits} credits per {row.window}")
        await self._reply(interaction, "\n".join(lines))

    @app_commands.command(name="quota-user", description="Daily credits for one member")
    @app_commands.describe(credits="Credits per UTC day; -1 removes the override")
    @_manage_guild()
    async def quota_user(self, interaction: discord.Interaction[Any], member: discord.Member,
                         credits: app_commands.Range[int, -1, 1_000_000]) -> None:
        await self._set_limit(interaction, "user", str(member.id), credits, "day",
                              f"{member.mention}")

    @app_commands.command(name="quota-role", description="Daily credits for members of a role")
    @app_commands.describe(credits="Credits per UTC day; -1 removes the override")
    @_manage_guild()
    async def quota_role(self, interaction: discord.Interaction[Any], role: discord.Role,
                         credits: app_commands.Range[int, -1, 1_000_000]) -> None:
        await self._set_limit(interaction, "role", str(role.id), credits, "day", role.mention)

    @app_commands.command(name="quota-server", description="Monthly credits for the server")
    @app_commands.describe(credits="Credits per UTC month; -1 restores the default")
    @_manage_guild()
    async def quota_server(self, interaction: discord.Interaction[Any],
                           credits: app_commands.Range[int, -1, 100_000_000]) -> None:
        await self._set_limit(interaction, "guild", "", credits, "month", "this server")

    async def _set_limit(self, interaction: discord.Interaction[Any], scope: str, subject: str,
                         credits: int, window: str, who: str) -> None:
        gid = self._gid(interaction)
        if credits < 0:
            removed = await self.bot.store.delete_quota_limit(scope, gid, subject)
            await self._reply(interaction, f"Removed the limit for {who}." if removed
                              else f"{who} had no limit of their own.")
            return
        await self.bot.store.set_quota_limit(
            QuotaLimitRow(scope, gid, subject, credits, window), now=time.time())
        await self._reply(interaction, f"{who}: {credits} credits per {window} (UTC).")

    @app_commands.command(name="provider", description="Gateway and model for this server")
    @_manage_guild()
    async def provider(
        self, interaction: discord.Interaction[Any],
        provider: Literal["local", "anyfast", "runware", "magnific", "hiapi"],
        model: str | None = None,
    ) -> None:
        try:
            caps = self.bot.provider(provider).capabilities(model)
        except Exception as exc:  # a missing key or unknown model: say which
            await self._reply(interaction, f"Can't use {provider}: {exc}")
            return
        await self.bot.store.set_guild_settings(self._gid(interaction),
                                                {"provider": provider, "model": model})
        await self._reply(interaction, f"Videos here now use **{caps.provider}** · {caps.model}.")

    @app_commands.command(name="defaults", description="Default resolution, duration and audio")
    @_manage_guild()
    async def defaults(
        self, interaction: discord.Interaction[Any],
        resolution: Literal["480p", "720p", "1080p"] | None = None,
        duration: app_commands.Range[int, 4, 15] | None = None,
        audio: bool | None = None,
    ) -> None:
        values: dict[str, Any] = {}
        if resolution:
            values["resolution"] = Resolution(resolution).value
        if duration:
            values["duration"] = duration
        if audio is not None:
            values["audio"] = audio
        current = await self.bot.store.set_guild_settings(self._gid(interaction), values)
        shown = {k: current[k] for k in ("resolution", "duration", "audio") if k in current}
        await self._reply(interaction, f"Defaults: {shown or 'the model defaults'}.")

    @app_commands.command(name="channels", description="Channels where /video may be used")
    @_manage_guild()
    async def channels(self, interaction: discord.Interaction[Any], action: ListAction,
                       channel: discord.TextChannel | None = None) -> None:
        await self._edit_list(interaction, "allowed_channels", action,
                              str(channel.id) if channel else None, "<#{}>", "all channels")

    @app_commands.command(name="roles", description="Roles allowed to use /video")
    @_manage_guild()
    async def roles(self, interaction: discord.Interaction[Any], action: ListAction,
                    role: discord.Role | None = None) -> None:
        await self._edit_list(interaction, "allowed_roles", action,
                              str(role.id) if role else None, "<@&{}>", "everyone")

    async def _edit_list(self, interaction: discord.Interaction[Any], key: str,
                         action: str, item: str | None, fmt: str, empty: str) -> None:
        gid = self._gid(interaction)
        current = [str(x) for x in (await self.bot.store.guild_settings(gid)).get(key, [])]
        if action != "clear" and item is None:
            await self._reply(interaction, f"Say which one to {action}.")
            return
        if action == "clear" or item is None:
            current = []
        elif action == "add" and item not in current:
            current.append(item)
        elif action == "remove" and item in current:
            current.remove(item)
        await self.bot.store.set_guild_settings(gid, {key: current or None})
        shown = ", ".join(fmt.format(x) for x in current) or empty
        await self._reply(interaction, f"Allowed: {shown}.")


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
        gid = self._gid(interaction)
        current = await self.bot.store.guild_settings(gid)
        target = str(channel.id) if channel else current.get("mod_channel")
        if mode != "off" and not target:
            await self._reply(interaction, "Say which channel the moderators use "
                              "(`channel:`); review cards go there.")
            return
        await self.bot.store.set_guild_settings(gid, {"moderation": mode, "mod_channel": target})
        if mode == "off":
            await self._reply(interaction, "Moderation is off: videos post without review.")
            return
        what = {"prompts": "prompts are approved before anything is generated",
                "results": "videos are approved before they are posted",
                "both": "prompts are approved before generating, and videos before posting"}[mode]
        await self._reply(interaction, f"Moderation on: {what}. Cards go to <#{target}>; "
                          "people with Manage Messages can decide.")

    @app_commands.command(name="audit-channel",
                          description="Where one entry per finished job is logged")
    @app_commands.describe(channel="Leave empty to stop the audit log")
    @_manage_guild()
    async def audit_channel(self, interaction: discord.Interaction[Any],
                            channel: discord.TextChannel | None = None) -> None:
        gid = self._gid(interaction)
        if channel is None:
            await self.bot.store.set_guild_settings(gid, {"audit_channel": None,
                                                          "audit_since": None})
            await self._reply(interaction, "The audit log is off.")
            return
        await self.bot.store.set_guild_settings(
            gid, {"audit_channel": str(channel.id), "audit_since": time.time()})
        await self._reply(interaction, f"Finished jobs are logged in {channel.mention}.")

    @app_commands.command(name="blocklist-add", description="Refuse prompts with a word or regex")
    @app_commands.describe(kind="word: whole words or a phrase, any case; regex: Python syntax",
                           pattern="The word, phrase or regular expression")
    @_manage_guild()
    async def blocklist_add(self, interaction: discord.Interaction[Any],
                            kind: Literal["word", "regex"],
                            pattern: app_commands.Range[str, 1, 200]) -> None:
        problem = rule_problem(kind, pattern)
        if problem:
            await self._reply(interaction, problem)
            return
        rule = await self.bot.store.add_block_rule(
            self._gid(interaction), kind, pattern, added_by=str(interaction.user.id),
            now=time.time())
        if rule is None:
            await self._reply(interaction, "That rule exists already.")
            return
        await self._reply(interaction, f"Added rule #{rule.id} ({kind}): `{clip(pattern, 200)}`.")

    @app_commands.command(name="blocklist-remove", description="Remove a blocklist rule")
    @_manage_guild()
    async def blocklist_remove(self, interaction: discord.Interaction[Any],
                               rule: app_commands.Range[int, 1]) -> None:
        removed = await self.bot.store.remove_block_rule(self._gid(interaction), rule)
        await self._reply(interaction, f"Removed rule #{rule} (`{clip(removed.pattern, 200)}`)."
                          if removed else f"There is no rule #{rule} on this server.")

    @app_commands.command(name="blocklist", description="List the blocklist rules")
    @_manage_guild()
    async def blocklist(self, interaction: discord.Interaction[Any]) -> None:
        rules = await self.bot.store.block_rules(self._gid(interaction))
        if not rules:
            await self._reply(interaction, "No blocklist rules.")
            return
        lines = [f"#{r.id} · {r.kind} · `{clip(r.pattern, 120)}`" for r in rules]
        await self._reply(interaction, "\n".join(lines))

    @app_commands.command(name="blocklist-test", description="Which rule, if any, a text breaks")
    @_manage_guild()
    async def blocklist_test(self, interaction: discord.Interaction[Any],
                             text: app_commands.Range[str, 1, 2000]) -> None:
        rule = matching_rule(await self.bot.store.block_rules(self._gid(interaction)), text)
        await self._reply(interaction, "No rule matches; that prompt would be accepted."
                          if rule is None else
                          f"Refused by rule #{rule.id} ({rule.kind}): `{clip(rule.pattern, 200)}`.")

    @app_commands.command(name="block", description="Stop a member from making videos here")
    @_manage_guild()
    async def block(self, interaction: discord.Interaction[Any], member: discord.Member,
                    reason: app_commands.Range[str, 1, 300]) -> None:
        await self.bot.store.set_user_block(self._gid(interaction), str(member.id), reason,
                                            blocked_by=str(interaction.user.id), now=time.time())
        await self._reply(interaction, f"{member.mention} can no longer make videos here "
                          f"(they are told: {reason}).")

    @app_commands.command(name="unblock", description="Let a blocked member make videos again")
    @_manage_guild()
    async def unblock(self, interaction: discord.Interaction[Any],
                      member: discord.Member) -> None:
        removed = await self.bot.store.remove_user_block(self._gid(interaction), str(member.id))
        await self._reply(interaction, f"{member.mention} may make videos again." if removed
                          else f"{member.mention} was not blocked.")

    @app_commands.command(name="rate-limit", description="Videos per member per minute")
    @app_commands.describe(per_minute="0 turns the rate limit off (quotas still apply)")
    @_manage_guild()
    async def rate_limit(self, interaction: discord.Interaction[Any],
                         per_minute: app_commands.Range[int, 0, 60]) -> None:
        await self.bot.store.set_guild_settings(self._gid(interaction),
                                                {"rate_per_minute": per_minute or None})
        await self._reply(interaction, f"At most {per_minute} per member per minute."
                          if per_minute else "No rate limit (quotas still apply).")

    @app_commands.command(name="export", description="This server's job history as CSV")
    @app_commands.describe(since="First day, YYYY-MM-DD (UTC)",
                           until="Last day, YYYY-MM-DD (UTC), included")
    @_manage_guild()
    async def export(self, interaction: discord.Interaction[Any], since: str,
                     until: str) -> None:
        try:
            start = datetime.strptime(since, "%Y-%m-%d").replace(tzinfo=UTC)
            end = datetime.strptime(until, "%Y-%m-%d").replace(tzinfo=UTC) + timedelta(days=1)
        except ValueError:
            await self._reply(interaction, "Dates look like 2026-11-01 (year-month-day, UTC).")
            return
        if end <= start:
            await self._reply(interaction, "`until` must not be before `since`.")
            return
        await interaction.response.defer(ephemeral=True, thinking=True)
        jobs = await self.bot.store.jobs_between(self._gid(interaction), start.timestamp(),
                                                 end.timestamp())
        data = jobs_csv(jobs).encode("utf-8")
        name = f"seedance-jobs-{since}-to-{until}.csv"
        await interaction.followup.send(
            f"{len(jobs)} jobs from {since} to {until} (UTC).",
            file=discord.File(io.BytesIO(data), filename=name), ephemeral=True)


async def setup(bot: SeedanceBot) -> None:
    await bot.add_cog(Admin(bot))
