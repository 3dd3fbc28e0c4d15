"""The gateway websocket (API v10, JSON, optional zlib-stream / zstd-stream transport
compression as the client asks in the URL query).

Sessions outlive connections, as in Discord: each dispatch gets the session's next sequence
number and is buffered, so a client that RESUMEs with its last `seq` receives what it missed
and then RESUMED. Tests can drop connections, send RECONNECT or invalidate sessions.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import time
import zlib
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSMsgType, web

from tests.fakes.discord.world import World

# Opcodes.
DISPATCH, HEARTBEAT, IDENTIFY, PRESENCE, VOICE, RESUME, RECONNECT = 0, 1, 2, 3, 4, 6, 7
REQUEST_MEMBERS, INVALID_SESSION, HELLO, HEARTBEAT_ACK = 8, 9, 10, 11

# Intents.
GUILDS, GUILD_MEMBERS, GUILD_PRESENCES = 1 << 0, 1 << 1, 1 << 8
GUILD_MESSAGES, MESSAGE_CONTENT = 1 << 9, 1 << 15
PRIVILEGED = GUILD_MEMBERS | GUILD_PRESENCES | MESSAGE_CONTENT

_EVENT_INTENT = {
    "GUILD_CREATE": GUILDS, "GUILD_UPDATE": GUILDS, "CHANNEL_CREATE": GUILDS,
    "THREAD_CREATE": GUILDS, "THREAD_UPDATE": GUILDS, "GUILD_ROLE_CREATE": GUILDS,
    "MESSAGE_CREATE": GUILD_MESSAGES, "MESSAGE_UPDATE": GUILD_MESSAGES,
    "MESSAGE_DELETE": GUILD_MESSAGES, "GUILD_MEMBER_UPDATE": GUILD_MEMBERS,
}
BUFFER_SIZE = 2000
#: When each INTERACTION_CREATE left for the bot (by interaction id): the moment Discord
#: "dispatches" it, which is what an ack's latency is measured from.
SENT_AT: dict[str, float] = {}


@dataclass
class Frame:
    """One gateway payload, either direction, for the test's log (tokens redacted)."""

    at: float
    direction: str  # "recv" (from the bot) or "send"
    op: int
    t: str | None
    d: Any


class _Connection:
    """One websocket; a writer task keeps compression and send order identical."""

    def __init__(self, ws: web.WebSocketResponse, compress: str | None) -> None:
        self.ws = ws
        self.compress = compress
        self.session: Session | None = None
        self.queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
        self._zlib = zlib.compressobj() if compress == "zlib-stream" else None
        self._zstd: Any = None
        if compress == "zstd-stream":
            import zstandard  # type: ignore[import-not-found]

            self._zstd = zstandard.ZstdCompressor().compressobj()
            self._zstd_flush = zstandard.COMPRESSOBJ_FLUSH_BLOCK
        self.writer = asyncio.ensure_future(self._write())

    def send(self, payload: dict[str, Any]) -> None:
        self.queue.put_nowait(payload)

    async def _write(self) -> None:
        while (payload := await self.queue.get()) is not None:
            raw = json.dumps(payload, separators=(",", ":")).encode()
            try:
                if self._zlib is not None:
                    await self.ws.send_bytes(self._zlib.compress(raw)
                                             + self._zlib.flush(zlib.Z_SYNC_FLUSH))
                elif self._zstd is not None:
                    await self.ws.send_bytes(self._zstd.compress(raw)
                                             + self._zstd.flush(self._zstd_flush))
                else:
                    await self.ws.send_str(raw.decode())
            except (ConnectionError, RuntimeError):
                return
            if payload.get("t") == "INTERACTION_CREATE":
                SENT_AT[str(payload["d"]["id"])] = time.monotonic()

    async def close(self, code: int, message: str = "") -> None:
        self.queue.put_nowait(None)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.writer, 1.0)
        await self.ws.close(code=code, message=message.encode())


@dataclass
class Session:
    id: str
    shard: tuple[int, int]
    intents: int
    seq: int = 0
    buffer: list[dict[str, Any]] = field(default_factory=list)
    conn: _Connection | None = None
    valid: bool = True
    ready: bool = False  # READY and every GUILD_CREATE went out
    identified_at: float = field(default_factory=time.monotonic)

    def owns(self, guild_id: int | None) -> bool:
        shard_id, count = self.shard
        return guild_id is None or (guild_id >> 22) % count == shard_id


