"""Interactions: the payloads a user's client makes Discord send (slash command, button,
modal submit), and the rules Discord applies to the answers (callback within the ack
deadline, one callback only, webhook token valid for a limited time, first followup after a
"thinking" defer fills the placeholder).

`FakeInteraction` is what tests inspect: `.callbacks`, `.original`, `.followups`, each change
timed with `time.monotonic()`.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from tests.fakes.discord.state import (
    FLAG_EPHEMERAL,
    FLAG_LOADING,
    USE_EXTERNAL_APPS,
    Command,
    Guild,
    Message,
    iter_components,
    number_components,
)
from tests.fakes.discord.world import ApiError, Upload, World, form_error

# Interaction types and callback types (Discord's numbers).
APPLICATION_COMMAND, MESSAGE_COMPONENT, MODAL_SUBMIT = 2, 3, 5
PONG, MESSAGE, DEFERRED_MESSAGE, DEFERRED_UPDATE, UPDATE_MESSAGE, MODAL = 1, 4, 5, 6, 7, 9

#: Follow-ups Discord allows an interaction of an app installed to the user only.
MAX_USER_FOLLOWUPS = 5

# Application command option types.
SUB_COMMAND, SUB_COMMAND_GROUP, STRING, INTEGER, BOOLEAN = 1, 2, 3, 4, 5
USER, CHANNEL, ROLE, MENTIONABLE, NUMBER, ATTACHMENT = 6, 7, 8, 9, 10, 11


@dataclass
class Limits:
    """Discord's interaction clocks, shared by all interactions so tests can shorten them."""

    ack_deadline: float = 3.0  # seconds to POST the callback
    token_lifetime: float = 15 * 60.0  # seconds the webhook token works


class InvalidInvocation(ValueError):
    """The test asked for something a real Discord client would not let a user send."""


@dataclass
class File:
    """A file the user attaches to a slash command. `content_type` is what the user's client
    declares, which may lie about the bytes."""

    filename: str
    data: bytes
    content_type: str | None = None
    width: int | None = None
    height: int | None = None


@dataclass
class Callback:
    """One POST /interactions/{id}/{token}/callback that Discord accepted."""

    at: float
    type: int
    data: dict[str, Any]
    uploads: list[Upload] = field(default_factory=list)

    @property
    def flags(self) -> int:
        return int(self.data.get("flags") or 0)

    @property
    def ephemeral(self) -> bool:
        return bool(self.flags & FLAG_EPHEMERAL)


@dataclass
class WebhookCall:
    """Every webhook request made with this interaction's token, accepted or not."""

    at: float
    method: str
    target: str  # "followup", "@original" or a message id
    body: dict[str, Any]
    status: int


