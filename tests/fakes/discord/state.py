"""The in-memory Discord: users, guilds, roles, members, channels (incl. threads), messages,
attachments, application commands.

Everything here is plain data plus `to_dict()` methods that render Discord's own JSON shapes
(API v10), so REST routes, gateway events and interaction payloads all serialise the same
objects the same way. No I/O lives here.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import itertools
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

DISCORD_EPOCH_MS = 1420070400000

# Permission bits (https://discord.com/developers/docs/topics/permissions).
ADMINISTRATOR = 1 << 3
MANAGE_CHANNELS = 1 << 4
MANAGE_GUILD = 1 << 5
ADD_REACTIONS = 1 << 6
VIEW_CHANNEL = 1 << 10
SEND_MESSAGES = 1 << 11
MANAGE_MESSAGES = 1 << 13
EMBED_LINKS = 1 << 14
ATTACH_FILES = 1 << 15
READ_MESSAGE_HISTORY = 1 << 16
USE_APPLICATION_COMMANDS = 1 << 31
MANAGE_THREADS = 1 << 34
CREATE_PUBLIC_THREADS = 1 << 35
SEND_MESSAGES_IN_THREADS = 1 << 38
#: Lets a member's user-installed apps answer publicly where the app is not installed.
USE_EXTERNAL_APPS = 1 << 50
ALL_PERMISSIONS = (1 << 51) - 1

DEFAULT_EVERYONE = (
    VIEW_CHANNEL | SEND_MESSAGES | EMBED_LINKS | ATTACH_FILES | READ_MESSAGE_HISTORY
    | ADD_REACTIONS | USE_APPLICATION_COMMANDS | CREATE_PUBLIC_THREADS | SEND_MESSAGES_IN_THREADS
    | USE_EXTERNAL_APPS
)

# Message flags and channel types used here.
FLAG_EPHEMERAL = 1 << 6
FLAG_LOADING = 1 << 7
TEXT_CHANNEL = 0
DM_CHANNEL, GROUP_DM = 1, 3
PUBLIC_THREAD = 11
PRIVATE_THREAD = 12
THREAD_TYPES = (10, PUBLIC_THREAD, PRIVATE_THREAD)

MIB = 1024 * 1024
UPLOAD_LIMITS = {0: 10 * MIB, 1: 10 * MIB, 2: 50 * MIB, 3: 100 * MIB}


def iso(ts: dt.datetime | None) -> str | None:
    """Discord's timestamp format (ISO 8601 with microseconds and +00:00)."""
    return ts.isoformat() if ts else None


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class Snowflakes:
    """Real-shaped snowflakes: ms since the Discord epoch << 22 | worker | increment."""

    def __init__(self) -> None:
        self._inc = itertools.count()
        self._last = 0

    def next(self) -> int:
        ms = int(time.time() * 1000) - DISCORD_EPOCH_MS
        value = (ms << 22) | (1 << 17) | (next(self._inc) & 0xFFF)
        value = max(value, self._last + 1)  # strictly increasing even within one millisecond
        self._last = value
        return value


@dataclass
class User:
    id: int
    username: str
    bot: bool = False
    global_name: str | None = None
    discriminator: str = "0"

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "id": str(self.id), "username": self.username, "discriminator": self.discriminator,
            "global_name": self.global_name, "avatar": None, "public_flags": 0, "flags": 0,
            "banner": None, "accent_color": None, "avatar_decoration_data": None,
        }
        if self.bot:
            data["bot"] = True
        return data


@dataclass
class Role:
    id: int
    name: str
    permissions: int = 0
    position: int = 0
    managed: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": str(self.id), "name": self.name, "permissions": str(self.permissions),
            "position": self.position, "color": 0, "colors": {"primary_color": 0},
            "hoist": False, "managed": self.managed, "mentionable": False, "icon": None,
            "unicode_emoji": None, "flags": 0, "description": None,
        }


