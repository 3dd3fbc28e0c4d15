"""Result and status cards through the real bot and the fake Discord, which applies Discord's
components-v2 rules: a video posted the old way (embed) keeps its buttons working after a
server switches to cards; Reroll then posts a card, with its status as a card; and where
Discord refuses the v2 flag the bot posts the embed version instead."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.e2e.test_discord_admin_e2e import private_reply
from tests.e2e.test_discord_e2e import FAST, running, video_posts
from tests.fakes.discord.components_v2 import FLAG_COMPONENTS_V2
from tests.fakes.discord.server import FakeDiscord
from tests.fakes.discord.state import MANAGE_GUILD, iter_components

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]


def ids(message: Any) -> list[str]:
    return [c["custom_id"] for c in iter_components(message.components) if c.get("custom_id")]


def texts(message: Any) -> str:
    return "\n".join(c["content"] for c in iter_components(message.components)
                     if c.get("type") == 10)


async def test_old_embeds_still_act_cards_post_and_refused_cards_fall_back(
        tmp_path: Path) -> None:
    async with FakeDiscord() as fake, running(tmp_path, fake):
        # Posted the way it was before cards (the harness's default: embeds).
        await fake.slash("video", {"prompt": "a paper boat", **FAST, "seed": 7})
        old = await fake.wait_for(lambda: (video_posts(fake) or [None])[0], timeout=90,
                                  what="the embed video")
        assert old.embeds and not old.flags & FLAG_COMPONENTS_V2

        admin = fake.add_member("mod", roles=[fake.add_role("Mods", MANAGE_GUILD)])
        switched = await fake.slash("seedance-admin", {"style": "cards",
                                                       "spoiler_prompts": True},
                                    path=("cards",), user=admin)
        assert "cards" in await private_reply(fake, switched)

        reroll = next(i for i in ids(old) if i.startswith("sd:reroll:"))
        again = await fake.click(old.id, reroll, fake.member.user.id)
        card = await fake.wait_for(lambda: len(video_posts(fake)) >= 2 and video_posts(fake)[1],
                                   timeout=90, what="the card")
        assert card.flags & FLAG_COMPONENTS_V2 and not card.content and not card.embeds
        gallery = [c for c in iter_components(card.components) if c["type"] == 12]
        [video] = [a for a in card.attachments if a.filename.endswith(".mp4")]
        assert gallery and gallery[0]["items"][0]["media"]["url"] == video.url
        assert "||a paper boat||" in texts(card) and "**Seed**" in texts(card)
        assert {"sd:reroll:", "sd:extend:", "sd:animate:", "sd:remix:", "sd:delete:"} <= {
            i[: i.index(":", 3) + 1] for i in ids(card)}
        status = await fake.wait_for(
            lambda: (o := again.original) is not None and "posted" in texts(o) and o,
            timeout=30, what="the status card")
        assert status.flags & FLAG_COMPONENTS_V2 and "100%" in texts(status)
        # The status is public too: its prompt is hidden as the card's is.
        assert "||a paper boat||" in texts(status)
        assert all("a paper boat" not in str(e.body).replace("||a paper boat||", "")
                   for e in status.edits)
        assert not any(i.startswith("sd:cancel:") for i in ids(status))

        # A card's buttons act too; where Discord refuses v2, the embed is posted instead.
        fake.world.refuse_components_v2 = True
        third = await fake.click(card.id, next(i for i in ids(card)
                                               if i.startswith("sd:reroll:")),
                                 fake.member.user.id)
        fallback = await fake.wait_for(
            lambda: len(video_posts(fake)) >= 3 and video_posts(fake)[2], timeout=90,
            what="the fallback embed")
        assert fallback.embeds and not fallback.flags & FLAG_COMPONENTS_V2
        assert "a paper boat" in str(fallback.embeds[0])
        done = await fake.wait_for(
            lambda: (o := third.original) is not None and "posted" in o.content and o,
            timeout=30, what="the text status")
        assert not done.flags & FLAG_COMPONENTS_V2 and "||a paper boat||" in done.content


async def test_a_vote_redraws_an_event_card_as_a_card(tmp_path: Path) -> None:
    from tests.e2e.test_events_e2e import start_event, thread_videos
    from tests.e2e.test_votes_e2e import press, shown

    async with FakeDiscord() as fake, running(tmp_path, fake, SEEDANCE_RESULT_CARDS="1"):
        admin = fake.add_member("mod", roles=[fake.add_role("Mods", MANAGE_GUILD)])
        bob = fake.add_member("bob")
        assert "Started" in await start_event(fake, admin, credits=8, minutes=30)
        await fake.slash("video", {"prompt": "a kite festival", **FAST})
        [entry] = await fake.wait_for(lambda: thread_videos(fake, thread_of(fake)) or None,
                                      timeout=90, what="the entry")
        assert entry.flags & FLAG_COMPONENTS_V2 and any(i.startswith("sd:vote:")
                                                        for i in ids(entry))
        assert "Your vote is counted" in await press(fake, entry, bob)
        await shown(fake, entry, "▲ 1")
        # Redrawn whole: still a card, its gallery still showing its own uploaded video.
        redrawn = fake.message(entry.id)
        [video] = [a for a in redrawn.attachments if a.filename.endswith(".mp4")]
        gallery = [c for c in iter_components(redrawn.components) if c["type"] == 12]
        assert redrawn.flags & FLAG_COMPONENTS_V2
        media = gallery[0]["items"][0]["media"]
        assert media["url"] == video.url and media["attachment_id"] == str(video.id)


def thread_of(fake: FakeDiscord) -> int:
    return next(c.id for c in fake.world.channels.values() if c.is_thread)