class FakeInteraction:
    """One interaction as Discord tracks it, plus what the bot did with it."""

    def __init__(self, world: World, payload: dict[str, Any], limits: Limits, *,
                 source_message_id: int | None = None) -> None:
        self.world = world
        self.payload = payload
        self.id = int(payload["id"])
        self.token = str(payload["token"])
        self.type = int(payload["type"])
        self.guild_id = int(payload["guild_id"]) if payload.get("guild_id") else None
        self.channel_id = int(payload["channel_id"])
        self.user_id = int((payload.get("member") or payload)["user"]["id"])
        owners = payload.get("authorizing_integration_owners") or {}
        #: Used through the app installed to the user only (no server install of it here):
        #: Discord allows 5 follow-ups, and forces answers private without USE_EXTERNAL_APPS.
        self.user_install_only = "0" not in owners
        perms = int(payload.get("app_permissions") or 0)
        self.forced_ephemeral = (self.user_install_only and self.guild_id is not None
                                 and not world.bot_member(self.guild_id)
                                 and not perms & USE_EXTERNAL_APPS)
        self.created_at = time.monotonic()
        self.limits = limits
        self._token_expired_at: float | None = None
        self.source_message_id = source_message_id
        self.callbacks: list[Callback] = []
        self.webhook_calls: list[WebhookCall] = []
        self.rejected_callbacks: list[tuple[float, int, int]] = []  # (at, status, code)
        self.original_id: int | None = None
        self.followup_ids: list[int] = []
        self.delivered = False
        self._defer_pending = False  # a type-5 defer waiting for its first followup

    # ---- what tests read -------------------------------------------------------------------
    @property
    def data(self) -> dict[str, Any]:
        return dict(self.payload.get("data") or {})

    @property
    def callback(self) -> Callback | None:
        return self.callbacks[0] if self.callbacks else None

    @property
    def acknowledged(self) -> bool:
        return bool(self.callbacks)

    @property
    def expired(self) -> bool:
        """True once the ack deadline passed without a callback (user sees "did not respond")."""
        return not self.callbacks and time.monotonic() > self.created_at + self.limits.ack_deadline

    @property
    def token_valid(self) -> bool:
        if self._token_expired_at is not None:
            return False
        return time.monotonic() <= self.created_at + self.limits.token_lifetime

    @property
    def original(self) -> Message | None:
        """The @original response message (current state; `.edits` has its history)."""
        return self.world.messages.get(self.original_id) if self.original_id else None

    @property
    def followups(self) -> list[Message]:
        return [self.world.messages[i] for i in self.followup_ids]

    @property
    def modal(self) -> dict[str, Any] | None:
        """The modal the bot opened (callback type 9), for `FakeDiscord.submit_modal`."""
        for cb in self.callbacks:
            if cb.type == MODAL:
                return cb.data
        return None

    def expire_token(self) -> None:
        """Make the webhook token invalid now (as if 15 minutes had passed)."""
        self._token_expired_at = time.monotonic()

    def __repr__(self) -> str:
        kind = {2: "command", 3: "component", 5: "modal"}.get(self.type, str(self.type))
        return (f"<FakeInteraction {kind} id={self.id} callbacks="
                f"{[c.type for c in self.callbacks]} followups={len(self.followup_ids)}>")

    # ---- the callback endpoint -------------------------------------------------------------
    def respond(self, body: dict[str, Any], uploads: list[Upload],
                with_response: bool) -> dict[str, Any] | None:
        """POST /interactions/{id}/{token}/callback."""
        at = time.monotonic()
        if self.expired or at > self.created_at + self.limits.ack_deadline:
            self.rejected_callbacks.append((at, 404, 10062))
            raise ApiError(404, 10062, "Unknown interaction")
        if self.callbacks:
            self.rejected_callbacks.append((at, 400, 40060))
            raise ApiError(400, 40060, "Interaction has already been acknowledged.")
        ctype = int(body.get("type", 0))
        data = dict(body.get("data") or {})
        allowed = {APPLICATION_COMMAND: {MESSAGE, DEFERRED_MESSAGE, MODAL},
                   MESSAGE_COMPONENT: {MESSAGE, DEFERRED_MESSAGE, DEFERRED_UPDATE,
                                       UPDATE_MESSAGE, MODAL},
                   MODAL_SUBMIT: {MESSAGE, DEFERRED_MESSAGE, DEFERRED_UPDATE, UPDATE_MESSAGE}}
        if ctype not in allowed.get(self.type, set()):
            raise form_error("type", "INTERACTION_CALLBACK_TYPE_INVALID",
                             f"Interaction callback type {ctype} is not valid here")
        if ctype in (UPDATE_MESSAGE, DEFERRED_UPDATE) and self.source_message_id is None:
            raise form_error("type", "INTERACTION_CALLBACK_TYPE_INVALID",
                             "This interaction has no message to update")
        if ctype == MODAL:
            self._check_modal(data)
        message: Message | None = None
        flags = int(data.get("flags") or 0) | (FLAG_EPHEMERAL if self.forced_ephemeral else 0)
        if ctype == MESSAGE:
            message = self._post(data, uploads, flags & FLAG_EPHEMERAL, original=True)
        elif ctype == DEFERRED_MESSAGE:
            message = self._post({}, [], (flags & FLAG_EPHEMERAL) | FLAG_LOADING, original=True)
            self._defer_pending = True
        elif ctype in (DEFERRED_UPDATE, UPDATE_MESSAGE):
            assert self.source_message_id is not None
            self.original_id = self.source_message_id
            source = self.world.messages[self.source_message_id]
            if ctype == UPDATE_MESSAGE:
                self.world.edit_message(source, data, uploads)
            message = source
        self.callbacks.append(Callback(at, ctype, data, uploads))
        self.world.changed()
        if not with_response:
            return None
        answer: dict[str, Any] = {"interaction": {"id": str(self.id), "type": self.type}}
        if message is not None:
            answer["interaction"].update({
                "response_message_id": str(message.id),
                "response_message_loading": ctype == DEFERRED_MESSAGE,
                "response_message_ephemeral": message.ephemeral,
            })
            if ctype != DEFERRED_UPDATE:
                answer["resource"] = {"type": ctype, "message": message.to_dict()}
        elif ctype == MODAL:
            answer["resource"] = {"type": ctype}
        return answer

    def _check_modal(self, data: dict[str, Any]) -> None:
        if not data.get("custom_id") or not data.get("title"):
            raise form_error("data", "BASE_TYPE_REQUIRED", "custom_id and title are required")
        if len(data["title"]) > 45:
            raise form_error("data.title", "BASE_TYPE_MAX_LENGTH", "Must be 45 or fewer in length.")
        comps = data.get("components") or []
        if not 1 <= len(comps) <= 5:
            raise form_error("data.components", "BASE_TYPE_BAD_LENGTH",
                             "Must be between 1 and 5 in length.")
        number_components(comps)

    def _metadata(self) -> dict[str, Any]:
        meta: dict[str, Any] = {
            "id": str(self.id), "type": self.type,
            "user": (self.payload.get("member") or self.payload)["user"],
            "authorizing_integration_owners": dict(
                self.payload.get("authorizing_integration_owners") or {}),
        }
        if self.type == APPLICATION_COMMAND:
            meta["name"] = self.data.get("name", "")
            meta["command_type"] = self.data.get("type", 1)
        elif self.source_message_id:
            meta["interacted_message_id"] = str(self.source_message_id)
        return meta

    def _post(self, data: dict[str, Any], uploads: list[Upload], flags: int, *,
              original: bool) -> Message:
        msg_type = 20 if self.type == APPLICATION_COMMAND and original else (
            0 if not original else 19)
        msg, _ = self.world.post_message(
            self.channel_id, self.world.bot, data, uploads, check_permissions=False,
            webhook_id=self.world.application_id, msg_type=msg_type, flags=flags,
            interaction_metadata=self._metadata(),
        )
        if original:
            self.original_id = msg.id
        return msg

    # ---- the webhook endpoints ---------------------------------------------------------------
    def _check_token(self, method: str, target: str, body: dict[str, Any]) -> None:
        at = time.monotonic()
        if not self.token_valid:
            self.webhook_calls.append(WebhookCall(at, method, target, body, 401))
            raise ApiError(401, 50027, "Invalid Webhook Token")
        if not self.callbacks:
            self.webhook_calls.append(WebhookCall(at, method, target, body, 404))
            raise ApiError(404, 10015, "Unknown Webhook")

    def _owned(self, target: str) -> Message:
        mid = self.original_id if target == "@original" else int(target)
        if mid is None or (mid != self.original_id and mid not in self.followup_ids):
            raise ApiError(404, 10008, "Unknown Message")
        msg = self.world.messages.get(mid)
        if msg is None or msg.deleted:
            raise ApiError(404, 10008, "Unknown Message")
        return msg

    def _log(self, method: str, target: str, body: dict[str, Any], status: int) -> None:
        self.webhook_calls.append(WebhookCall(time.monotonic(), method, target, body, status))

    def execute(self, body: dict[str, Any], uploads: list[Upload]) -> Message:
        """POST /webhooks/{app}/{token}: a followup. The first followup after a thinking defer
        replaces the placeholder (same message, the defer's ephemerality), as Discord does."""
        self._check_token("POST", "followup", body)
        if self._defer_pending and self.original_id is not None:
            msg = self.world.messages[self.original_id]
            if not msg.deleted and msg.loading:
                self._defer_pending = False
                patch = {k: v for k, v in body.items() if k != "flags"}
                patch.setdefault("content", body.get("content") or "")
                self.world.edit_message(msg, patch, uploads)
                self.followup_ids.append(msg.id)
                self._log("POST", "followup", body, 200)
                return msg
        if self.user_install_only and len(self.followup_ids) >= MAX_USER_FOLLOWUPS:
            self._log("POST", "followup", body, 400)
            raise ApiError(400, 40094, "This interaction has hit the maximum number of follow "
                                       "up messages")
        flags = int(body.get("flags") or 0) & (FLAG_EPHEMERAL | (1 << 2) | (1 << 12) | (1 << 15))
        if self.forced_ephemeral:
            flags |= FLAG_EPHEMERAL
        msg = self._post(body, uploads, flags, original=False)
        self.followup_ids.append(msg.id)
        self._log("POST", "followup", body, 200)
        return msg

    def get(self, target: str) -> Message:
        self._check_token("GET", target, {})
        msg = self._owned(target)
        self._log("GET", target, {}, 200)
        return msg

    def edit(self, target: str, body: dict[str, Any], uploads: list[Upload]) -> Message:
        self._check_token("PATCH", target, body)
        msg = self._owned(target)
        if target == "@original" or msg.id == self.original_id:
            self._defer_pending = False
        self.world.edit_message(msg, body, uploads)
        self._log("PATCH", target, body, 200)
        return msg

    def delete(self, target: str) -> None:
        self._check_token("DELETE", target, {})
        msg = self._owned(target)
        self.world.delete_message(msg)
        self._log("DELETE", target, {}, 204)


