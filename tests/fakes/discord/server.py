"""`FakeDiscord`: a small Discord on 127.0.0.1 (REST v10 + gateway + CDN) and the test-side API
that plays the users: invoke slash commands, click buttons, submit modals, then wait for and
inspect what the bot answered.

    async with FakeDiscord() as fake:
        env = fake.env()          # FAKE_DISCORD_API, FAKE_DISCORD_GATEWAY, DISCORD_TOKEN
        ... start the bot (run_bot launcher, or in-process with point_discord_at) ...
        await fake.wait_until_ready()
        await fake.wait_for(lambda: fake.commands())          # the bot synced its tree
        inter = await fake.slash("video", {"prompt": "a cat"},
                                 attachments=[("cat.png", png_bytes, "image/png")])
        cb = await fake.wait_for_callback(inter)

Layers: state.py (data and JSON shapes) → world.py (rules) → interactions.py, rest.py,
gateway.py (protocols) → this module (lifecycle and test API).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

from aiohttp import web

from tests.fakes.discord.entitlements import Store as EntitlementStore
from tests.fakes.discord.gateway import Gateway
from tests.fakes.discord.interactions import (
    Callback,
    FakeInteraction,
    File,
    InvalidInvocation,
    Limits,
    build_component,
    build_modal_submit,
    build_slash,
)
from tests.fakes.discord.rest import Fault, LoggedRequest, Rest
from tests.fakes.discord.state import MIB, Channel, Command, Guild, Member, Message, Role
from tests.fakes.discord.user_installs import build_user_slash
from tests.fakes.discord.world import World

T = TypeVar("T")
AttachmentSpec = File | tuple[str, bytes, str | None] | tuple[str, bytes]


def _file(spec: AttachmentSpec) -> File:
    if isinstance(spec, File):
        return spec
    if len(spec) == 2:
        return File(spec[0], spec[1], None)
    return File(spec[0], spec[1], spec[2])


class FakeDiscord:
    """The fake server. A default guild (`.guild`), its #general (`.channel`) and one
    ordinary member (`.member`) exist from the start; add more with `add_*`."""

    def __init__(self, token: str = "MTAxNzQ.fake.bot-token", *, premium_tier: int = 0) -> None:
        self.world = World(token)
        self.limits = Limits()
        self.interactions: dict[int, FakeInteraction] = {}
        self.gateway = Gateway(self.world)
        self.world.sink = self.gateway.dispatch
        self.world.on_change = self._wake
        self.rest = Rest(self.world, self.gateway, self.interactions)
        self.app = web.Application(client_max_size=256 * MIB)
        self.rest.install(self.app)
        self.entitlements = EntitlementStore(self.world, self.gateway)
        self.entitlements.install(self.app)
        self._runner: web.AppRunner | None = None
        self._waiters: set[asyncio.Event] = set()
        self.port = 0
        self.guild: Guild = self.world.add_guild("Seedance Test", premium_tier=premium_tier)
        self.channel: Channel = self.world.channels[self.guild.default_channel_id]
        self.member: Member = self.world.add_member(self.guild.id, "alice")

    # ---- lifecycle -------------------------------------------------------------------------
    async def start(self) -> FakeDiscord:
        self._runner = web.AppRunner(self.app, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        server: Any = site._server
        self.port = server.sockets[0].getsockname()[1]
        self.world.cdn_base = self.base_url
        self.gateway.url = f"ws://127.0.0.1:{self.port}/gateway"
        return self

    async def stop(self) -> None:
        await self.gateway.close_all()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeDiscord:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def api_base(self) -> str:
        return f"{self.base_url}/api/v10"

    @property
    def gateway_url(self) -> str:
        return self.gateway.url

    @property
    def token(self) -> str:
        return self.world.token

    @property
    def application_id(self) -> int:
        return self.world.application_id

    @property
    def bot_user_id(self) -> int:
        return self.world.bot.id

    def env(self) -> dict[str, str]:
        """Environment for a bot subprocess started with `python -m tests.fakes.discord.run_bot`."""
        return {"FAKE_DISCORD_API": self.api_base, "FAKE_DISCORD_GATEWAY": self.gateway_url,
                "DISCORD_TOKEN": self.token}

    # ---- clocks and knobs --------------------------------------------------------------------
    @property
    def ack_deadline(self) -> float:
        """Seconds the bot has to answer an interaction's callback (Discord: 3)."""
        return self.limits.ack_deadline

    @ack_deadline.setter
    def ack_deadline(self, value: float) -> None:
        self.limits.ack_deadline = value

    @property
    def token_lifetime(self) -> float:
        """Seconds an interaction token works for webhooks (Discord: 15 minutes)."""
        return self.limits.token_lifetime

    @token_lifetime.setter
    def token_lifetime(self, value: float) -> None:
        self.limits.token_lifetime = value

    def rate_limit_next(self, times: int = 1, *, retry_after: float = 0.05,
                        method: str | None = None, route: str | None = None,
                        scope: str = "user", is_global: bool = False) -> None:
        """Answer the next `times` matching REST calls with 429 (body retry_after,
        Retry-After and X-RateLimit-Scope headers), as Discord does."""
        self.rest.state.faults.append(Fault(429, times, method, route, retry_after, scope,
                                            is_global))

    def fail_next(self, status: int = 500, times: int = 1, *, method: str | None = None,
                  route: str | None = None, body: Any = None, delay: float = 0.0,
                  applied: bool = False, hold: asyncio.Event | None = None) -> None:
        """Answer the next `times` matching REST calls with `status` (e.g. 500, 502, 503).
        `applied`: the call is carried out first, and only its answer is lost; `hold`: the
        answer waits until the test sets it (to crash the bot in between)."""
        self.rest.state.faults.append(Fault(status, times, method, route, body=body,
                                            delay=delay, applied=applied, hold=hold))

    @property
    def requests(self) -> list[LoggedRequest]:
        return self.rest.state.requests

    def received(self, method: str | None = None, route: str = "") -> list[LoggedRequest]:
        """Logged requests by method and a substring of the route template or path."""
        return [r for r in self.requests if (method is None or r.method == method)
                and (route in r.route or route in r.path)]

    # ---- building the world ------------------------------------------------------------------
    def add_guild(self, name: str = "Another Guild", *, premium_tier: int = 0,
                  with_bot: bool = True) -> Guild:
        """Add a guild (sent to already connected sessions as GUILD_CREATE). Not `with_bot`:
        a server that never installed the app, which its members' own installs still reach."""
        guild = self.world.add_guild(name, premium_tier=premium_tier, with_bot=with_bot)
        for session in self.gateway.sessions.values() if with_bot else ():
            if session.valid and session.owns(guild.id):
                self.gateway._dispatch_to(session, "GUILD_CREATE",
                                          self.gateway.guild_create(guild.id, session.intents))
        return guild

    def add_channel(self, name: str, *, guild_id: int | None = None, type: int = 0,
                    overwrites: list[dict[str, Any]] | None = None) -> Channel:
        channel = self.world.add_channel(guild_id or self.guild.id, name, type=type,
                                         overwrites=overwrites)
        self.world.emit("CHANNEL_CREATE", channel.to_dict(), channel.guild_id)
        return channel

    def add_role(self, name: str, permissions: int = 0, *, guild_id: int | None = None) -> Role:
        gid = guild_id or self.guild.id
        role = self.world.add_role(gid, name, permissions)
        self.world.emit("GUILD_ROLE_CREATE", {"guild_id": str(gid), "role": role.to_dict()}, gid)
        return role

    def add_member(self, username: str, *, roles: Sequence[Role | int] = (),
                   guild_id: int | None = None) -> Member:
        ids = [r.id if isinstance(r, Role) else int(r) for r in roles]
        return self.world.add_member(guild_id or self.guild.id, username, roles=ids)

    def join(self, member: Member, guild: Guild, *, roles: Sequence[Role | int] = ()) -> Member:
        """An existing user joins another guild."""
        ids = [r.id if isinstance(r, Role) else int(r) for r in roles]
        joined = Member(member.user, guild.id, ids)
        guild.members[member.user.id] = joined
        return joined

    def open_dm(self, user_id: int) -> Channel:
        """The bot's DM channel with a user (what POST /users/@me/channels returns)."""
        return self.world.open_dm(user_id)

    def add_group_dm(self, *members: Member) -> Channel:
        return self.world.add_group_dm([m.user.id for m in members])

    def close_dms(self, user_id: int) -> None:
        """The user accepts no DMs from the bot: posting there fails with 50007."""
        self.world.closed_dms.add(user_id)

    # ---- what the bot did --------------------------------------------------------------------
    def commands(self, guild_id: int | None = None) -> list[Command]:
        """Registered commands: global (None) or one guild's."""
        return list(self.world.commands.get(guild_id, []))

    def messages(self, channel_id: int | None = None) -> list[Message]:
        """Visible messages of a channel (default #general), oldest first."""
        return self.world.history(channel_id or self.channel.id)

    def message(self, message_id: int) -> Message:
        return self.world.messages[message_id]

    def attachment_bytes(self, url: str) -> bytes:
        """The bytes behind an attachment URL the fake handed out."""
        aid = int(url.split("?")[0].split("/")[-2])
        return self.world.attachments[aid].data

    def expire_attachments(self) -> None:
        """Every CDN link handed out so far stops working (Discord's links expire in ~24 h;
        `world.attachment_ttl` sets the lifetime of new ones)."""
        for att in self.world.attachments.values():
            att.expires_at = 0.0

    # ---- playing the users --------------------------------------------------------------------
    async def invoke_slash(self, guild_id: int, channel_id: int, user_id: int, name: str,
                           options: Mapping[str, Any] | None = None,
                           attachments: Sequence[AttachmentSpec]
                           | Mapping[str, AttachmentSpec] | None = None,
                           *, path: Sequence[str] = (), locale: str = "en-US",
                           allow_offline: bool = False) -> FakeInteraction:
        """A user runs `/name [path…] options`: Discord builds INTERACTION_CREATE (type 2)
        from the registered command and sends it to the bot. Attachment options are filled
        from `attachments` (in the command's option order, or by name from a mapping)."""
        files: Sequence[File] | Mapping[str, File]
        if isinstance(attachments, Mapping):
            files = {k: _file(v) for k, v in attachments.items()}
        else:
            files = [_file(a) for a in attachments or []]
        payload = build_slash(self.world, guild_id, channel_id, user_id, name, options or {},
                              files, path, locale)
        return self._deliver(payload, None, allow_offline)

    async def slash(self, name: str, options: Mapping[str, Any] | None = None, *,
                    attachments: Sequence[AttachmentSpec]
                    | Mapping[str, AttachmentSpec] | None = None,
                    path: Sequence[str] = (), user: Member | None = None,
                    channel: Channel | None = None, locale: str = "en-US") -> FakeInteraction:
        """`invoke_slash` in the default guild/#general as the default member."""
        ch = channel or self.channel
        return await self.invoke_slash(ch.guild_id, ch.id, (user or self.member).user.id, name,
                                       options, attachments, path=path, locale=locale)

    async def user_slash(self, name: str, options: Mapping[str, Any] | None = None, *,
                         channel: Channel, user: Member | None = None,
                         attachments: Sequence[AttachmentSpec]
                         | Mapping[str, AttachmentSpec] | None = None,
                         locale: str = "en-US", guild_install: bool = False
                         ) -> FakeInteraction:
        """`/name` through the app installed to the user (default: `.member`), in `channel`:
        the bot's DM (`open_dm`), a group DM (`add_group_dm`) or a guild channel, whether or
        not the bot is in that guild."""
        files: Sequence[File] | Mapping[str, File]
        if isinstance(attachments, Mapping):
            files = {k: _file(v) for k, v in attachments.items()}
        else:
            files = [_file(a) for a in attachments or []]
        payload = build_user_slash(self.world, (user or self.member).user.id, channel, name,
                                   options or {}, files, locale=locale,
                                   guild_install=guild_install)
        return self._deliver(payload, None, False)

    async def click(self, message_id: int, custom_id: str, user_id: int | None = None, *,
                    values: Sequence[str] | None = None, locale: str = "en-US",
                    allow_offline: bool = False) -> FakeInteraction:
        """A user clicks a button (or picks `values` in a select) on a message the bot sent."""
        message = self.world.messages.get(message_id)
        if message is None or message.deleted:
            raise InvalidInvocation(f"no message {message_id} to click on")
        uid = user_id if user_id is not None else self.member.user.id
        payload = build_component(self.world, message, custom_id, uid, values, locale)
        return self._deliver(payload, message.id, allow_offline)

    async def submit_modal(self, interaction: FakeInteraction, values: Mapping[str, str],
                           user_id: int | None = None, *, locale: str = "en-US",
                           allow_offline: bool = False) -> FakeInteraction:
        """The user fills in the modal the bot opened on `interaction` and submits it."""
        payload = build_modal_submit(self.world, interaction, values, user_id, locale)
        return self._deliver(payload, interaction.source_message_id, allow_offline)

    def _deliver(self, payload: dict[str, Any], source: int | None,
                 allow_offline: bool) -> FakeInteraction:
        gid = int(payload["guild_id"]) if payload.get("guild_id") else None
        live = self.gateway.live_sessions(gid)
        if not live and not allow_offline:
            raise RuntimeError("no bot session is connected to the fake gateway for guild "
                               f"{gid}; await fake.wait_until_ready() first")
        inter = FakeInteraction(self.world, payload, self.limits, source_message_id=source)
        inter.delivered = bool(live)
        self.interactions[inter.id] = inter
        self.world.emit("INTERACTION_CREATE", payload, gid)
        return inter

    # ---- waiting -------------------------------------------------------------------------------
    def _wake(self) -> None:
        for ev in self._waiters:
            ev.set()

    async def wait_for(self, predicate: Callable[[], T | None],
                       timeout: float = 10.0,  # noqa: ASYNC109 - the API tests asked for
                       what: str = "condition") -> T:
        """Wait until `predicate()` is truthy; re-checked on every change in the fake (and
        every 50 ms, for predicates over the bot's own state). Returns its value."""
        deadline = time.monotonic() + timeout
        while True:
            value = predicate()
            if value:
                return value
            left = deadline - time.monotonic()
            if left <= 0:
                recent = [f"{r.method} {r.path} -> {r.status}" for r in self.requests[-8:]]
                raise TimeoutError(f"timed out after {timeout}s waiting for {what}; "
                                   f"last requests: {recent}")
            ev = asyncio.Event()
            self._waiters.add(ev)
            try:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(ev.wait(), min(left, 0.05))
            finally:
                self._waiters.discard(ev)

    async def wait_until_ready(self, timeout: float = 10.0) -> None:  # noqa: ASYNC109
        """A bot session identified (or resumed) and got READY + every GUILD_CREATE."""
        await self.wait_for(lambda: self.gateway.live_sessions(), timeout, "a gateway session")

    async def wait_for_callback(self, interaction: FakeInteraction,
                                timeout: float = 10.0) -> Callback:  # noqa: ASYNC109
        return await self.wait_for(lambda: interaction.callback, timeout,
                                   f"a callback on {interaction!r}")

    async def wait_for_followup(self, interaction: FakeInteraction, count: int = 1,
                                timeout: float = 10.0) -> Message:  # noqa: ASYNC109
        """The `count`-th followup message of an interaction."""
        def check() -> Message | None:
            ups = interaction.followups
            return ups[count - 1] if len(ups) >= count else None
        return await self.wait_for(check, timeout, f"followup #{count} on {interaction!r}")

    async def wait_for_message(self, channel_id: int | None = None,
                               predicate: Callable[[Message], bool] | None = None,
                               timeout: float = 10.0) -> Message:  # noqa: ASYNC109
        """The first visible message in the channel satisfying `predicate`."""
        def check() -> Message | None:
            for msg in self.messages(channel_id):
                if predicate is None or predicate(msg):
                    return msg
            return None
        return await self.wait_for(check, timeout, "a channel message")

    # ---- gateway knobs -------------------------------------------------------------------------
    async def drop_connections(self, code: int = 4000) -> None:
        """Close the bot's websocket(s); discord.py should RESUME."""
        await self.gateway.drop_connections(code)

    def send_reconnect(self) -> None:
        self.gateway.send_reconnect()

    def invalidate_sessions(self, resumable: bool = False) -> None:
        self.gateway.invalidate_sessions(resumable)