@dataclass
class Member:
    user: User
    guild_id: int
    roles: list[int] = field(default_factory=list)
    nick: str | None = None
    joined_at: dt.datetime = field(default_factory=now)

    def to_dict(self, permissions: int | None = None) -> dict[str, Any]:
        data: dict[str, Any] = {
            "user": self.user.to_dict(), "roles": [str(r) for r in self.roles],
            "nick": self.nick, "avatar": None, "banner": None, "joined_at": iso(self.joined_at),
            "premium_since": None, "deaf": False, "mute": False, "flags": 0, "pending": False,
            "communication_disabled_until": None,
        }
        if permissions is not None:  # interactions carry the member's computed permissions
            data["permissions"] = str(permissions)
        return data


@dataclass
class Channel:
    """A guild channel; threads are channels too (type 11/12, with a parent_id). A DM or a
    group DM (type 1/3) has `guild_id` 0 and its `recipients`."""

    id: int
    guild_id: int
    name: str
    type: int = TEXT_CHANNEL
    position: int = 0
    parent_id: int | None = None
    owner_id: int | None = None  # threads
    overwrites: list[dict[str, Any]] = field(default_factory=list)
    archived: bool = False
    last_message_id: int | None = None
    recipients: list[User] = field(default_factory=list)

    @property
    def is_thread(self) -> bool:
        return self.type in THREAD_TYPES

    @property
    def is_private(self) -> bool:
        return self.type in (DM_CHANNEL, GROUP_DM)

    def to_dict(self, *, with_guild: bool = True) -> dict[str, Any]:
        data: dict[str, Any] = {
            "id": str(self.id), "type": self.type, "name": self.name,
            "parent_id": str(self.parent_id) if self.parent_id else None,
            "last_message_id": str(self.last_message_id) if self.last_message_id else None,
            "flags": 0, "rate_limit_per_user": 0,
        }
        if self.is_private:
            data.pop("parent_id")
            data["recipients"] = [u.to_dict() for u in self.recipients]
            return data
        if with_guild:
            data["guild_id"] = str(self.guild_id)
        if self.is_thread:
            data.update({
                "owner_id": str(self.owner_id) if self.owner_id else None,
                "message_count": 0, "member_count": 1, "total_message_sent": 0,
                "thread_metadata": {
                    "archived": self.archived, "auto_archive_duration": 1440,
                    "archive_timestamp": iso(now()), "locked": False,
                    "create_timestamp": iso(now()),
                },
            })
        else:
            data.update({
                "position": self.position, "permission_overwrites": self.overwrites,
                "topic": None, "nsfw": False,
            })
        return data