# ---- payload builders -------------------------------------------------------------------------
def _interaction_base(world: World, itype: int, guild_id: int, channel_id: int, user_id: int,
                      locale: str) -> dict[str, Any]:
    guild = world.guild(guild_id)
    channel = world.channel(channel_id)
    if channel.guild_id != guild_id:
        raise InvalidInvocation(f"channel {channel_id} is not in guild {guild_id}")
    member = guild.members.get(user_id)
    if member is None:
        raise InvalidInvocation(f"user {user_id} is not a member of guild {guild_id}")
    return {
        "id": str(world.snowflakes.next()), "application_id": str(world.application_id),
        "type": itype, "token": "aW50ZXJhY3Rpb246" + secrets.token_urlsafe(96),
        "version": 1, "guild_id": str(guild_id),
        "guild": {"id": str(guild_id), "locale": guild.locale, "features": []},
        "guild_locale": guild.locale, "channel_id": str(channel_id),
        "channel": channel.to_dict(),
        "member": member.to_dict(permissions=guild.permissions_in(user_id, channel)),
        "app_permissions": str(guild.permissions_in(world.bot.id, channel)),
        "locale": locale, "entitlements": [], "entitlement_sku_ids": [],
        "authorizing_integration_owners": {"0": str(guild_id)}, "context": 0,
        "attachment_size_limit": guild.upload_limit,
    }


