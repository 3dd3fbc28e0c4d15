"""The fake Discord's domain operations: setting up guilds, and the rules messages obey
(permissions, validation, upload limits, nonces, attachments kept or replaced on edit).

REST routes and interaction handlers both go through `World`, so a message posted by a
channel call and one posted by an interaction followup are stored, validated and dispatched
to the gateway the same way. Errors are raised as `ApiError`, which the REST layer renders
as Discord's JSON error bodies.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tests.fakes.discord.command_rules import localization_problem
from tests.fakes.discord.components_v2 import (
    FLAG_COMPONENTS_V2,
    check_legacy,
    check_v2,
    resolve_media,
)
from tests.fakes.discord.state import (
    ATTACH_FILES,
    CREATE_PUBLIC_THREADS,
    DEFAULT_EVERYONE,
    DM_CHANNEL,
    FLAG_EPHEMERAL,
    FLAG_LOADING,
    GROUP_DM,
    MANAGE_MESSAGES,
    PUBLIC_THREAD,
    SEND_MESSAGES,
    SEND_MESSAGES_IN_THREADS,
    TEXT_CHANNEL,
    UPLOAD_LIMITS,
    VIEW_CHANNEL,
    Attachment,
    Channel,
    Command,
    Edit,
    Guild,
    Member,
    Message,
    Role,
    Snowflakes,
    User,
    cdn_path,
    iter_components,
    now,
    number_components,
    sign_cdn,
)

NONCE_WINDOW = 300.0  # seconds a nonce keeps deduplicating (Discord: "a few minutes")
EventSink = Callable[[str, dict[str, Any], int | None], None]


class ApiError(Exception):
    """An error answer in Discord's shape: HTTP status plus {"code", "message"[, "errors"]}."""

    def __init__(self, status: int, code: int, message: str,
                 errors: dict[str, Any] | None = None) -> None:
        super().__init__(f"{status} {code} {message}")
        self.status, self.code, self.message, self.errors = status, code, message, errors

    def body(self) -> dict[str, Any]:
        data: dict[str, Any] = {"message": self.message, "code": self.code}
        if self.errors:
            data["errors"] = self.errors
        return data


def form_error(path: str, code: str, message: str) -> ApiError:
    """Discord's 50035 Invalid Form Body, with the nested `errors` tree it sends."""
    tree: dict[str, Any] = {"_errors": [{"code": code, "message": message}]}
    for part in reversed(path.split(".")):
        tree = {part: tree}
    return ApiError(400, 50035, "Invalid Form Body", tree)


#: Discord's embed limits (developer docs, "Embed Limits"): per part, and 6,000 in all.
EMBED_LIMITS = {"title": 256, "description": 4096, "footer.text": 2048, "author.name": 256}


def check_embeds(embeds: list[dict[str, Any]]) -> None:
    """The embed limits Discord enforces: each part's length, 25 fields of at most 256 (name)
    and 1,024 (value) characters, and 6,000 characters over all of a message's embeds."""
    total = 0
    for i, embed in enumerate(embeds):
        for key, limit in EMBED_LIMITS.items():
            top, _, sub = key.partition(".")
            value = embed.get(top)
            text = (value or {}).get(sub) if sub and isinstance(value, dict) else value
            if isinstance(text, str):
                total += len(text)
                if len(text) > limit:
                    raise form_error(f"embeds.{i}.{key}", "BASE_TYPE_MAX_LENGTH",
                                     f"Must be {limit} or fewer in length.")
        fields = embed.get("fields") or []
        if len(fields) > 25:
            raise form_error(f"embeds.{i}.fields", "BASE_TYPE_MAX_LENGTH",
                             "Must be 25 or fewer in length.")
        for j, f in enumerate(fields):
            for part, limit in (("name", 256), ("value", 1024)):
                text = str(f.get(part) or "")
                total += len(text)
                if not text or len(text) > limit:
                    raise form_error(f"embeds.{i}.fields.{j}.{part}", "BASE_TYPE_MAX_LENGTH",
                                     f"Must be between 1 and {limit} in length.")
    if total > 6000:
        raise form_error("embeds", "BASE_TYPE_MAX_LENGTH",
                         "Embed size exceeds maximum size of 6000")


