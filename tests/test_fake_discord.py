"""The fake Discord against the real, unpatched discord.py client.

Only `Route.BASE`, `DiscordWebSocket.DEFAULT_GATEWAY` and `Asset.BASE` are pointed at the fake
(exactly what tests/fakes/discord/run_bot.py does); everything else is discord.py's own code
speaking HTTP and the gateway protocol over loopback.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import subprocess
import sys
import zlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Literal

import aiohttp
import discord
import pytest
from discord import app_commands
from discord.ext import commands

from tests.fakes.discord import FakeDiscord, InvalidInvocation, point_discord_at
from tests.fakes.discord.state import MIB
from tests.media_factory import make_image

ROOT = Path(__file__).resolve().parents[1]


# ---- a tiny test-only bot ---------------------------------------------------------------------
class RetryButton(discord.ui.DynamicItem[discord.ui.Button[Any]], template=r"retry:(?P<job>\d+)"):
    """A button whose state lives in its custom_id, so it works across restarts."""

    def __init__(self, job: int) -> None:
        super().__init__(discord.ui.Button(label="Retry", custom_id=f"retry:{job}",
                                           style=discord.ButtonStyle.primary))
        self.job = job

    @classmethod
    async def from_custom_id(cls, interaction: discord.Interaction[Any],
                             item: discord.ui.Item[Any], match: Any) -> RetryButton:
        return cls(int(match["job"]))

    async def callback(self, interaction: discord.Interaction[Any]) -> None:
        await interaction.response.send_message(f"retry {self.job} by {interaction.user.id}")


class Feedback(discord.ui.Modal, title="Feedback"):
    text: discord.ui.TextInput[Any] = discord.ui.TextInput(label="Text", custom_id="fb_text")

    async def on_submit(self, interaction: discord.Interaction[Any]) -> None:
        await interaction.response.send_message(f"thanks: {self.text.value}", ephemeral=True)


class Probe(commands.Cog):
    """Slash commands that exercise each interaction path; results land in `events`."""

    admin = app_commands.Group(name="admin", description="Admin things",
                               default_permissions=discord.Permissions(manage_guild=True))

    def __init__(self) -> None:
        self.events: dict[str, Any] = {}
        self.gate = asyncio.Event()

    @app_commands.command(name="render", description="Render a prompt")
    async def render(self, interaction: discord.Interaction[Any], prompt: str,
                     file1: discord.Attachment | None = None,
                     seconds: app_commands.Range[int, 4, 15] = 5) -> None:
        await interaction.response.defer(thinking=True)
        data = await file1.read() if file1 else b""
        view = discord.ui.View(timeout=None)
        view.add_item(RetryButton(42))
        msg = await interaction.followup.send(
            f"{prompt}|{len(data)}|{file1.content_type if file1 else None}|{seconds}",
            file=discord.File(io.BytesIO(data[::-1] or b"none"), "result.bin"),
            view=view, wait=True)
        self.events["followup"] = msg
        self.events["edited"] = await interaction.edit_original_response(content=f"done: {prompt}")

    @app_commands.command(name="slow", description="Answers after the test opens the gate")
    async def slow(self, interaction: discord.Interaction[Any]) -> None:
        await interaction.response.defer()
        await self.gate.wait()
        try:
            await interaction.followup.send("late followup")
        except discord.HTTPException as exc:
            self.events["slow_error"] = exc

    @app_commands.command(name="late", description="Acknowledges too late")
    async def late(self, interaction: discord.Interaction[Any]) -> None:
        await self.gate.wait()
        try:
            await interaction.response.send_message("too late")
        except discord.HTTPException as exc:
            self.events["late_error"] = exc

    @app_commands.command(name="feedback", description="Opens a modal")
    async def feedback(self, interaction: discord.Interaction[Any]) -> None:
        await interaction.response.send_modal(Feedback())

    @admin.command(name="credit", description="Give credits")
    async def credit(self, interaction: discord.Interaction[Any], user: discord.Member,
                     amount: int, reason: Literal["refund", "gift"]) -> None:
        assert interaction.permissions is not None
        await interaction.response.send_message(
            f"{user.id}|{user.name}|{amount}|{reason}|{interaction.permissions.manage_guild}",
            ephemeral=True)


class ProbeBot(commands.Bot):
    def __init__(self, guild_id: int, **kw: Any) -> None:
        super().__init__(command_prefix="!", intents=discord.Intents.default(),
                         guild_ready_timeout=0.05, **kw)
        self.probe = Probe()
        self.guild_id = guild_id
        self.synced: list[app_commands.AppCommand] = []

    async def before_identify_hook(self, shard_id: int | None, *, initial: bool = False) -> None:
        """discord.py waits 5 s before a re-IDENTIFY (Discord's identify limit); not here."""

    async def setup_hook(self) -> None:
        await self.add_cog(self.probe)
        self.add_dynamic_items(RetryButton)

        @app_commands.command(name="ping", description="Guild-only ping")
        async def ping(interaction: discord.Interaction[Any]) -> None:
            await interaction.response.send_message("pong")

        self.tree.add_command(ping, guild=discord.Object(self.guild_id))
        self.synced = await self.tree.sync()
        await self.tree.sync(guild=discord.Object(self.guild_id))


class ShardedProbeBot(commands.AutoShardedBot):
    async def setup_hook(self) -> None:
        await self.tree.sync()


async def _run(bot: commands.Bot | commands.AutoShardedBot,
               fake: FakeDiscord) -> AsyncIterator[Any]:
    restore = point_discord_at(fake.api_base)
    task = asyncio.create_task(bot.start(fake.token))
    try:
        await fake.wait_for(lambda: bot.is_ready() or task.done(), 15, "the bot to be ready")
        if task.done():
            task.result()
        yield bot
    finally:
        await bot.close()
        await asyncio.wait_for(task, 10)
        restore()


@pytest.fixture
async def fake() -> AsyncIterator[FakeDiscord]:
    async with FakeDiscord() as server:
        yield server


@pytest.fixture
async def bot(fake: FakeDiscord) -> AsyncIterator[ProbeBot]:
    async for b in _run(ProbeBot(fake.guild.id), fake):
        yield b


# ---- login, sync, gateway ---------------------------------------------------------------------
async def test_login_sync_and_guild_create(fake: FakeDiscord, bot: ProbeBot) -> None:
    assert bot.user is not None and bot.user.id == fake.bot_user_id
    assert bot.application_id == fake.application_id
    names = sorted(c.name for c in fake.commands())
    assert names == ["admin", "feedback", "late", "render", "slow"]
    assert [c.name for c in fake.commands(fake.guild.id)] == ["ping"]
    # discord.py got the ids the fake assigned.
    assert {c.id for c in bot.synced} == {c.id for c in fake.commands()}
    # GUILD_CREATE was parsed: the guild, its channel and the bot's member are known.
    guild = bot.get_guild(fake.guild.id)
    assert guild is not None and guild.get_channel(fake.channel.id) is not None
    assert guild.me is not None and guild.filesize_limit == 10 * MIB
    # discord.py asked for zlib-stream and understood it (it got READY through it).
    assert fake.gateway.connect_queries[0]["compress"] == "zlib-stream"
    assert fake.gateway.identifies == 1
    routes = [(r.method, r.route) for r in fake.requests]
    assert ("GET", "/users/@me") in routes
    assert ("PUT", "/applications/{app_id}/commands") in routes
    # Re-syncing keeps command ids, as Discord does.
    before = {c.name: c.id for c in fake.commands()}
    await bot.tree.sync()
    assert {c.name: c.id for c in fake.commands()} == before


async def test_slash_defer_followup_with_file_button_and_edit(fake: FakeDiscord,
                                                              bot: ProbeBot,
                                                              tmp_path: Path) -> None:
    png = make_image(tmp_path / "cat.png", 320, 480).read_bytes()
    # The user's client declares video/mp4 for a PNG: the fake passes the lie through.
    inter = await fake.slash("render", {"prompt": "a cat", "seconds": 6},
                             attachments=[("cat.png", png, "video/mp4")])
    resolved = next(iter(inter.data["resolved"]["attachments"].values()))
    assert resolved["url"].startswith(fake.base_url + "/attachments/")
    assert "hm=" in resolved["url"] and resolved["size"] == len(png)

    cb = await fake.wait_for_callback(inter)
    assert cb.type == 5  # deferred with thinking
    edited = await fake.wait_for(lambda: bot.probe.events.get("edited"), what="the edit")
    followup = bot.probe.events["followup"]
    assert followup.content == f"a cat|{len(png)}|video/mp4|6"
    # First followup after a thinking defer fills the placeholder: one message, edited twice.
    assert inter.original is not None and followup.id == inter.original.id == edited.id
    assert inter.original.content == "done: a cat" and not inter.original.loading
    assert [e.method for e in inter.original.edits] == ["PATCH", "PATCH"]
    # The file went up as multipart, comes back from the CDN byte for byte.
    att = inter.original.attachments[0]
    assert att.filename == "result.bin" and fake.attachment_bytes(att.url) == png[::-1]
    async with aiohttp.ClientSession() as s, s.get(att.url) as resp:
        assert resp.status == 200 and await resp.read() == png[::-1]
    # The message is in the channel, with the button discord.py built.
    assert [m.id for m in fake.messages()] == [followup.id]
    assert inter.original.custom_ids() == ["retry:42"]

    click = await fake.click(followup.id, "retry:42")
    cb2 = await fake.wait_for_callback(click)
    assert cb2.type == 4 and cb2.data["content"] == f"retry 42 by {fake.member.user.id}"
    assert click.payload["message"]["id"] == str(followup.id)


async def test_subcommand_options_and_ephemeral_answer(fake: FakeDiscord,
                                                       bot: ProbeBot) -> None:
    bob = fake.add_member("bob")
    mods = fake.add_role("mods", permissions=1 << 5)  # MANAGE_GUILD
    carol = fake.add_member("carol", roles=[mods])
    inter = await fake.slash("admin", {"user": bob.user.id, "amount": 7, "reason": "gift"},
                             path=["credit"], user=carol)
    cb = await fake.wait_for_callback(inter)
    assert cb.type == 4 and cb.ephemeral
    assert cb.data["content"] == f"{bob.user.id}|bob|7|gift|True"
    assert inter.original is not None and inter.original.ephemeral
    assert fake.messages() == []  # ephemeral answers are not channel messages
    with pytest.raises(InvalidInvocation):
        await fake.slash("admin", {"user": bob.user.id, "amount": 7, "reason": "bribe"},
                         path=["credit"])
    with pytest.raises(InvalidInvocation):
        await fake.slash("render", {"prompt": "x", "seconds": 99})
    ping = await fake.slash("ping")
    assert (await fake.wait_for_callback(ping)).data["content"] == "pong"
    assert ping.data["guild_id"] == str(fake.guild.id)


async def test_modal_roundtrip(fake: FakeDiscord, bot: ProbeBot) -> None:
    inter = await fake.slash("feedback")
    cb = await fake.wait_for_callback(inter)
    assert cb.type == 9 and cb.data["custom_id"]
    submit = await fake.submit_modal(inter, {"fb_text": "lovely"})
    answer = await fake.wait_for_callback(submit)
    assert answer.data["content"] == "thanks: lovely" and answer.ephemeral


# ---- interaction clocks -----------------------------------------------------------------------
async def test_expired_token_answers_401(fake: FakeDiscord, bot: ProbeBot) -> None:
    fake.token_lifetime = 0.3
    inter = await fake.slash("slow")
    await fake.wait_for_callback(inter)
    await fake.wait_for(lambda: not inter.token_valid, what="the token to expire")
    bot.probe.gate.set()
    exc = await fake.wait_for(lambda: bot.probe.events.get("slow_error"))
    assert exc.status == 401 and exc.code == 50027
    assert [c.status for c in inter.webhook_calls] == [401]


async def test_late_callback_is_unknown_interaction(fake: FakeDiscord, bot: ProbeBot) -> None:
    fake.ack_deadline = 0.2
    inter = await fake.slash("late")
    await fake.wait_for(lambda: inter.expired, what="the ack deadline")
    bot.probe.gate.set()
    exc = await fake.wait_for(lambda: bot.probe.events.get("late_error"))
    assert isinstance(exc, discord.NotFound) and exc.code == 10062
    assert inter.callbacks == [] and inter.rejected_callbacks[0][1:] == (404, 10062)


# ---- channel messages -------------------------------------------------------------------------
async def test_upload_limit_by_premium_tier(fake: FakeDiscord, bot: ProbeBot) -> None:
    channel = bot.get_channel(fake.channel.id)
    assert isinstance(channel, discord.TextChannel)
    ok = await channel.send(file=discord.File(io.BytesIO(b"\0" * (10 * MIB)), "exact.bin"))
    assert ok.attachments[0].size == 10 * MIB
    with pytest.raises(discord.HTTPException) as err:
        await channel.send(file=discord.File(io.BytesIO(b"\0" * (10 * MIB + 1)), "big.bin"))
    assert err.value.status == 413 and err.value.code == 40005
    assert [m.id for m in fake.messages()] == [ok.id]


async def test_rate_limit_and_server_error_are_retried(fake: FakeDiscord,
                                                       bot: ProbeBot) -> None:
    channel = bot.get_channel(fake.channel.id)
    assert isinstance(channel, discord.TextChannel)
    fake.rate_limit_next(route="/channels/{channel_id}/messages", method="POST",
                         retry_after=0.05)
    msg = await channel.send("hello")
    posts = fake.received("POST", "/channels/{channel_id}/messages")
    assert [p.status for p in posts] == [429, 200]
    fake.fail_next(500, route="/channels/{channel_id}/messages/{message_id}", method="PATCH")
    await msg.edit(content="hello again")
    patches = fake.received("PATCH", "/channels/{channel_id}/messages/{message_id}")
    assert [p.status for p in patches] == [500, 200]
    assert [m.content for m in fake.messages()] == ["hello again"]


async def test_rate_limited_followup_is_retried(fake: FakeDiscord, bot: ProbeBot) -> None:
    fake.rate_limit_next(route="/webhooks/{webhook_id}/{token}", method="POST",
                         retry_after=0.05)
    inter = await fake.slash("render", {"prompt": "dog"})
    await fake.wait_for(lambda: bot.probe.events.get("edited"), what="the edit")
    posts = fake.received("POST", "/webhooks/{webhook_id}/{token}")
    assert [p.status for p in posts] == [429, 200]
    assert [u.filename for u in posts[1].uploads] == ["result.bin"]
    assert len(inter.followups) == 1 and inter.followups[0].attachments[0].data == b"none"


async def test_nonce_history_threads(fake: FakeDiscord, bot: ProbeBot) -> None:
    channel = bot.get_channel(fake.channel.id)
    assert isinstance(channel, discord.TextChannel)
    first = await channel.send("once", nonce=777)
    again = await channel.send("once", nonce=777)
    assert first.id == again.id and len(fake.messages()) == 1
    for n in range(3):
        await channel.send(f"m{n}")
    history = [m.content async for m in channel.history(limit=3)]
    assert history == ["m2", "m1", "m0"]
    older = [m.content async for m in channel.history(limit=10, before=discord.Object(
        fake.messages()[1].id))]
    assert older == ["once"]
    thread = await channel.create_thread(name="job 1", type=discord.ChannelType.public_thread)
    in_thread = await thread.send("inside")
    assert [m.id for m in fake.messages(thread.id)] == [in_thread.id]
    with pytest.raises(discord.HTTPException) as err:
        await channel.send("x" * 2001)
    assert err.value.code == 50035


# ---- gateway resilience -------------------------------------------------------------------------
async def test_resume_after_drop_and_reidentify_after_invalid_session(
        fake: FakeDiscord, bot: ProbeBot) -> None:
    await fake.drop_connections()
    extra = fake.add_channel("renders")  # dispatched while the bot may be away: replayed
    await fake.wait_for(lambda: fake.gateway.resumes == 1 and fake.gateway.live_sessions(),
                        what="RESUME")
    assert "/gateway/resume" in fake.gateway.connect_paths  # discord.py used resume_gateway_url
    await fake.wait_for(lambda: bot.get_channel(extra.id), what="the replayed CHANNEL_CREATE")
    assert fake.gateway.identifies == 1

    fake.invalidate_sessions(resumable=False)
    await fake.wait_for(lambda: fake.gateway.identifies == 2 and fake.gateway.live_sessions(),
                        what="a fresh IDENTIFY")
    inter = await fake.slash("ping")
    assert (await fake.wait_for_callback(inter)).data["content"] == "pong"


async def test_autosharded_bot_uses_gateway_bot(fake: FakeDiscord) -> None:
    bot = ShardedProbeBot(command_prefix="!", intents=discord.Intents.default(),
                          guild_ready_timeout=0.05)
    async for b in _run(bot, fake):
        assert b.shard_count == 1 and b.get_guild(fake.guild.id) is not None
        identify = next(f for f in fake.gateway.frames if f.direction == "recv" and f.op == 2)
        assert identify.d["shard"] == [0, 1] and identify.d["token"] == "<redacted>"
    assert fake.received("GET", "/gateway/bot")


# ---- raw protocol checks ----------------------------------------------------------------------
async def test_raw_auth_cdn_and_gateway_errors(fake: FakeDiscord, tmp_path: Path) -> None:
    async with aiohttp.ClientSession() as s:
        async with s.get(f"{fake.api_base}/users/@me") as resp:
            assert resp.status == 401 and (await resp.json())["code"] == 0
        async with s.get(f"{fake.api_base}/users/@me",
                         headers={"Authorization": f"Bot {fake.token}"}) as resp:
            assert resp.status == 200 and "X-RateLimit-Bucket" in resp.headers
        att = fake.world.store_attachment(fake.channel.id, "a.png", b"png-bytes", "image/png")
        async with s.get(att.url) as resp:
            assert resp.status == 200 and await resp.read() == b"png-bytes"
        async with s.get(att.url.split("?")[0]) as resp:
            assert resp.status == 404
            assert await resp.text() == "This content is no longer available."
        fake.expire_attachments()
        async with s.get(att.url) as resp:
            assert resp.status == 404
        # zlib-stream: each payload ends with the Z_SYNC_FLUSH suffix and inflates to JSON.
        async with s.ws_connect(f"{fake.gateway_url}?v=10&encoding=json"
                                "&compress=zlib-stream") as ws:
            msg = await ws.receive()
            assert msg.type is aiohttp.WSMsgType.BINARY and msg.data.endswith(b"\0\0\xff\xff")
            hello = json.loads(zlib.decompressobj().decompress(msg.data))
            assert hello["op"] == 10 and hello["d"]["heartbeat_interval"] > 0
            await ws.send_json({"op": 2, "d": {"token": "wrong", "intents": 0,
                                               "properties": {}}})
            closing = await ws.receive()
            assert closing.type is aiohttp.WSMsgType.CLOSE and closing.data == 4004
        async with s.ws_connect(f"{fake.gateway_url}?v=9&encoding=json") as ws:
            await ws.receive()
            assert ws.close_code == 4012


def test_launcher_needs_the_fake_api() -> None:
    env = {k: v for k, v in os.environ.items() if k != "FAKE_DISCORD_API"}
    proc = subprocess.run([sys.executable, "-m", "tests.fakes.discord.run_bot", "run"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "FAKE_DISCORD_API" in proc.stderr