def _walk_path(cmd: Command, path: Sequence[str]) -> list[dict[str, Any]]:
    """The option schema at the end of a subcommand path ("group", "sub")."""
    schema: list[dict[str, Any]] = list(cmd.payload.get("options") or [])
    for name in path:
        match = next((o for o in schema if o.get("name") == name
                      and o.get("type") in (SUB_COMMAND, SUB_COMMAND_GROUP)), None)
        if match is None:
            raise InvalidInvocation(f"/{cmd.name} has no subcommand {name!r}")
        schema = list(match.get("options") or [])
    if any(o.get("type") in (SUB_COMMAND, SUB_COMMAND_GROUP) for o in schema):
        raise InvalidInvocation(f"/{cmd.name} {' '.join(path)} needs a subcommand")
    return schema


def _check_value(opt: dict[str, Any], value: Any) -> None:
    name, otype = opt["name"], opt.get("type")
    choices = opt.get("choices")
    if choices and value not in [c["value"] for c in choices]:
        raise InvalidInvocation(f"{name}={value!r} is not one of the choices")
    if otype in (INTEGER, NUMBER):
        if "min_value" in opt and value < opt["min_value"]:
            raise InvalidInvocation(f"{name}={value} is below {opt['min_value']}")
        if "max_value" in opt and value > opt["max_value"]:
            raise InvalidInvocation(f"{name}={value} is above {opt['max_value']}")
    too_short = otype == STRING and len(value) < opt.get("min_length", 0)
    if too_short or (otype == STRING and len(value) > opt.get("max_length", 6000)):
        raise InvalidInvocation(f"{name} has a length outside the allowed range")


