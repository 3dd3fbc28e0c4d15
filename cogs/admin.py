"""`/seedance-admin …`: a server's own settings, for people with Manage Server.

The group's default permissions hide it from others, and every command checks Manage Server
again at run time (server admins can change who sees a command, not who may run it here).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Literal

import discord
from discord import app_commands
from discord.ext import commands

from bot.models import Resolution
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


async def setup(bot: SeedanceBot) -> None:
    await bot.add_cog(Admin(bot))
