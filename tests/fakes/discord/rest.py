"""REST API v10 and the attachment CDN, as aiohttp routes.

A middleware does what Discord's edge does for every call: parse the body (JSON, or
multipart with `payload_json` + `files[n]`), log it, check `Authorization: Bot <token>`,
play scripted faults (429 with retry_after, 5xx), account rate-limit buckets and add the
`X-RateLimit-*` headers, and render `ApiError`s as Discord's JSON errors.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any

from aiohttp import BodyPartReader, web

from tests.fakes.discord.gateway import Gateway
from tests.fakes.discord.interactions import FakeInteraction
from tests.fakes.discord.state import (
    MANAGE_MESSAGES,
    READ_MESSAGE_HISTORY,
    VIEW_CHANNEL,
    Message,
    cdn_path,
    sign_cdn,
)
from tests.fakes.discord.world import ApiError, Upload, World, missing_permissions

API = "/api/v10"
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
BODY: web.RequestKey[Any] = web.RequestKey("fake_discord_body", object)
UPLOADS: web.RequestKey[list[Upload]] = web.RequestKey("fake_discord_uploads", list)


@dataclass
class LoggedRequest:
    """One request the bot made: route is the template, e.g. /channels/{channel_id}/messages."""

    at: float
    method: str
    path: str
    route: str
    query: dict[str, str]
    json: Any
    uploads: list[Upload]
    headers: dict[str, str]
    status: int = 0


@dataclass
class Fault:
    """A scripted answer for the next `times` matching requests."""

    status: int
    times: int = 1
    method: str | None = None
    route: str | None = None  # substring of the route template or of the path
    retry_after: float = 0.05
    scope: str = "user"
    is_global: bool = False
    body: Any = None
    delay: float = 0.0
    #: The request is carried out, then its answer is lost (`delay`, then `status`): a
    #: message made whose maker never heard so.
    applied: bool = False
    #: Answer only once this is set (a test's crash comes first), after `delay`.
    hold: asyncio.Event | None = None

    def matches(self, method: str, route: str, path: str) -> bool:
        if self.method and self.method != method:
            return False
        return not self.route or self.route in route or self.route in path


@dataclass
class _Bucket:
    start: float
    count: int = 0


@dataclass
class RestState:
    """Knobs and records of the REST layer."""

    requests: list[LoggedRequest] = field(default_factory=list)
    faults: list[Fault] = field(default_factory=list)
    bucket_limit: int = 50
    bucket_window: float = 1.0
    enforce_rate_limits: bool = True
    buckets: dict[str, _Bucket] = field(default_factory=dict)


def _json(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    """Exactly `Content-Type: application/json`, no charset, as Discord answers (discord.py
    compares the header verbatim and treats anything else as text)."""
    return web.Response(body=json.dumps(data).encode(), status=status,
                        headers={"Content-Type": "application/json", **(headers or {})})


def _major(request: web.Request) -> str:
    info = request.match_info
    for key in ("channel_id", "guild_id", "webhook_id", "interaction_id"):
        if key in info:
            return f"{key}={info[key]}"
    return ""


class Rest:
    """The REST routes. `interactions` is shared with the test-side API."""

    def __init__(self, world: World, gateway: Gateway,
                 interactions: dict[int, FakeInteraction]) -> None:
        self.world = world
        self.gateway = gateway
        self.interactions = interactions
        self.state = RestState()

    # ---- wiring ---------------------------------------------------------------------------
    def install(self, app: web.Application) -> None:
        app.middlewares.append(self._middleware)
        r = app.router
        g = self.gateway.handle
        r.add_get("/gateway", g)
        r.add_get("/gateway/resume", g)
        r.add_get("/attachments/{channel_id}/{attachment_id}/{filename}", self.cdn)
        routes: list[tuple[str, str, Handler]] = [
            ("GET", "/users/@me", self.me),
            ("GET", "/users/@me/guilds", self.my_guilds),
            ("GET", "/users/{user_id}", self.user),
            ("POST", "/users/@me/channels", self.create_dm),
            ("GET", "/oauth2/applications/@me", self.app_info),
            ("GET", "/applications/@me", self.app_info),
            ("GET", "/gateway", self.gateway_info),
            ("GET", "/gateway/bot", self.gateway_bot),
            ("GET", "/applications/{app_id}/commands", self.get_commands),
            ("PUT", "/applications/{app_id}/commands", self.put_commands),
            ("POST", "/applications/{app_id}/commands", self.post_command),
            ("GET", "/applications/{app_id}/commands/{command_id}", self.get_command),
            ("DELETE", "/applications/{app_id}/commands/{command_id}", self.delete_command),
            ("GET", "/applications/{app_id}/guilds/{guild_id}/commands", self.get_commands),
            ("PUT", "/applications/{app_id}/guilds/{guild_id}/commands", self.put_commands),
            ("POST", "/applications/{app_id}/guilds/{guild_id}/commands", self.post_command),
            ("GET", "/applications/{app_id}/guilds/{guild_id}/commands/{command_id}",
             self.get_command),
            ("DELETE", "/applications/{app_id}/guilds/{guild_id}/commands/{command_id}",
             self.delete_command),
            ("GET", "/guilds/{guild_id}", self.get_guild),
            ("GET", "/guilds/{guild_id}/channels", self.guild_channels),
            ("GET", "/guilds/{guild_id}/roles", self.guild_roles),
            ("GET", "/guilds/{guild_id}/members/{user_id}", self.guild_member),
            ("GET", "/channels/{channel_id}", self.get_channel),
            ("POST", "/channels/{channel_id}/typing", self.typing),
            ("GET", "/channels/{channel_id}/messages", self.list_messages),
            ("POST", "/channels/{channel_id}/messages", self.create_message),
            ("GET", "/channels/{channel_id}/messages/{message_id}", self.get_message),
            ("PATCH", "/channels/{channel_id}/messages/{message_id}", self.edit_message),
            ("DELETE", "/channels/{channel_id}/messages/{message_id}", self.delete_message),
            ("POST", "/channels/{channel_id}/threads", self.create_thread),
            ("POST", "/channels/{channel_id}/messages/{message_id}/threads",
             self.thread_from_message),
            ("POST", "/interactions/{interaction_id}/{token}/callback", self.callback),
            ("POST", "/webhooks/{webhook_id}/{token}", self.webhook_execute),
            ("GET", "/webhooks/{webhook_id}/{token}/messages/{message_id}", self.webhook_get),
            ("PATCH", "/webhooks/{webhook_id}/{token}/messages/{message_id}",
             self.webhook_edit),
            ("DELETE", "/webhooks/{webhook_id}/{token}/messages/{message_id}",
             self.webhook_delete),
        ]
        for method, path, handler in routes:
            r.add_route(method, API + path, handler)

    # ---- the edge -----------------------------------------------------------------------------
    @web.middleware
    async def _middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path.startswith(("/gateway", "/attachments/")):
            return await handler(request)
        resource = request.match_info.route.resource
        route = resource.canonical if resource is not None else request.path
        route = route.removeprefix(API)
        body, uploads = await self._read_body(request)
        request[BODY], request[UPLOADS] = body, uploads
        headers = {k: v for k, v in request.headers.items() if k.lower() != "authorization"}
        entry = LoggedRequest(time.monotonic(), request.method, request.path.removeprefix(API),
                              route, dict(request.query), body, uploads, headers)
        self.state.requests.append(entry)
        response = await self._answer(request, handler, route)
        entry.status = response.status
        self.world.changed()
        return response

    async def _answer(self, request: web.Request, handler: Handler,
                      route: str) -> web.StreamResponse:
        public = route.startswith(("/interactions/", "/webhooks/"))
        if not public and request.headers.get("Authorization") != f"Bot {self.world.token}":
            return _json({"message": "401: Unauthorized", "code": 0}, 401)
        for fault in self.state.faults:
            if fault.times > 0 and fault.matches(request.method, route, request.path):
                fault.times -= 1
                self.state.faults = [f for f in self.state.faults if f.times > 0]
                if fault.applied:
                    with contextlib.suppress(ApiError, web.HTTPException):
                        await handler(request)
                if fault.delay:
                    await asyncio.sleep(fault.delay)
                if fault.hold is not None:
                    await fault.hold.wait()
                return self._fault(fault, route)
        key = f"{request.method} {route}:{_major(request)}"
        limited = self._account(key)
        if limited is not None:
            return limited
        try:
            response = await handler(request)
        except ApiError as exc:
            response = _json(exc.body(), exc.status)
        except web.HTTPException as exc:
            response = _json({"message": f"{exc.status}: {exc.reason}", "code": 0}, exc.status)
        self._headers(response, key)
        return response

    async def _read_body(self, request: web.Request) -> tuple[Any, list[Upload]]:
        uploads: list[Upload] = []
        if request.content_type.startswith("multipart/"):
            body: Any = {}
            reader = await request.multipart()
            while (part := await reader.next()) is not None:
                if not isinstance(part, BodyPartReader):
                    continue  # nested multipart: Discord does not accept it either
                name = part.name or ""
                data = await part.read()
                filename = part.filename
                if name == "payload_json":
                    body = json.loads(bytes(data))
                elif filename is not None:
                    ctype = part.headers.get("Content-Type")
                    uploads.append(Upload(name, filename, ctype, bytes(data)))
                else:
                    body[name] = bytes(data).decode()
            return body, uploads
        raw = await request.read()
        if not raw:
            return None, uploads
        try:
            return json.loads(raw), uploads
        except ValueError:
            raise web.HTTPBadRequest(text=json.dumps({"message": "400: Bad Request",
                                                      "code": 50109})) from None

    def _bucket_hash(self, key: str) -> str:
        return hashlib.sha1(key.split(":")[0].encode()).hexdigest()[:32]

    def _account(self, key: str) -> web.Response | None:
        now = time.monotonic()
        bucket = self.state.buckets.get(key)
        if bucket is None or now - bucket.start >= self.state.bucket_window:
            bucket = self.state.buckets[key] = _Bucket(now)
        if self.state.enforce_rate_limits and bucket.count >= self.state.bucket_limit:
            after = max(0.001, bucket.start + self.state.bucket_window - now)
            return self._fault(Fault(429, retry_after=after), key)
        bucket.count += 1
        return None

    def _headers(self, response: web.StreamResponse, key: str) -> None:
        bucket = self.state.buckets.get(key)
        if bucket is None:
            return
        after = max(0.0, bucket.start + self.state.bucket_window - time.monotonic())
        response.headers.update({
            "X-RateLimit-Limit": str(self.state.bucket_limit),
            "X-RateLimit-Remaining": str(max(0, self.state.bucket_limit - bucket.count)),
            "X-RateLimit-Reset": f"{time.time() + after:.3f}",
            "X-RateLimit-Reset-After": f"{after:.3f}",
            "X-RateLimit-Bucket": self._bucket_hash(key),
            "Via": "1.1 google",
        })

    def _fault(self, fault: Fault, route: str) -> web.Response:
        if fault.status == 429:
            body = fault.body or {"message": "You are being rate limited.",
                                  "retry_after": fault.retry_after, "global": fault.is_global}
            headers = {
                "Retry-After": str(math.ceil(fault.retry_after)),
                "X-RateLimit-Scope": "global" if fault.is_global else fault.scope,
                "X-RateLimit-Limit": str(self.state.bucket_limit),
                "X-RateLimit-Remaining": "0",
                "X-RateLimit-Reset-After": f"{fault.retry_after:.3f}",
                "X-RateLimit-Reset": f"{time.time() + fault.retry_after:.3f}",
                "X-RateLimit-Bucket": self._bucket_hash(route),
                "Via": "1.1 google",
            }
            if fault.is_global:
                headers["X-RateLimit-Global"] = "true"
            return _json(body, 429, headers)
        if isinstance(fault.body, str):
            return web.Response(status=fault.status, text=fault.body, content_type="text/html")
        known = fault.status in HTTPStatus._value2member_map_
        reason = HTTPStatus(fault.status).phrase if known else ""
        body = fault.body or {"message": f"{fault.status}: {reason}", "code": 0}
        return _json(body, fault.status, {"Via": "1.1 google"})

    # ---- identity -----------------------------------------------------------------------------
    async def me(self, request: web.Request) -> web.Response:
        return _json(self.world.bot.to_dict() | {"verified": True, "mfa_enabled": False,
                                                 "locale": "en-US", "email": None})

    async def my_guilds(self, request: web.Request) -> web.Response:
        return _json([{"id": str(g.id), "name": g.name, "icon": None, "owner": False,
                       "permissions": str(g.base_permissions(self.world.bot.id)),
                       "features": []} for g in self.world.guilds.values()
                      if self.world.bot_member(g.id)])

    async def user(self, request: web.Request) -> web.Response:
        user = self.world.users.get(int(request.match_info["user_id"]))
        if user is None:
            raise ApiError(404, 10013, "Unknown User")
        return _json(user.to_dict())

    async def app_info(self, request: web.Request) -> web.Response:
        data = dict(self.world.application)
        data["approximate_guild_count"] = len(self.world.guilds)
        return _json(data)

    async def gateway_info(self, request: web.Request) -> web.Response:
        return _json({"url": self.gateway.url})

    async def gateway_bot(self, request: web.Request) -> web.Response:
        return _json({"url": self.gateway.url, "shards": 1, "session_start_limit": {
            "total": 1000, "remaining": 1000 - self.gateway.identifies,
            "reset_after": 86_400_000, "max_concurrency": 1}})

    # ---- application commands ------------------------------------------------------------------
    def _scope(self, request: web.Request) -> int | None:
        if int(request.match_info["app_id"]) != self.world.application_id:
            raise ApiError(403, 50001, "Missing Access")
        gid = request.match_info.get("guild_id")
        if gid is None:
            return None
        if int(gid) not in self.world.guilds:
            raise ApiError(403, 50001, "Missing Access")
        return int(gid)

    async def get_commands(self, request: web.Request) -> web.Response:
        scope = self._scope(request)
        return _json([c.to_dict() for c in self.world.commands.get(scope, [])])

    async def put_commands(self, request: web.Request) -> web.Response:
        scope = self._scope(request)
        body = request[BODY]
        if not isinstance(body, list):
            raise ApiError(400, 50035, "Invalid Form Body")
        return _json([c.to_dict() for c in self.world.put_commands(scope, body)])

    async def post_command(self, request: web.Request) -> web.Response:
        scope = self._scope(request)
        body = request[BODY] or {}
        current = [c.payload for c in self.world.commands.get(scope, [])
                   if (c.name, c.type) != (body.get("name"), int(body.get("type", 1)))]
        existed = len(current) != len(self.world.commands.get(scope, []))
        cmds = self.world.put_commands(scope, [*current, body])
        return _json(cmds[-1].to_dict(), 200 if existed else 201)

    def _command(self, request: web.Request) -> tuple[int | None, int]:
        scope = self._scope(request)
        cid = int(request.match_info["command_id"])
        if not any(c.id == cid for c in self.world.commands.get(scope, [])):
            raise ApiError(404, 10063, "Unknown application command")
        return scope, cid

    async def get_command(self, request: web.Request) -> web.Response:
        scope, cid = self._command(request)
        return _json(next(c for c in self.world.commands[scope] if c.id == cid).to_dict())

    async def delete_command(self, request: web.Request) -> web.Response:
        scope, cid = self._command(request)
        self.world.commands[scope] = [c for c in self.world.commands[scope] if c.id != cid]
        return web.Response(status=204)

    # ---- guilds and channels -------------------------------------------------------------------
    async def get_guild(self, request: web.Request) -> web.Response:
        guild = self.world.guild(int(request.match_info["guild_id"]))
        data = guild.to_dict(members=[])
        for key in ("channels", "threads", "members", "voice_states", "presences"):
            data.pop(key, None)
        return _json(data)

    async def guild_channels(self, request: web.Request) -> web.Response:
        guild = self.world.guild(int(request.match_info["guild_id"]))
        return _json([c.to_dict() for c in guild.channels.values() if not c.is_thread])

    async def guild_roles(self, request: web.Request) -> web.Response:
        guild = self.world.guild(int(request.match_info["guild_id"]))
        return _json([r.to_dict() for r in guild.roles.values()])

    async def guild_member(self, request: web.Request) -> web.Response:
        guild = self.world.guild(int(request.match_info["guild_id"]))
        member = guild.members.get(int(request.match_info["user_id"]))
        if member is None:
            raise ApiError(404, 10007, "Unknown Member")
        return _json(member.to_dict())

    async def create_dm(self, request: web.Request) -> web.Response:
        """POST /users/@me/channels: the bot's DM with a user, made once (closed DMs still
        give a channel; posting there is what fails, with 50007)."""
        body = request[BODY] or {}
        channel = self.world.open_dm(int(body.get("recipient_id") or 0))
        return _json(channel.to_dict())

    def _visible_channel(self, request: web.Request, need: int = VIEW_CHANNEL) -> Any:
        channel = self.world.channel(int(request.match_info["channel_id"]))
        if not self.world.bot_sees(channel):
            raise ApiError(403, 50001, "Missing Access")
        if channel.is_private:
            return channel
        guild = self.world.guilds[channel.guild_id]
        if guild.permissions_in(self.world.bot.id, channel) & need != need:
            if need == VIEW_CHANNEL:
                raise ApiError(403, 50001, "Missing Access")
            raise missing_permissions()
        return channel

    async def get_channel(self, request: web.Request) -> web.Response:
        return _json(self._visible_channel(request).to_dict())

    async def typing(self, request: web.Request) -> web.Response:
        self._visible_channel(request)
        return web.Response(status=204)

    # ---- messages ------------------------------------------------------------------------------
    async def list_messages(self, request: web.Request) -> web.Response:
        channel = self._visible_channel(request, VIEW_CHANNEL | READ_MESSAGE_HISTORY)
        q = request.query
        limit = int(q.get("limit", 50))
        if not 1 <= limit <= 100:
            raise ApiError(400, 50035, "Invalid Form Body")
        msgs = self.world.history(channel.id)
        if "before" in q:
            msgs = [m for m in msgs if m.id < int(q["before"])]
            msgs = msgs[-limit:]
        elif "after" in q:
            msgs = [m for m in msgs if m.id > int(q["after"])][:limit]
        elif "around" in q:
            around = int(q["around"])
            older = [m for m in msgs if m.id <= around][-(limit // 2 + limit % 2):]
            newer = [m for m in msgs if m.id > around][: limit // 2]
            msgs = older + newer
        else:
            msgs = msgs[-limit:]
        return _json([m.to_dict() for m in reversed(msgs)])

    async def create_message(self, request: web.Request) -> web.Response:
        body = request[BODY] or {}
        msg, _ = self.world.post_message(int(request.match_info["channel_id"]), self.world.bot,
                                         body, request[UPLOADS])
        return _json(msg.to_dict())

    def _channel_message(self, request: web.Request) -> Message:
        self._visible_channel(request)
        return self.world.message(int(request.match_info["channel_id"]),
                                  int(request.match_info["message_id"]))

    async def get_message(self, request: web.Request) -> web.Response:
        self._visible_channel(request, VIEW_CHANNEL | READ_MESSAGE_HISTORY)
        return _json(self._channel_message(request).to_dict())

    async def edit_message(self, request: web.Request) -> web.Response:
        msg = self._channel_message(request)
        self.world.edit_message(msg, request[BODY] or {}, request[UPLOADS],
                                by=self.world.bot)
        return _json(msg.to_dict())

    async def delete_message(self, request: web.Request) -> web.Response:
        msg = self._channel_message(request)
        if msg.author.id != self.world.bot.id:
            self._visible_channel(request, VIEW_CHANNEL | MANAGE_MESSAGES)
        self.world.delete_message(msg)
        return web.Response(status=204)

    async def create_thread(self, request: web.Request) -> web.Response:
        body = request[BODY] or {}
        thread = self.world.create_thread(int(request.match_info["channel_id"]),
                                          str(body.get("name", "")), by=self.world.bot,
                                          type=int(body.get("type") or 11))
        return _json(thread.to_dict(), 201)

    async def thread_from_message(self, request: web.Request) -> web.Response:
        body = request[BODY] or {}
        thread = self.world.create_thread(int(request.match_info["channel_id"]),
                                          str(body.get("name", "")), by=self.world.bot,
                                          from_message=int(request.match_info["message_id"]))
        return _json(thread.to_dict(), 201)

    # ---- interactions and their webhooks -------------------------------------------------------
    async def callback(self, request: web.Request) -> web.StreamResponse:
        inter = self.interactions.get(int(request.match_info["interaction_id"]))
        if inter is None or inter.token != request.match_info["token"]:
            raise ApiError(404, 10062, "Unknown interaction")
        with_response = request.query.get("with_response", "").lower() in ("1", "true")
        answer = inter.respond(request[BODY] or {}, request[UPLOADS], with_response)
        return _json(answer) if answer is not None else web.Response(status=204)

    def _webhook(self, request: web.Request) -> FakeInteraction:
        if int(request.match_info["webhook_id"]) != self.world.application_id:
            raise ApiError(404, 10015, "Unknown Webhook")
        token = request.match_info["token"]
        for inter in self.interactions.values():
            if inter.token == token:
                return inter
        raise ApiError(401, 50027, "Invalid Webhook Token")

    async def webhook_execute(self, request: web.Request) -> web.StreamResponse:
        msg = self._webhook(request).execute(request[BODY] or {}, request[UPLOADS])
        wait = request.query.get("wait", "").lower() in ("1", "true")
        return _json(msg.to_dict()) if wait else web.Response(status=204)

    async def webhook_get(self, request: web.Request) -> web.Response:
        return _json(self._webhook(request).get(request.match_info["message_id"]).to_dict())

    async def webhook_edit(self, request: web.Request) -> web.Response:
        msg = self._webhook(request).edit(request.match_info["message_id"],
                                          request[BODY] or {}, request[UPLOADS])
        return _json(msg.to_dict())

    async def webhook_delete(self, request: web.Request) -> web.Response:
        self._webhook(request).delete(request.match_info["message_id"])
        return web.Response(status=204)

    # ---- CDN -----------------------------------------------------------------------------------
    async def cdn(self, request: web.Request) -> web.StreamResponse:
        """Signed attachment URLs: a wrong or missing signature, or a past `ex`, is a 404
        "This content is no longer available." as on Discord's CDN."""
        gone = web.Response(status=404, text="This content is no longer available.")
        try:
            att = self.world.attachments[int(request.match_info["attachment_id"])]
        except (KeyError, ValueError):
            return web.Response(status=404, text="Not Found")
        if att.channel_id != int(request.match_info["channel_id"]):
            return web.Response(status=404, text="Not Found")
        path = cdn_path(att.channel_id, att.id, att.filename)
        try:
            expires = int(request.query.get("ex", ""), 16)
        except ValueError:
            return gone
        good = sign_cdn(self.world.cdn_secret, path, expires)
        expired = time.time() > min(expires, att.expires_at)
        if not hmac.compare_digest(good, request.query.get("hm", "")) or expired:
            return gone
        return web.Response(body=att.data,
                            content_type=att.content_type or "application/octet-stream")