def build_command_data(world: World, cmd: Command, guild_id: int, channel_id: int,
                       options: Mapping[str, Any], files: Sequence[File] | Mapping[str, File],
                       path: Sequence[str]) -> dict[str, Any]:
    """`data` of an APPLICATION_COMMAND interaction, typed by the command's registered schema
    (what Discord's client enforces), with `resolved` attachments, users, roles, channels."""
    schema = _walk_path(cmd, path)
    by_name = {o["name"]: o for o in schema}
    values: dict[str, Any] = dict(options)
    attachment_opts = [o["name"] for o in schema if o.get("type") == ATTACHMENT]
    if isinstance(files, Mapping):
        values.update(files)
    else:
        free = [n for n in attachment_opts if n not in values]
        if len(files) > len(free):
            raise InvalidInvocation(f"/{cmd.name} takes at most {len(free)} more attachments")
        values.update(zip(free, files, strict=False))
    guild = world.guilds.get(guild_id) or Guild(0, "", 0)  # a DM resolves no members
    resolved: dict[str, dict[str, Any]] = {}
    out: list[dict[str, Any]] = []
    for name, value in values.items():
        opt = by_name.get(name)
        if opt is None:
            raise InvalidInvocation(f"/{cmd.name} has no option {name!r}")
        otype = int(opt["type"])
        if otype == ATTACHMENT:
            if not isinstance(value, File):
                raise InvalidInvocation(f"{name} is an attachment option; pass a File")
            att = world.store_attachment(channel_id, value.filename, value.data,
                                         value.content_type, ephemeral=True,
                                         width=value.width, height=value.height)
            resolved.setdefault("attachments", {})[str(att.id)] = att.to_dict()
            value = str(att.id)
        elif otype == INTEGER:
            value = int(value)
        elif otype == NUMBER:
            value = float(value)
        elif otype == BOOLEAN:
            value = bool(value)
        elif otype == STRING:
            value = str(value)
        elif otype in (USER, MENTIONABLE) and int(value) in guild.members:
            member = guild.members[int(value)]
            resolved.setdefault("users", {})[str(value)] = member.user.to_dict()
            mdict = member.to_dict(permissions=guild.base_permissions(int(value)))
            mdict.pop("user")
            resolved.setdefault("members", {})[str(value)] = mdict
            value = str(value)
        elif otype in (ROLE, MENTIONABLE) and int(value) in guild.roles:
            resolved.setdefault("roles", {})[str(value)] = guild.roles[int(value)].to_dict()
            value = str(value)
        elif otype == CHANNEL:
            ch = world.channel(int(value))
            cdata = ch.to_dict()
            cdata["permissions"] = str(guild.permissions_in(
                int(world.bot.id), ch))
            resolved.setdefault("channels", {})[str(value)] = cdata
            value = str(value)
        else:
            raise InvalidInvocation(f"{name}: cannot resolve {value!r}")
        _check_value(opt, value)
        out.append({"name": name, "type": otype, "value": value})
    for opt in schema:
        if opt.get("required") and opt["name"] not in values:
            raise InvalidInvocation(f"/{cmd.name} needs option {opt['name']!r}")
    # The client sends options in the schema's order.
    order = {o["name"]: i for i, o in enumerate(schema)}
    out.sort(key=lambda o: order[o["name"]])
    for sub_type, sub_name in reversed(list(_path_types(cmd, path))):
        out = [{"name": sub_name, "type": sub_type, "options": out}]
    data: dict[str, Any] = {"id": str(cmd.id), "name": cmd.name, "type": cmd.type,
                            "options": out}
    if resolved:
        data["resolved"] = resolved
    if cmd.guild_id:
        data["guild_id"] = str(cmd.guild_id)
    return data