def missing_permissions() -> ApiError:
    return ApiError(403, 50013, "Missing Permissions")


@dataclass
class Upload:
    """One file part of a multipart request (`files[n]`), as the server received it."""

    field: str
    filename: str
    content_type: str | None
    data: bytes

    @property
    def index(self) -> int | None:
        if self.field.startswith("files[") and self.field.endswith("]"):
            inner = self.field[6:-1]
            return int(inner) if inner.isdigit() else None
        if self.field.startswith("file") and self.field[4:].isdigit():
            return int(self.field[4:])
        return None


@dataclass
class World:
    """All state of the fake Discord. `cdn_base` is filled in when the server has a port."""

    token: str
    cdn_base: str = ""
    snowflakes: Snowflakes = field(default_factory=Snowflakes)
    cdn_secret: bytes = field(default_factory=lambda: secrets.token_bytes(16))
    attachment_ttl: float = 24 * 3600.0
    users: dict[int, User] = field(default_factory=dict)
    guilds: dict[int, Guild] = field(default_factory=dict)
    channels: dict[int, Channel] = field(default_factory=dict)
    messages: dict[int, Message] = field(default_factory=dict)
    channel_messages: dict[int, list[int]] = field(default_factory=dict)
    attachments: dict[int, Attachment] = field(default_factory=dict)
    commands: dict[int | None, list[Command]] = field(default_factory=dict)
    nonces: dict[tuple[int, str], tuple[float, int]] = field(default_factory=dict)
    #: The bot's DM channel with each user (POST /users/@me/channels makes it once).
    dm_channels: dict[int, int] = field(default_factory=dict)
    #: Users who accept no DMs from the bot: a post there is Discord's 50007.
    closed_dms: set[int] = field(default_factory=set)
    #: Refuse every message flagged IS_COMPONENTS_V2, as Discord does where it can't take
    #: them: tests of the embed fallback (cogs/utils/layout.py) switch it on.
    refuse_components_v2: bool = False
    sink: EventSink | None = None  # the gateway's dispatch
    on_change: Callable[[], None] | None = None  # wakes test-side waiters
    bot: User = field(init=False)
    application: dict[str, Any] = field(init=False)
    owner: User = field(init=False)

    def __post_init__(self) -> None:
        self.bot = self.add_user("seedance-bot", bot=True, discriminator="4821")
        self.owner = self.add_user("app-owner")
        self.application = {
            "id": str(self.bot.id), "name": "Seedance", "icon": None,
            "description": "Fake application", "summary": "", "type": None,
            "bot_public": True, "bot_require_code_grant": False, "flags": 1 << 19 | 1 << 23,
            "verify_key": secrets.token_hex(32), "owner": self.owner.to_dict(), "team": None,
            "hook": True, "redirect_uris": [], "interactions_endpoint_url": None,
            "approximate_guild_count": 0, "integration_types_config": {"0": {}},
            "bot": self.bot.to_dict(),
        }

    @property
    def application_id(self) -> int:
        return self.bot.id

    def changed(self) -> None:
        if self.on_change:
            self.on_change()

    def emit(self, event: str, data: dict[str, Any], guild_id: int | None) -> None:
        if self.sink:
            self.sink(event, data, guild_id)
        self.changed()

    # ---- setting up the world (test side) -------------------------------------------------
    def add_user(self, username: str, *, bot: bool = False, discriminator: str = "0") -> User:
        user = User(self.snowflakes.next(), username, bot=bot, discriminator=discriminator)
        self.users[user.id] = user
        return user

    def add_guild(self, name: str = "Test Guild", *, premium_tier: int = 0,
                  bot_permissions: int = DEFAULT_EVERYONE | MANAGE_MESSAGES,
                  with_bot: bool = True) -> Guild:
        """A guild with @everyone, an owner, the bot as member (with its managed role; not
        `with_bot`: a server that never installed the app) and a #general text channel."""
        gid = self.snowflakes.next()
        guild = Guild(gid, name, self.owner.id, premium_tier=premium_tier)
        guild.roles[gid] = Role(gid, "@everyone", DEFAULT_EVERYONE, 0)
        guild.members[self.owner.id] = Member(self.owner, gid)
        if with_bot:
            bot_role = Role(self.snowflakes.next(), "Seedance", bot_permissions, 1,
                            managed=True)
            guild.roles[bot_role.id] = bot_role
            guild.members[self.bot.id] = Member(self.bot, gid, [bot_role.id])
        self.guilds[gid] = guild
        general = self.add_channel(gid, "general")
        guild.default_channel_id = general.id
        return guild

    def add_channel(self, guild_id: int, name: str, *, type: int = TEXT_CHANNEL,
                    parent_id: int | None = None,
                    overwrites: list[dict[str, Any]] | None = None) -> Channel:
        guild = self.guilds[guild_id]
        channel = Channel(self.snowflakes.next(), guild_id, name, type=type,
                          position=len(guild.channels), parent_id=parent_id,
                          overwrites=overwrites or [])
        guild.channels[channel.id] = channel
        self.channels[channel.id] = channel
        self.channel_messages[channel.id] = []
        return channel

    def add_role(self, guild_id: int, name: str, permissions: int = 0) -> Role:
        guild = self.guilds[guild_id]
        role = Role(self.snowflakes.next(), name, permissions, len(guild.roles))
        guild.roles[role.id] = role
        return role

    def add_member(self, guild_id: int, username: str, *,
                   roles: list[int] | None = None) -> Member:
        user = self.add_user(username)
        member = Member(user, guild_id, list(roles or []))
        self.guilds[guild_id].members[user.id] = member
        return member

    def open_dm(self, user_id: int) -> Channel:
        """The bot's DM channel with a user (created once, as Discord does)."""
        if user_id in self.dm_channels:
            return self.channels[self.dm_channels[user_id]]
        if user_id not in self.users:
            raise ApiError(400, 50033, "Invalid Recipient(s)")
        channel = Channel(self.snowflakes.next(), 0, "", type=DM_CHANNEL,
                          recipients=[self.users[user_id]])
        self.channels[channel.id] = channel
        self.channel_messages[channel.id] = []
        self.dm_channels[user_id] = channel.id
        return channel

    def add_group_dm(self, user_ids: list[int]) -> Channel:
        """A group DM of people, without the bot (a user-installed app still works there)."""
        channel = Channel(self.snowflakes.next(), 0, "group", type=GROUP_DM,
                          recipients=[self.users[u] for u in user_ids])
        self.channels[channel.id] = channel
        self.channel_messages[channel.id] = []
        return channel

    def bot_member(self, guild_id: int | None) -> bool:
        guild = self.guilds.get(guild_id or 0)
        return guild is not None and self.bot.id in guild.members

    def bot_sees(self, channel: Channel) -> bool:
        """The bot gets this channel's events: its guild has the bot, or it is the bot's DM."""
        if channel.is_private:
            return channel.type == DM_CHANNEL
        return self.bot_member(channel.guild_id)

    # ---- lookups ---------------------------------------------------------------------------
    def channel(self, channel_id: int) -> Channel:
        try:
            return self.channels[channel_id]
        except KeyError:
            raise ApiError(404, 10003, "Unknown Channel") from None

    def guild(self, guild_id: int) -> Guild:
        try:
            return self.guilds[guild_id]
        except KeyError:
            raise ApiError(404, 10004, "Unknown Guild") from None

    def message(self, channel_id: int, message_id: int) -> Message:
        msg = self.messages.get(message_id)
        if msg is None or msg.deleted or msg.channel_id != channel_id:
            raise ApiError(404, 10008, "Unknown Message")
        return msg

    def upload_limit(self, guild_id: int | None) -> int:
        return self.guilds[guild_id].upload_limit if guild_id in self.guilds else UPLOAD_LIMITS[0]

    def history(self, channel_id: int) -> list[Message]:
        """Visible (non-deleted, non-ephemeral) messages of a channel, oldest first."""
        ids = self.channel_messages.get(channel_id, [])
        return [m for m in (self.messages[i] for i in ids) if not m.deleted]

    # ---- attachments -----------------------------------------------------------------------
    def store_attachment(self, channel_id: int, filename: str, data: bytes,
                         content_type: str | None, *, ephemeral: bool = False,
                         width: int | None = None, height: int | None = None,
                         description: str | None = None) -> Attachment:
        """Keep bytes on the fake CDN behind a signed URL shaped like Discord's."""
        aid = self.snowflakes.next()
        expires = int(time.time() + self.attachment_ttl)
        path = cdn_path(channel_id, aid, filename)
        issued = int(time.time())
        hm = sign_cdn(self.cdn_secret, path, expires)
        url = f"{self.cdn_base}{path}?ex={expires:x}&is={issued:x}&hm={hm}&"
        att = Attachment(aid, channel_id, filename, data, content_type, url, float(expires),
                         width=width, height=height, ephemeral=ephemeral,
                         description=description)
        self.attachments[aid] = att
        return att

    # ---- message rules ---------------------------------------------------------------------
    def check_body(self, body: dict[str, Any], uploads: list[Upload], limit: int,
                   existing: Message | None = None) -> None:
        """The validations Discord applies before storing a message (or an edit of
        `existing`: what the message is after the edit is what is checked)."""
        content = body.get("content")
        if isinstance(content, str) and len(content) > 2000:
            raise form_error("content", "BASE_TYPE_MAX_LENGTH", "Must be 2000 or fewer in length.")
        embeds = body.get("embeds") or []
        if len(embeds) > 10:
            raise form_error("embeds", "BASE_TYPE_MAX_LENGTH", "Must be 10 or fewer in length.")
        check_embeds(embeds)
        if len(uploads) > 10:
            raise form_error("files", "BASE_TYPE_MAX_LENGTH", "Must be 10 or fewer in length.")
        for up in uploads:
            if len(up.data) > limit:
                raise ApiError(413, 40005, "Request entity too large")
        components = body.get("components") or []
        flags = body.get("flags")
        was_v2 = existing is not None and bool(existing.flags & FLAG_COMPONENTS_V2)
        v2 = bool(int(flags or 0) & FLAG_COMPONENTS_V2) or (flags is None and was_v2)
        if was_v2 and not v2:
            raise form_error("flags", "MESSAGE_CANNOT_REMOVE_COMPONENTS_V2_FLAG",
                             "The IS_COMPONENTS_V2 flag cannot be removed")
        if v2 and self.refuse_components_v2:
            raise form_error("flags", "MESSAGE_FLAGS_INVALID", "Invalid message flags")
        if v2:
            files = [u.filename for u in uploads] + [str(a["filename"])
                                                      for a in body.get("attachments") or []
                                                      if a.get("filename")]
            if existing is not None:
                kept = ({a.id for a in existing.attachments} if "attachments" not in body
                        else {int(a["id"]) for a in body["attachments"]})
                files += [a.filename for a in existing.attachments if a.id in kept]
            old = existing
            check_v2(body.get("content", old.content if old else None),
                     body.get("embeds", old.embeds if old else None),
                     components if "components" in body or old is None else old.components,
                     files, form_error)
        else:
            check_legacy(components, form_error)
        if not v2 and len(components) > 5:
            raise form_error("components", "BASE_TYPE_MAX_LENGTH", "Must be 5 or fewer in length.")
        seen: set[str] = set()
        for i, row in enumerate(components):
            if not v2 and row.get("type") == 1 and len(row.get("components", [])) > 5:
                raise form_error(f"components.{i}.components", "BASE_TYPE_MAX_LENGTH",
                                 "Must be 5 or fewer in length.")
        for comp in iter_components(components):
            cid = comp.get("custom_id")
            if cid is None:
                if comp.get("type") in (2,) and comp.get("style") not in (5, 6):
                    raise form_error("components", "BASE_TYPE_REQUIRED",
                                     "A custom id is required for this button style")
                continue
            if len(cid) > 100:
                raise form_error("components", "BASE_TYPE_MAX_LENGTH",
                                 "Must be 100 or fewer in length.")
            if cid in seen:
                raise form_error("components", "COMPONENT_CUSTOM_ID_DUPLICATED",
                                 "Component custom id cannot be duplicated")
            seen.add(cid)
            label = comp.get("label")
            if isinstance(label, str) and len(label) > 80:
                raise form_error("components", "BASE_TYPE_MAX_LENGTH",
                                 "Must be 80 or fewer in length.")

    def resolve_attachments(self, spec: list[dict[str, Any]] | None, uploads: list[Upload],
                            existing: list[Attachment], channel_id: int,
                            ephemeral: bool) -> list[Attachment]:
        """Which attachments a message ends up with: `attachments` lists the ones to keep
        (by snowflake) and the new ones (by `files[n]` index); unlisted uploads are added."""
        by_index = {u.index: u for u in uploads if u.index is not None}
        used: set[int] = set()
        result: list[Attachment] = []
        old = {a.id: a for a in existing}

        def new(up: Upload, filename: str | None = None,
                description: str | None = None) -> Attachment:
            return self.store_attachment(channel_id, filename or up.filename, up.data,
                                         up.content_type, ephemeral=ephemeral,
                                         description=description)

        if spec is None:
            result = list(existing)
        else:
            for n, item in enumerate(spec):
                aid = int(item["id"])
                if aid in old:
                    result.append(old[aid])
                elif aid in by_index:
                    used.add(aid)
                    result.append(new(by_index[aid], item.get("filename"),
                                      item.get("description")))
                else:
                    raise form_error(f"attachments.{n}.id", "ATTACHMENT_NOT_FOUND",
                                     "Unknown attachment")
        for up in uploads:
            if up.index is None or up.index not in used:
                result.append(new(up))
        return result

    def post_message(self, channel_id: int, author: User, body: dict[str, Any],
                     uploads: list[Upload], *, check_permissions: bool = True,
                     webhook_id: int | None = None, msg_type: int | None = None,
                     flags: int | None = None,
                     interaction_metadata: dict[str, Any] | None = None) -> tuple[Message, bool]:
        """Create a message; returns (message, created). `created` is False when an
        enforced nonce matched a recent message of the same author (no duplicate)."""
        channel = self.channel(channel_id)
        guild = self.guilds.get(channel.guild_id)
        if check_permissions and not self.bot_sees(channel):
            raise ApiError(403, 50001, "Missing Access")
        if check_permissions and channel.type == DM_CHANNEL and any(
                u.id in self.closed_dms for u in channel.recipients):
            raise ApiError(403, 50007, "Cannot send messages to this user")
        if check_permissions and guild:
            perms = guild.permissions_in(author.id, channel)
            need = VIEW_CHANNEL | (SEND_MESSAGES_IN_THREADS if channel.is_thread else SEND_MESSAGES)
            if uploads:
                need |= ATTACH_FILES
            if perms & need != need:
                raise missing_permissions()
        nonce = body.get("nonce")
        nonce = str(nonce) if nonce is not None else None
        if nonce and body.get("enforce_nonce"):
            seen = self.nonces.get((author.id, nonce))
            if seen and time.monotonic() - seen[0] < NONCE_WINDOW:
                prior = self.messages.get(seen[1])
                if prior is not None and not prior.deleted:
                    return prior, False
        self.check_body(body, uploads, self.upload_limit(channel.guild_id))
        final_flags = int(body.get("flags") or 0) if flags is None else flags
        has_payload = any((body.get("content"), body.get("embeds"), body.get("components"),
                           uploads, body.get("sticker_ids"), body.get("poll")))
        if not has_payload and not final_flags & FLAG_LOADING:
            raise ApiError(400, 50006, "Cannot send an empty message")
        ephemeral = bool(final_flags & FLAG_EPHEMERAL)
        components = body.get("components") or []
        number_components(components)
        ref = body.get("message_reference")
        msg = Message(
            id=self.snowflakes.next(), channel_id=channel_id, guild_id=channel.guild_id or None,
            author=author, content=body.get("content") or "", embeds=body.get("embeds") or [],
            components=components, flags=final_flags, nonce=nonce,
            type=msg_type if msg_type is not None else (19 if ref else 0),
            created_loop_time=time.monotonic(), webhook_id=webhook_id,
            application_id=self.application_id if webhook_id else None,
            interaction_metadata=interaction_metadata,
            message_reference={"type": 0, "channel_id": str(channel_id),
                               "message_id": str(ref["message_id"]),
                               "guild_id": str(channel.guild_id)} if ref else None,
        )
        msg.attachments = self.resolve_attachments(body.get("attachments"), uploads, [],
                                                   channel_id, ephemeral)
        resolve_media(msg.components, msg.attachments)
        self.messages[msg.id] = msg
        if nonce:
            self.nonces[(author.id, nonce)] = (time.monotonic(), msg.id)
        if not ephemeral:
            self.channel_messages.setdefault(channel_id, []).append(msg.id)
            channel.last_message_id = msg.id
        if not ephemeral and self.bot_sees(channel):
            self.emit("MESSAGE_CREATE", self.gateway_message(msg), channel.guild_id or None)
        else:
            self.changed()
        return msg, True

    def edit_message(self, msg: Message, body: dict[str, Any], uploads: list[Upload],
                     *, by: User | None = None) -> Message:
        """PATCH semantics: only the fields present change; attachments per `attachments`."""
        # Bots may only edit their own messages (flags aside).
        if by is not None and msg.author.id != by.id and set(body) - {"flags"}:
            raise ApiError(403, 50005, "Cannot edit a message authored by another user")
        self.check_body(body, uploads, self.upload_limit(msg.guild_id), existing=msg)
        if "content" in body:
            msg.content = body["content"] or ""
        if "embeds" in body:
            msg.embeds = body["embeds"] or []
        if "components" in body:
            msg.components = body["components"] or []
            number_components(msg.components)
        if "attachments" in body or uploads:
            msg.attachments = self.resolve_attachments(body.get("attachments"), uploads,
                                                       msg.attachments, msg.channel_id,
                                                       msg.ephemeral)
        if "flags" in body and body["flags"] is not None:
            keep = msg.flags & (FLAG_EPHEMERAL)
            msg.flags = (int(body["flags"]) & ~FLAG_EPHEMERAL & ~FLAG_LOADING) | keep
        msg.flags &= ~FLAG_LOADING  # any edit resolves a "thinking…" placeholder
        resolve_media(msg.components, msg.attachments)
        msg.edited_at = now()
        msg.edits.append(Edit(time.monotonic(), "PATCH", body))
        if not msg.ephemeral and self.bot_sees(self.channel(msg.channel_id)):
            self.emit("MESSAGE_UPDATE", self.gateway_message(msg), msg.guild_id)
        else:
            self.changed()
        return msg

    def delete_message(self, msg: Message) -> None:
        msg.deleted = True
        msg.edits.append(Edit(time.monotonic(), "DELETE", {}))
        if not msg.ephemeral and self.bot_sees(self.channel(msg.channel_id)):
            data = {"id": str(msg.id), "channel_id": str(msg.channel_id)}
            if msg.guild_id:
                data["guild_id"] = str(msg.guild_id)
            self.emit("MESSAGE_DELETE", data, msg.guild_id)
        else:
            self.changed()

    def gateway_message(self, msg: Message) -> dict[str, Any]:
        """MESSAGE_CREATE/UPDATE carry guild_id and the author's partial member."""
        data = msg.to_dict(with_guild=True)
        guild = self.guilds.get(msg.guild_id or 0)
        if guild and msg.author.id in guild.members and not msg.webhook_id:
            member = guild.members[msg.author.id].to_dict()
            member.pop("user", None)
            data["member"] = member
        return data

    def create_thread(self, channel_id: int, name: str, *, by: User,
                      from_message: int | None = None, type: int = PUBLIC_THREAD) -> Channel:
        parent = self.channel(channel_id)
        if parent.is_thread:
            raise ApiError(400, 50024, "Cannot execute action on this channel type")
        guild = self.guild(parent.guild_id)
        if not guild.permissions_in(by.id, parent) & CREATE_PUBLIC_THREADS:
            raise missing_permissions()
        if not name or len(name) > 100:
            raise form_error("name", "BASE_TYPE_BAD_LENGTH", "Must be between 1 and 100 in length.")
        if from_message is not None:
            msg = self.message(channel_id, from_message)
            if msg.thread_id:
                raise ApiError(400, 160004, "A thread has already been created for this message")
        thread = self.add_channel(parent.guild_id, name, type=type, parent_id=channel_id)
        thread.owner_id = by.id
        if from_message is not None:
            self.messages[from_message].thread_id = thread.id
        data = thread.to_dict()
        data["newly_created"] = True
        self.emit("THREAD_CREATE", data, parent.guild_id)
        return thread

    # ---- application commands ----------------------------------------------------------------
    def put_commands(self, guild_id: int | None, payloads: list[dict[str, Any]]) -> list[Command]:
        """Bulk overwrite: same-named commands keep their ids, as Discord does."""
        old = {(c.name, c.type): c for c in self.commands.get(guild_id, [])}
        names: set[tuple[str, int]] = set()
        result: list[Command] = []
        for n, payload in enumerate(payloads):
            name = payload.get("name")
            if not isinstance(name, str) or not 1 <= len(name) <= 32:
                raise form_error(f"{n}.name", "BASE_TYPE_BAD_LENGTH",
                                 "Must be between 1 and 32 in length.")
            ctype = int(payload.get("type", 1))
            if ctype == 1 and (name != name.lower() or " " in name):
                raise form_error(f"{n}.name", "APPLICATION_COMMAND_INVALID_NAME",
                                 "Command name is invalid")
            if ctype == 1 and not 1 <= len(payload.get("description") or "") <= 100:
                raise form_error(f"{n}.description", "BASE_TYPE_BAD_LENGTH",
                                 "Must be between 1 and 100 in length.")
            if len(payload.get("options") or []) > 25:
                raise form_error(f"{n}.options", "BASE_TYPE_MAX_LENGTH",
                                 "Must be 25 or fewer in length.")
            problem = localization_problem(payload, str(n), chat_input=ctype == 1)
            if problem is not None:
                raise form_error(*problem)
            if (name, ctype) in names:
                raise form_error(f"{n}.name", "APPLICATION_COMMANDS_DUPLICATE_NAME",
                                 f"Application command names must be unique: {name}")
            names.add((name, ctype))
            prior = old.get((name, ctype))
            cid = prior.id if prior else self.snowflakes.next()
            result.append(Command(cid, self.application_id, guild_id, dict(payload),
                                  self.snowflakes.next()))
        self.commands[guild_id] = result
        self.changed()
        return result

    def find_command(self, guild_id: int | None, name: str, type: int = 1) -> Command:
        """A guild command shadows a global one of the same name, as in Discord's client."""
        for scope in (guild_id, None):
            for cmd in self.commands.get(scope, []):
                if cmd.name == name and cmd.type == type:
                    return cmd
        raise LookupError(f"no application command {name!r} (type {type}) is registered "
                          f"for guild {guild_id} or globally — did the bot sync its tree?")
