"""The fake Discord's user installs against the real discord.py client (as
tests/test_fake_discord.py): a command installed to a user runs in the bot's DM, a group DM and
a server without the bot; Discord's rules for its answers hold (5 follow-ups where the app is
not installed, private answers without USE_EXTERNAL_APPS, no channel access where the bot is
not a member); the bot's DM is made with POST /users/@me/channels and refuses posts with 50007
for a user with closed DMs."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import discord
import pytest
from discord import app_commands
from discord.ext import commands

from tests.fakes.discord import FakeDiscord, InvalidInvocation
from tests.fakes.discord.state import USE_EXTERNAL_APPS
from tests.test_fake_discord import _run


class Personal(commands.Cog):
    def __init__(self) -> None:
        self.events: dict[str, Any] = {}

    @app_commands.command(name="burst", description="Six follow-ups")
    @app_commands.allowed_installs(guilds=True, users=True)
    @app_commands.allowed_contexts(guilds=True, dms=True, private_channels=True)
    async def burst(self, interaction: discord.Interaction[Any]) -> None:
        await interaction.response.defer(thinking=True)
        self.events["owners"] = (interaction.is_guild_integration(),
                                 interaction.is_user_integration(), interaction.context)
        self.events["external"] = interaction.app_permissions.use_external_apps
        sent, error = 0, None
        await interaction.edit_original_response(content="status")
        for n in range(6):
            try:
                await interaction.followup.send(f"part {n}")
                sent += 1
            except discord.HTTPException as exc:
                error = exc
        self.events["burst"] = (sent, error)

    @app_commands.command(name="dm-me", description="A DM through the REST API")
    @app_commands.allowed_installs(guilds=True, users=True)
    @app_commands.allowed_contexts(guilds=True, dms=False, private_channels=False)
    async def dm_me(self, interaction: discord.Interaction[Any]) -> None:
        await interaction.response.send_message("sending", ephemeral=True)
        try:
            channel = await interaction.user.create_dm()
            self.events["dm"] = await channel.send("hello", nonce="n1")
        except discord.HTTPException as exc:
            self.events["dm"] = exc

    @app_commands.command(name="server-only", description="Installed to servers only")
    async def server_only(self, interaction: discord.Interaction[Any]) -> None:
        await interaction.response.send_message("ok")


class InstallsBot(commands.Bot):
    def __init__(self) -> None:
        super().__init__(command_prefix="!", intents=discord.Intents.default(),
                         guild_ready_timeout=0.05)
        self.personal = Personal()

    async def before_identify_hook(self, shard_id: int | None, *, initial: bool = False) -> None:
        """No 5 s wait before a re-IDENTIFY here."""

    async def setup_hook(self) -> None:
        await self.add_cog(self.personal)
        await self.tree.sync()  # user installs reach global commands only


@pytest.fixture
async def fake() -> AsyncIterator[FakeDiscord]:
    async with FakeDiscord() as server:
        yield server


@pytest.fixture
async def bot(fake: FakeDiscord) -> AsyncIterator[InstallsBot]:
    async for b in _run(InstallsBot(), fake):
        yield b


async def burst(fake: FakeDiscord, bot: InstallsBot, **kw: Any) -> tuple[int, Any]:
    bot.personal.events.pop("burst", None)
    await fake.user_slash("burst", **kw)
    result: tuple[int, Any] = await fake.wait_for(lambda: bot.personal.events.get("burst"),
                                                  what="the burst")
    return result


async def test_a_server_without_the_bot_allows_five_private_follow_ups(
        fake: FakeDiscord, bot: InstallsBot) -> None:
    away = fake.add_guild("Elsewhere", with_bot=False)
    fake.join(fake.member, away)
    channel = fake.world.channels[away.default_channel_id]
    channel.overwrites.append({"id": str(away.id), "type": 0, "allow": "0",
                               "deny": str(USE_EXTERNAL_APPS)})
    assert away.id not in {g.id for g in bot.guilds}  # no GUILD_CREATE for it
    sent, error = await burst(fake, bot, channel=channel)
    assert sent == 5 and isinstance(error, discord.HTTPException) and error.code == 40094
    assert bot.personal.events["owners"][:2] == (False, True)
    assert bot.personal.events["external"] is False
    inter = next(i for i in fake.interactions.values() if i.channel_id == channel.id)
    # Discord makes them private even though the bot asked for public ones.
    assert inter.original is not None and inter.original.ephemeral
    assert all(m.ephemeral for m in inter.followups)
    assert fake.messages(channel.id) == []
    with pytest.raises(discord.Forbidden) as refused:
        await bot.get_partial_messageable(channel.id).send("hi")
    assert refused.value.code == 50001


async def test_the_bots_dm_and_a_group_dm(fake: FakeDiscord, bot: InstallsBot) -> None:
    dm = fake.open_dm(fake.member.user.id)
    sent, error = await burst(fake, bot, channel=dm)
    # Discord keys the limit on the install: only the user's here, even in the bot's DM.
    assert sent == 5 and error.code == 40094
    assert bot.personal.events["owners"][2].dm_channel
    bob = fake.add_member("bob")
    group = fake.add_group_dm(fake.member, bob)
    sent, error = await burst(fake, bot, channel=group, user=bob)
    assert sent == 5 and error.code == 40094
    assert [m.content for m in fake.messages(group.id)][:2] == ["status", "part 0"]


async def test_dms_open_and_closed(fake: FakeDiscord, bot: InstallsBot) -> None:
    await fake.user_slash("dm-me", channel=fake.channel)
    message = await fake.wait_for(lambda: bot.personal.events.get("dm"), what="the DM")
    dm = fake.open_dm(fake.member.user.id)
    assert isinstance(message, discord.Message) and message.channel.id == dm.id
    assert [m.content for m in fake.messages(dm.id)] == ["hello"]
    assert fake.received("POST", "/users/@me/channels")
    bob = fake.add_member("bob")
    fake.close_dms(bob.user.id)
    bot.personal.events.pop("dm")
    await fake.user_slash("dm-me", channel=fake.channel, user=bob)
    refused = await fake.wait_for(lambda: bot.personal.events.get("dm"), what="the refusal")
    assert isinstance(refused, discord.Forbidden) and refused.code == 50007
    assert fake.messages(fake.open_dm(bob.user.id).id) == []


async def test_a_server_only_command_is_not_offered_to_a_user_install(
        fake: FakeDiscord, bot: InstallsBot) -> None:
    with pytest.raises(InvalidInvocation, match="cannot be installed to a user"):
        await fake.user_slash("server-only", channel=fake.open_dm(fake.member.user.id))
    with pytest.raises(InvalidInvocation, match="context 1"):
        await fake.user_slash("dm-me", channel=fake.open_dm(fake.member.user.id))