def _path_types(cmd: Command, path: Sequence[str]) -> list[tuple[int, str]]:
    schema = list(cmd.payload.get("options") or [])
    result = []
    for name in path:
        match = next(o for o in schema if o.get("name") == name)
        result.append((int(match["type"]), name))
        schema = list(match.get("options") or [])
    return result


def build_slash(world: World, guild_id: int, channel_id: int, user_id: int, name: str,
                options: Mapping[str, Any], files: Sequence[File] | Mapping[str, File],
                path: Sequence[str], locale: str) -> dict[str, Any]:
    payload = _interaction_base(world, APPLICATION_COMMAND, guild_id, channel_id, user_id,
                                locale)
    cmd = world.find_command(guild_id, name)
    payload["data"] = build_command_data(world, cmd, guild_id, channel_id, options, files, path)
    return payload


def build_component(world: World, message: Message, custom_id: str, user_id: int,
                    values: Sequence[str] | None, locale: str) -> dict[str, Any]:
    if message.guild_id is None:
        raise InvalidInvocation("component clicks are supported in guild channels only")
    comp = message.find_component(custom_id)
    if comp is None:
        raise InvalidInvocation(f"message {message.id} has no component {custom_id!r} "
                                f"(it has {message.custom_ids()})")
    if comp.get("disabled"):
        raise InvalidInvocation(f"component {custom_id!r} is disabled")
    payload = _interaction_base(world, MESSAGE_COMPONENT, message.guild_id, message.channel_id,
                                user_id, locale)
    data: dict[str, Any] = {"custom_id": custom_id, "component_type": comp["type"],
                            "id": comp.get("id")}
    if comp["type"] != 2:
        data["values"] = list(values or [])
    elif values:
        raise InvalidInvocation("buttons take no values")
    payload["data"] = data
    payload["message"] = message.to_dict()
    return payload


def build_modal_submit(world: World, origin: FakeInteraction, values: Mapping[str, str],
                       user_id: int | None, locale: str) -> dict[str, Any]:
    modal = origin.modal
    if modal is None:
        raise InvalidInvocation(f"{origin!r} did not open a modal")
    inputs = [c for c in iter_components(modal.get("components") or []) if c.get("type") == 4]
    known = {c["custom_id"] for c in inputs}
    unknown = set(values) - known
    if unknown:
        raise InvalidInvocation(f"the modal has no inputs {sorted(unknown)}; it has {known}")
    for c in inputs:
        value = values.get(c["custom_id"], c.get("value") or "")
        if c.get("required", True) and not value:
            raise InvalidInvocation(f"modal input {c['custom_id']!r} is required")
        short = bool(value) and len(value) < c.get("min_length", 0)
        if short or len(value) > c.get("max_length", 4000):
            raise InvalidInvocation(f"modal input {c['custom_id']!r} has a bad length")

    def answer(comp: dict[str, Any]) -> dict[str, Any]:
        if comp.get("type") == 1:
            return {"type": 1, "id": comp.get("id"),
                    "components": [answer(c) for c in comp.get("components", [])]}
        if comp.get("type") == 18:
            return {"type": 18, "id": comp.get("id"), "component": answer(comp["component"])}
        if comp.get("type") == 4:
            cid = comp["custom_id"]
            return {"type": 4, "id": comp.get("id"), "custom_id": cid,
                    "value": values.get(cid, comp.get("value") or "")}
        return {"type": comp.get("type"), "id": comp.get("id")}

    uid = user_id if user_id is not None else origin.user_id
    assert origin.guild_id is not None
    payload = _interaction_base(world, MODAL_SUBMIT, origin.guild_id, origin.channel_id, uid,
                                locale)
    payload["data"] = {"custom_id": modal["custom_id"],
                       "components": [answer(c) for c in modal.get("components", [])]}
    if origin.source_message_id:
        payload["message"] = world.messages[origin.source_message_id].to_dict()
    return payload
