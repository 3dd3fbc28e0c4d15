"""Slash commands in the member's language: the fake Discord checks localizations as Discord
does at bulk overwrite, the real bot's commands pass it, and a command's answer comes in the
reader's language while the event's public posts use the server's."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.e2e.test_discord_admin_e2e import private_reply
from tests.e2e.test_discord_e2e import running
from tests.fakes.discord.server import FakeDiscord
from tests.fakes.discord.state import MANAGE_GUILD
from tests.fakes.discord.world import ApiError, World
from tests.test_i18n import command_tree


def command(**extra: Any) -> dict[str, Any]:
    return {"name": "video", "description": "Make a video", "type": 1, **extra}


@pytest.mark.parametrize(("bad", "where"), [
    ({"name_localizations": {"xx": "video"}}, "0.name_localizations.xx"),
    ({"name_localizations": {"de": "Video"}}, "0.name_localizations.de"),
    ({"name_localizations": {"fr": "une vidéo"}}, "0.name_localizations.fr"),
    ({"name_localizations": {"ja": "動" * 33}}, "0.name_localizations.ja"),
    ({"description_localizations": {"de": ""}}, "0.description_localizations.de"),
    ({"description_localizations": {"es-ES": "x" * 101}}, "0.description_localizations.es-ES"),
    ({"options": [{"type": 3, "name": "mode", "description": "How",
                   "name_localizations": {"pt-BR": "modo!"}}]},
     "0.options.0.name_localizations.pt-BR"),
    ({"options": [{"type": 3, "name": "mode", "description": "How",
                   "choices": [{"name": "auto", "value": "auto",
                                "name_localizations": {"ja": "x" * 101}}]}]},
     "0.options.0.choices.0.name_localizations.ja"),
])
def test_the_fake_refuses_localizations_discord_refuses(bad: dict[str, Any], where: str) -> None:
    with pytest.raises(ApiError) as refused:
        World("token").put_commands(None, [command(**bad)])
    assert refused.value.status == 400
    errors: Any = refused.value.errors
    for part in where.split("."):
        errors = errors[part]
    assert errors["_errors"]


def test_the_fake_takes_good_localizations() -> None:
    [stored] = World("token").put_commands(None, [command(
        name_localizations={"ja": "動画", "hi": "वीडियो", "th": "วิดีโอ", "fr": "vidéo_1"},
        description_localizations={"de": "Mach ein Video"},
        options=[{"type": 3, "name": "mode", "description": "How",
                  "name_localizations": {"es-419": "modo"},
                  "choices": [{"name": "auto", "value": "auto",
                               "name_localizations": {"fr": "Automatique (par défaut)"}}]}])])
    assert stored.payload["name_localizations"]["ja"] == "動画"


def test_every_command_of_the_real_bot_passes_the_fakes_checks() -> None:
    from tests.fakes.discord.command_rules import localization_problem

    payloads = command_tree().payloads
    problems = [localization_problem(p, str(n)) for n, p in enumerate(payloads)]
    assert problems == [None] * len(payloads)


@pytest.mark.e2e
@pytest.mark.timeout(240)
async def test_commands_and_answers_speak_the_members_language(tmp_path: Path) -> None:
    async with FakeDiscord() as fake:
        fake.guild.locale = "de"  # the server's language: public posts
        async with running(tmp_path, fake):
            synced = {c.name: c.payload for c in fake.commands(guild_id=fake.guild.id)}
            video = synced["video"]
            assert video["name_localizations"]["ja"] == "動画"
            assert (video["description_localizations"]["pt-BR"]
                    == "Crie um vídeo curto com o Seedance")
            assert "en-US" not in video["name_localizations"]
            event = synced["event"]
            start = next(o for o in event["options"] if o["name"] == "start")
            assert start["name_localizations"]["fr"] == "lancer"

            # A private answer in the reader's language (a cog's own sentence).
            queue = await fake.slash("queue", {}, locale="ja")
            empty = "キューは空です。新しい `/video` はすぐに始まります。"
            assert empty in await private_reply(fake, queue)

            # The tree's error answer too (cogs/app.py describe).
            denied = await fake.slash("event", {"name": "Nope", "credits": 8, "minutes": 30},
                                      path=("start",), locale="fr")
            assert await private_reply(fake, denied) == (
                "Il vous faut la permission **Gérer le serveur** pour cela.")

            # A Japanese moderator on a German server: the reply in Japanese, the
            # announcement in the channel in German.
            admin = fake.add_member("mod", roles=[fake.add_role("Mods", MANAGE_GUILD)])
            started = await fake.slash("event", {"name": "Frühling", "credits": 5, "minutes": 30,
                                                 "channel": fake.channel.id},
                                       path=("start",), user=admin, locale="ja")
            reply = await private_reply(fake, started)
            assert reply.startswith(f"**Frühling** を <#{fake.channel.id}> で開始しました。"), reply
            announcement = await fake.wait_for(
                lambda: next((m.content for m in fake.messages(fake.channel.id)
                              if "Frühling" in m.content and not m.ephemeral), None),
                timeout=30, what="the event's announcement")
            assert announcement.startswith("🎬 **Frühling** ist eröffnet!"), announcement

            # English stays as it was.
            english = await fake.slash("my-data", {}, path=("delete",))
            assert (await private_reply(fake, english)).startswith(
                "This deletes the prompts, input files and videos stored for your **0** jobs")