class Gateway:
    """Serves `/gateway` (and the resume URL); `dispatch` is the World's event sink."""

    def __init__(self, world: World) -> None:
        self.world = world
        self.url = ""  # set by the server once it has a port
        self.heartbeat_interval_ms = 41250
        self.allowed_privileged = PRIVILEGED  # what the app is approved for in the portal
        self.sessions: dict[str, Session] = {}
        self.frames: list[Frame] = []
        self.connections: list[_Connection] = []
        self.connect_paths: list[str] = []
        self.connect_queries: list[dict[str, str]] = []
        self.identifies = 0
        self.resumes = 0
        self.heartbeats = 0
        self._closing: set[asyncio.Future[None]] = set()

    # ---- the websocket endpoint -----------------------------------------------------------
    async def handle(self, request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse(max_msg_size=0, autoping=True)
        await ws.prepare(request)
        self.connect_paths.append(request.path)
        self.connect_queries.append(dict(request.query))
        q = request.query
        compress = q.get("compress")
        conn = _Connection(ws, compress if compress in ("zlib-stream", "zstd-stream") else None)
        self.connections.append(conn)
        try:
            if q.get("v") != "10":
                await conn.close(4012, "Invalid API version")
                return ws
            if q.get("encoding", "json") != "json":
                await conn.close(4002, "Decode error")
                return ws
            if compress not in (None, "zlib-stream", "zstd-stream"):
                await conn.close(4000, "Unknown compression")
                return ws
            self._send(conn, {"op": HELLO, "d": {"heartbeat_interval":
                                                 self.heartbeat_interval_ms,
                                                 "_trace": ['["fake-gateway",{}]']},
                              "s": None, "t": None})
            async for msg in ws:
                if msg.type is not WSMsgType.TEXT:
                    if msg.type is WSMsgType.BINARY:
                        await conn.close(4002, "Decode error")
                    break
                try:
                    payload = json.loads(msg.data)
                except ValueError:
                    await conn.close(4002, "Decode error")
                    break
                if not await self._receive(conn, payload):
                    break
        finally:
            if conn.session is not None and conn.session.conn is conn:
                conn.session.conn = None
            conn.queue.put_nowait(None)
            if conn in self.connections:
                self.connections.remove(conn)
        return ws

    def _send(self, conn: _Connection, payload: dict[str, Any]) -> None:
        self.frames.append(Frame(time.monotonic(), "send", payload["op"], payload.get("t"),
                                 payload.get("d")))
        conn.send(payload)

    async def _receive(self, conn: _Connection, payload: dict[str, Any]) -> bool:
        """Handle one client payload; False when the connection was closed."""
        op, d = payload.get("op"), payload.get("d")
        logged = dict(d, token="<redacted>") if isinstance(d, dict) and "token" in d else d
        self.frames.append(Frame(time.monotonic(), "recv", int(op or -1), None, logged))
        if op == HEARTBEAT:
            self.heartbeats += 1
            self._send(conn, {"op": HEARTBEAT_ACK, "d": None, "s": None, "t": None})
            return True
        if op == IDENTIFY:
            return await self._identify(conn, d or {})
        if op == RESUME:
            return await self._resume(conn, d or {})
        if conn.session is None:
            await conn.close(4003, "Not authenticated")
            return False
        if op == REQUEST_MEMBERS:
            self._members_chunk(conn.session, d or {})
            return True
        if op in (PRESENCE, VOICE):
            return True
        await conn.close(4001, "Unknown opcode")
        return False

    async def _identify(self, conn: _Connection, d: dict[str, Any]) -> bool:
        if conn.session is not None:
            await conn.close(4005, "Already authenticated")
            return False
        if d.get("token") != self.world.token:
            await conn.close(4004, "Authentication failed")
            return False
        intents = d.get("intents")
        if not isinstance(intents, int) or intents < 0:
            await conn.close(4013, "Invalid intent(s)")
            return False
        if intents & PRIVILEGED & ~self.allowed_privileged:
            await conn.close(4014, "Disallowed intent(s)")
            return False
        shard = tuple(d.get("shard") or (0, 1))
        if len(shard) != 2 or not 0 <= shard[0] < shard[1]:
            await conn.close(4010, "Invalid shard")
            return False
        self.identifies += 1
        session = Session(secrets.token_hex(16), (int(shard[0]), int(shard[1])), intents)
        self.sessions[session.id] = session
        session.conn = conn
        conn.session = session
        guilds = [g for g in self.world.guilds.values()
                  if session.owns(g.id) and self.world.bot_member(g.id)]
        ready = {
            "v": 10, "user": self.world.bot.to_dict() | {"verified": True, "mfa_enabled": False,
                                                         "email": None},
            "guilds": [{"id": str(g.id), "unavailable": True} for g in guilds],
            "session_id": session.id, "session_type": "normal",
            "resume_gateway_url": self.url + "/resume",
            "application": {"id": self.world.application["id"],
                            "flags": self.world.application["flags"]},
            "private_channels": [], "relationships": [], "presences": [],
            "guild_join_requests": [], "geo_ordered_rtc_regions": ["us-east"],
            "user_settings": {}, "auth_session_id_hash": secrets.token_hex(8),
            "_trace": ['["fake-gateway",{}]'],
        }
        if d.get("shard") is not None:
            ready["shard"] = list(session.shard)
        self._dispatch_to(session, "READY", ready)
        for guild in guilds:
            self._dispatch_to(session, "GUILD_CREATE", self.guild_create(guild.id, intents))
        session.ready = True
        self.world.changed()
        return True

    def guild_create(self, guild_id: int, intents: int) -> dict[str, Any]:
        """Without GUILD_MEMBERS Discord sends only the bot's own member."""
        guild = self.world.guilds[guild_id]
        members = list(guild.members.values()) if intents & GUILD_MEMBERS else [
            guild.members[self.world.bot.id]]
        return guild.to_dict(members=members)

    async def _resume(self, conn: _Connection, d: dict[str, Any]) -> bool:
        session = self.sessions.get(str(d.get("session_id")))
        if d.get("token") != self.world.token:
            await conn.close(4004, "Authentication failed")
            return False
        if session is None or not session.valid or conn.session is not None:
            self._send(conn, {"op": INVALID_SESSION, "d": False, "s": None, "t": None})
            return True
        self.resumes += 1
        if session.conn is not None and session.conn is not conn:
            old = session.conn
            session.conn = None
            self._closing.add(asyncio.ensure_future(old.close(4009, "Session taken over")))
        session.conn = conn
        conn.session = session
        last = int(d.get("seq") or 0)
        for payload in session.buffer:
            if payload["s"] > last:
                self._send(conn, payload)
        self._dispatch_to(session, "RESUMED", {"_trace": ['["fake-gateway",{}]']})
        self.world.changed()
        return True

    def _members_chunk(self, session: Session, d: dict[str, Any]) -> None:
        gids = d.get("guild_id")
        for gid in gids if isinstance(gids, list) else [gids]:
            guild = self.world.guilds.get(int(gid or 0))
            if guild is None:
                continue
            members = list(guild.members.values())
            if d.get("user_ids"):
                wanted = {int(u) for u in d["user_ids"]}
                members = [m for m in members if m.user.id in wanted]
            elif d.get("query"):
                members = [m for m in members if m.user.username.startswith(d["query"])]
            if d.get("limit"):
                members = members[: int(d["limit"])]
            data: dict[str, Any] = {"guild_id": str(guild.id), "chunk_index": 0,
                                    "chunk_count": 1,
                                    "members": [m.to_dict() for m in members]}
            if d.get("nonce"):
                data["nonce"] = d["nonce"]
            self._dispatch_to(session, "GUILD_MEMBERS_CHUNK", data)

    # ---- dispatching ------------------------------------------------------------------------
    def _dispatch_to(self, session: Session, event: str, data: dict[str, Any]) -> None:
        session.seq += 1
        payload = {"op": DISPATCH, "t": event, "s": session.seq, "d": data}
        session.buffer.append(payload)
        del session.buffer[:-BUFFER_SIZE]
        if session.conn is not None:
            self._send(session.conn, payload)

    def dispatch(self, event: str, data: dict[str, Any], guild_id: int | None) -> None:
        """Send an event to every valid session that owns the guild and asked for it."""
        for session in list(self.sessions.values()):
            if not session.valid or not session.owns(guild_id):
                continue
            needed = _EVENT_INTENT.get(event)
            if needed is not None and not session.intents & needed:
                continue
            body = data
            if (event in ("MESSAGE_CREATE", "MESSAGE_UPDATE")
                    and not session.intents & MESSAGE_CONTENT
                    and data.get("author", {}).get("id") != str(self.world.bot.id)):
                body = dict(data, content="", embeds=[], attachments=[], components=[])
            self._dispatch_to(session, event, body)

    def live_sessions(self, guild_id: int | None = None) -> list[Session]:
        return [s for s in self.sessions.values()
                if s.valid and s.ready and s.conn is not None and s.owns(guild_id)]

    # ---- test knobs ---------------------------------------------------------------------------
    async def drop_connections(self, code: int = 4000) -> None:
        """Close every websocket (sessions stay resumable), like a network blip."""
        for conn in list(self.connections):
            await conn.close(code, "fake: connection dropped")

    def send_reconnect(self) -> None:
        """Opcode 7: Discord asks the client to reconnect and resume."""
        for conn in list(self.connections):
            self._send(conn, {"op": RECONNECT, "d": None, "s": None, "t": None})

    def invalidate_sessions(self, resumable: bool = False) -> None:
        """Opcode 9 to every connection; non-resumable sessions are forgotten."""
        for session in self.sessions.values():
            if not resumable:
                session.valid = False
        for conn in list(self.connections):
            self._send(conn, {"op": INVALID_SESSION, "d": resumable, "s": None, "t": None})

    async def close_all(self) -> None:
        for conn in list(self.connections):
            await conn.close(1001, "fake: server shutting down")