@dataclass
class Guild:
    id: int
    name: str
    owner_id: int
    premium_tier: int = 0
    locale: str = "en-US"
    roles: dict[int, Role] = field(default_factory=dict)
    channels: dict[int, Channel] = field(default_factory=dict)
    members: dict[int, Member] = field(default_factory=dict)
    default_channel_id: int = 0
    #: Tests may shrink the limit so a small render is "too large" (same rules, smaller bytes).
    upload_limit_override: int | None = None

    @property
    def upload_limit(self) -> int:
        """Bytes per file a message in this guild may carry (Discord: by boost tier)."""
        if self.upload_limit_override is not None:
            return self.upload_limit_override
        return UPLOAD_LIMITS.get(self.premium_tier, 10 * MIB)

    @property
    def everyone(self) -> Role:
        return self.roles[self.id]

    def base_permissions(self, user_id: int) -> int:
        """Guild-level permissions: @everyone | member roles; owner/admin get everything."""
        if user_id == self.owner_id:
            return ALL_PERMISSIONS
        member = self.members.get(user_id)
        perms = self.everyone.permissions
        if member:
            for rid in member.roles:
                if rid in self.roles:
                    perms |= self.roles[rid].permissions
        return ALL_PERMISSIONS if perms & ADMINISTRATOR else perms

    def permissions_in(self, user_id: int, channel: Channel) -> int:
        """Channel permissions with overwrites applied in Discord's order (threads: parent's)."""
        perms = self.base_permissions(user_id)
        if perms & ADMINISTRATOR:
            return ALL_PERMISSIONS
        target = channel
        if channel.is_thread and channel.parent_id is not None:
            target = self.channels.get(channel.parent_id, channel)
        by_id = {int(o["id"]): o for o in target.overwrites}
        member = self.members.get(user_id)
        roles = member.roles if member else []

        def apply(ow: dict[str, Any] | None, p: int) -> int:
            if ow is None:
                return p
            return (p & ~int(ow.get("deny", 0))) | int(ow.get("allow", 0))

        perms = apply(by_id.get(self.id), perms)
        allow = deny = 0
        for rid in roles:
            ow = by_id.get(rid)
            if ow and ow.get("type", 0) == 0:
                allow |= int(ow.get("allow", 0))
                deny |= int(ow.get("deny", 0))
        perms = (perms & ~deny) | allow
        member_ow = by_id.get(user_id)
        if member_ow and member_ow.get("type", 1) == 1:
            perms = apply(member_ow, perms)
        return perms

    def to_dict(self, *, members: list[Member], threads: bool = True) -> dict[str, Any]:
        """The GUILD_CREATE shape: guild object plus channels, threads, members, roles."""
        plain = [c for c in self.channels.values() if not c.is_thread]
        active_threads = [c for c in self.channels.values() if c.is_thread and not c.archived]
        return {
            "id": str(self.id), "name": self.name, "icon": None, "splash": None,
            "discovery_splash": None, "banner": None, "description": None,
            "owner_id": str(self.owner_id), "afk_channel_id": None, "afk_timeout": 300,
            "verification_level": 0, "default_message_notifications": 0,
            "explicit_content_filter": 0, "mfa_level": 0, "nsfw_level": 0,
            "features": [], "premium_tier": self.premium_tier,
            "premium_subscription_count": {0: 0, 1: 2, 2: 7, 3: 14}.get(self.premium_tier, 0),
            "preferred_locale": self.locale, "system_channel_id": str(self.default_channel_id),
            "system_channel_flags": 0, "rules_channel_id": None, "vanity_url_code": None,
            "max_members": 500000, "max_video_channel_users": 25,
            "premium_progress_bar_enabled": False, "public_updates_channel_id": None,
            "application_id": None, "widget_enabled": False,
            "roles": [r.to_dict() for r in self.roles.values()],
            "emojis": [], "stickers": [], "voice_states": [], "presences": [],
            "stage_instances": [], "guild_scheduled_events": [], "soundboard_sounds": [],
            "channels": [c.to_dict(with_guild=False) for c in plain],
            "threads": [c.to_dict() for c in active_threads] if threads else [],
            "members": [m.to_dict() for m in members],
            "member_count": len(self.members), "large": False, "unavailable": False,
            "joined_at": iso(now()), "lazy": True,
        }


@dataclass
class Attachment:
    """A file stored on the fake CDN: one the user uploaded, or one the bot sent."""

    id: int
    channel_id: int
    filename: str
    data: bytes
    content_type: str | None
    url: str
    expires_at: float
    width: int | None = None
    height: int | None = None
    ephemeral: bool = False
    description: str | None = None
    title: str | None = None

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "id": str(self.id), "filename": self.filename, "size": len(self.data),
            "url": self.url, "proxy_url": self.url, "flags": 0,
        }
        if self.content_type is not None:
            data["content_type"] = self.content_type
        if self.width is not None and self.height is not None:
            data["width"], data["height"] = self.width, self.height
        if self.ephemeral:
            data["ephemeral"] = True
        if self.description is not None:
            data["description"] = self.description
        if self.title is not None:
            data["title"] = self.title
        return data


def sign_cdn(secret: bytes, path: str, expires: int) -> str:
    """The `hm` parameter: HMAC over path and expiry, as Discord's signed CDN links carry."""
    return hmac.new(secret, f"{path}|{expires:x}".encode(), hashlib.sha256).hexdigest()


def cdn_path(channel_id: int, attachment_id: int, filename: str) -> str:
    return f"/attachments/{channel_id}/{attachment_id}/{quote(filename)}"


@dataclass
class Edit:
    """One change to a message, with when it happened (loop time) and the request body."""

    at: float
    method: str
    body: dict[str, Any]


