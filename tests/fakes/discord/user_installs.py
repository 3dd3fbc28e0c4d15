"""Interactions of the app installed to a user (Discord's user installs): a command run in the
bot's DM (context 1), in a group DM the bot is not in (context 2), or in a server (context 0)
that may not have the bot at all. Discord sends them like any other, but with the user's key
in `authorizing_integration_owners`, and only for global commands whose `integration_types`
include user installs and whose `contexts` include the place."""

from __future__ import annotations

import secrets
from collections.abc import Mapping, Sequence
from typing import Any

from tests.fakes.discord.interactions import (
    APPLICATION_COMMAND,
    File,
    InvalidInvocation,
    build_command_data,
)
from tests.fakes.discord.state import (
    ATTACH_FILES,
    DM_CHANNEL,
    EMBED_LINKS,
    READ_MESSAGE_HISTORY,
    SEND_MESSAGES,
    UPLOAD_LIMITS,
    USE_EXTERNAL_APPS,
    VIEW_CHANNEL,
    Channel,
)
from tests.fakes.discord.world import World

GUILD_INSTALL, USER_INSTALL = 0, 1
CONTEXT_GUILD, CONTEXT_BOT_DM, CONTEXT_PRIVATE = 0, 1, 2
#: What an app may do in a DM or group DM: answer, with files and embeds, publicly.
PRIVATE_APP_PERMISSIONS = (VIEW_CHANNEL | SEND_MESSAGES | EMBED_LINKS | ATTACH_FILES
                           | READ_MESSAGE_HISTORY | USE_EXTERNAL_APPS)


def context_of(channel: Channel) -> int:
    if not channel.is_private:
        return CONTEXT_GUILD
    return CONTEXT_BOT_DM if channel.type == DM_CHANNEL else CONTEXT_PRIVATE


def build_user_slash(world: World, user_id: int, channel: Channel, name: str,
                     options: Mapping[str, Any], files: Sequence[File] | Mapping[str, File],
                     *, locale: str = "en-US", guild_install: bool = False) -> dict[str, Any]:
    """`/name` run through the user's install of the app in `channel`. `guild_install`: the
    server installed the app too (Discord then names both installs)."""
    cmd = world.find_command(None, name)  # a user's install sees global commands only
    context = context_of(channel)
    types = cmd.payload.get("integration_types") or [GUILD_INSTALL]
    contexts = cmd.payload.get("contexts") or [CONTEXT_GUILD, CONTEXT_BOT_DM, CONTEXT_PRIVATE]
    if USER_INSTALL not in types:
        raise InvalidInvocation(f"/{name} cannot be installed to a user ({types})")
    if context not in contexts:
        raise InvalidInvocation(f"/{name} is not offered in context {context} ({contexts})")
    user = world.users[user_id]
    owners = {str(USER_INSTALL): str(user_id)}
    payload: dict[str, Any] = {
        "id": str(world.snowflakes.next()), "application_id": str(world.application_id),
        "type": APPLICATION_COMMAND, "token": "aW50ZXJhY3Rpb246" + secrets.token_urlsafe(96),
        "version": 1, "channel_id": str(channel.id), "channel": channel.to_dict(),
        "locale": locale, "entitlements": [], "entitlement_sku_ids": [], "context": context,
    }
    if channel.is_private:
        payload.update({"user": user.to_dict(), "app_permissions": str(PRIVATE_APP_PERMISSIONS),
                        "attachment_size_limit": UPLOAD_LIMITS[0]})
    else:
        guild = world.guild(channel.guild_id)
        member = guild.members.get(user_id)
        if member is None:
            raise InvalidInvocation(f"user {user_id} is not a member of guild {guild.id}")
        here = guild.permissions_in(user_id, channel)
        # The bot's own permissions where it is a member; else what the member lets their
        # apps do there (USE_EXTERNAL_APPS decides whether answers may be public).
        app = (guild.permissions_in(world.bot.id, channel) if world.bot_member(guild.id)
               else here)
        if guild_install and world.bot_member(guild.id):
            owners[str(GUILD_INSTALL)] = str(guild.id)
        payload.update({
            "guild_id": str(guild.id),
            "guild": {"id": str(guild.id), "locale": guild.locale, "features": []},
            "guild_locale": guild.locale, "member": member.to_dict(permissions=here),
            "app_permissions": str(app), "attachment_size_limit": guild.upload_limit,
        })
    payload["authorizing_integration_owners"] = owners
    payload["data"] = build_command_data(world, cmd, channel.guild_id, channel.id, options,
                                         files, ())
    return payload