@dataclass
class Message:
    id: int
    channel_id: int
    guild_id: int | None
    author: User
    content: str = ""
    embeds: list[dict[str, Any]] = field(default_factory=list)
    components: list[dict[str, Any]] = field(default_factory=list)
    attachments: list[Attachment] = field(default_factory=list)
    flags: int = 0
    type: int = 0
    nonce: str | None = None
    created_at: dt.datetime = field(default_factory=now)
    created_loop_time: float = 0.0
    edited_at: dt.datetime | None = None
    webhook_id: int | None = None
    application_id: int | None = None
    interaction_metadata: dict[str, Any] | None = None
    message_reference: dict[str, Any] | None = None
    deleted: bool = False
    edits: list[Edit] = field(default_factory=list)
    thread_id: int | None = None  # a thread started from this message

    @property
    def ephemeral(self) -> bool:
        return bool(self.flags & FLAG_EPHEMERAL)

    @property
    def text(self) -> str:
        """What a reader sees as words: the content, or a components-v2 card's text displays."""
        shown = [c["content"] for c in iter_components(self.components) if c.get("type") == 10]
        return "\n".join([self.content, *shown]) if shown else self.content

    @property
    def loading(self) -> bool:
        return bool(self.flags & FLAG_LOADING)

    def custom_ids(self) -> list[str]:
        return [c["custom_id"] for c in iter_components(self.components) if "custom_id" in c]

    def find_component(self, custom_id: str) -> dict[str, Any] | None:
        for comp in iter_components(self.components):
            if comp.get("custom_id") == custom_id:
                return comp
        return None

    def to_dict(self, *, with_guild: bool = False) -> dict[str, Any]:
        data: dict[str, Any] = {
            "id": str(self.id), "channel_id": str(self.channel_id), "type": self.type,
            "author": self.author.to_dict(), "content": self.content,
            "timestamp": iso(self.created_at), "edited_timestamp": iso(self.edited_at),
            "tts": False, "mention_everyone": False, "mentions": [], "mention_roles": [],
            "mention_channels": [], "attachments": [a.to_dict() for a in self.attachments],
            "embeds": self.embeds, "components": self.components, "pinned": False,
            "flags": self.flags, "reactions": [],
        }
        if with_guild and self.guild_id:
            data["guild_id"] = str(self.guild_id)
        if self.nonce is not None:
            data["nonce"] = self.nonce
        if self.webhook_id:
            data["webhook_id"] = str(self.webhook_id)
        if self.application_id:
            data["application_id"] = str(self.application_id)
        if self.interaction_metadata:
            data["interaction_metadata"] = self.interaction_metadata
        if self.message_reference:
            data["message_reference"] = self.message_reference
        if self.thread_id:
            data["thread"] = {"id": str(self.thread_id)}
        return data


def iter_components(components: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """All components, depth first (action rows, containers, sections, labels…)."""
    out: list[dict[str, Any]] = []
    for comp in components:
        out.append(comp)
        out.extend(iter_components(comp.get("components", [])))
        if isinstance(comp.get("component"), dict):
            out.extend(iter_components([comp["component"]]))
        if isinstance(comp.get("accessory"), dict):
            out.extend(iter_components([comp["accessory"]]))
    return out


def number_components(components: list[dict[str, Any]]) -> None:
    """Discord assigns every component a numeric `id` when the sender gives none."""
    counter = itertools.count(1)
    taken = {c["id"] for c in iter_components(components) if isinstance(c.get("id"), int)}
    for comp in iter_components(components):
        if "id" not in comp:
            n = next(counter)
            while n in taken:
                n = next(counter)
            comp["id"] = n


@dataclass
class Command:
    """A registered application command: what the bot PUT, plus Discord's ids."""

    id: int
    application_id: int
    guild_id: int | None
    payload: dict[str, Any]
    version: int

    @property
    def name(self) -> str:
        return str(self.payload["name"])

    @property
    def type(self) -> int:
        return int(self.payload.get("type", 1))

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "description": "", "options": [], "default_member_permissions": None,
            "nsfw": False, "dm_permission": True, "contexts": None, "integration_types": [0],
            **self.payload,
            "id": str(self.id), "application_id": str(self.application_id),
            "version": str(self.version), "type": self.type,
        }
        if self.guild_id:
            data["guild_id"] = str(self.guild_id)
        return data
