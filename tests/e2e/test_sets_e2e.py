"""A result set as members meet it: `/video count:4` on Runware (the fake) through the real bot
and the fake Discord: one message with four videos, charged 4×, each video with its own
buttons that still work after a restart; a set that came back short refunds the rest; and
`count` on a gateway that returns one video is refused before anything is spent or sent.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.e2e.test_discord_admin_e2e import private_reply
from tests.e2e.test_discord_e2e import FAST, running, status_text, store_of, video_posts
from tests.fakes.discord.server import FakeDiscord
from tests.fakes.magnific import FakeMagnific
from tests.fakes.runware import FakeRunware
from tests.provider_helpers import seed_learned_durations

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]


def custom_ids(message: Any) -> list[str]:
    return [c["custom_id"] for row in message.components for c in row["components"]
            if c.get("custom_id")]


async def test_a_runware_set_is_one_message_charged_per_video(tmp_path: Path) -> None:
    runware, magnific = FakeRunware(), FakeMagnific()
    runware.polls_to_finish = 0
    await seed_learned_durations(tmp_path / "data" / "seedance.sqlite3", "runware", seconds=1.0)
    async with runware, magnific, FakeDiscord() as fake:
        env = {"RUNWARE_API_KEY": runware.api_key, "RUNWARE_BASE_URL": runware.base_url,
               "MAGNIFIC_API_KEY": magnific.api_key, "MAGNIFIC_BASE_URL": magnific.base_url}
        async with running(tmp_path, fake, **env) as bot:
            # Refused before spending where the gateway returns one video per task.
            refused = await fake.slash("video", {"prompt": "a heron", "provider": "magnific",
                                                 "count": 2, "duration": 5,
                                                 "resolution": "480p"})
            reply = await private_reply(fake, refused)
            assert "count" in reply and "one video per request" in reply, reply
            assert magnific.received() == []

            inter = await fake.slash("video", {"prompt": "a fox in the snow",
                                               "provider": "runware", "count": 4,
                                               "ratio": "16:9", **FAST})
            post = await fake.wait_for(lambda: (video_posts(fake) or [None])[0], timeout=90,
                                       what="the set")
            assert post is not None
            videos = [a for a in post.attachments if a.filename.endswith(".mp4")]
            assert len(videos) == 4 and len(video_posts(fake)) == 1
            store = await store_of(bot)
            try:
                [job] = await store.jobs()
                ledger = {ln.kind: ln.credits for ln in await store.ledger(job.id)}
            finally:
                await store.close()
            assert ledger == {"reserve": 16, "commit": 16}  # 4 videos × 4 s of 480p
            ids = custom_ids(post)
            for action in ("reroll", "extend", "animate"):
                assert f"sd:{action}:{job.id}" in ids
                assert {f"sd:{action}:{job.id}:{n}" for n in (2, 3, 4)} <= set(ids)
            await fake.wait_for(lambda: "posted" in status_text(inter) or None, timeout=30,
                                what="the final status")
            assert "4 × 4 = 16 credits" in status_text(inter)
            [task] = [r.body[0] for r in runware.received("POST")
                      if r.body[0].get("taskType") == "videoInference"]
            assert task["numberResults"] == 4
            assert 20 <= task["outputQuality"] <= 95 and task["outputFormat"] == "MP4"

        # The buttons carry which video they act on, and work after a restart.
        async with running(tmp_path, fake, **env):
            third = next(a for a in videos if a.filename.endswith("-3.mp4"))
            pressed = await fake.click(post.id, f"sd:extend:{job.id}:3", fake.member.user.id)
            await fake.wait_for_callback(pressed)
            extend = await fake.wait_for(
                lambda: next((r.body[0] for r in runware.received("POST")
                              if r.body[0].get("inputs", {}).get("referenceVideos")), None),
                timeout=60, what="the extend task")
            assert extend["inputs"]["referenceVideos"] == [third.url]


async def test_a_short_set_refunds_what_did_not_come(tmp_path: Path) -> None:
    runware = FakeRunware()
    runware.polls_to_finish = 0
    runware.outcome, runware.made = "mixed", 2
    await seed_learned_durations(tmp_path / "data" / "seedance.sqlite3", "runware", seconds=1.0)
    async with runware, FakeDiscord() as fake, running(
            tmp_path, fake, RUNWARE_API_KEY=runware.api_key,
            RUNWARE_BASE_URL=runware.base_url) as bot:
        inter = await fake.slash("video", {"prompt": "two of four", "provider": "runware",
                                           "count": 4, "ratio": "16:9", **FAST})
        post = await fake.wait_for(lambda: (video_posts(fake) or [None])[0], timeout=90,
                                   what="the short set")
        assert post is not None
        assert len([a for a in post.attachments if a.filename.endswith(".mp4")]) == 2
        assert "2 of 4 videos came" in str(post.embeds[0])
        await fake.wait_for(lambda: "posted" in status_text(inter) or None, timeout=30,
                            what="the final status")
        assert "8 credits charged, 8 returned" in status_text(inter)
        store = await store_of(bot)
        try:
            [job] = await store.jobs()
            lines = sorted((ln.kind, ln.credits) for ln in await store.ledger(job.id))
        finally:
            await store.close()
        assert lines == [("commit", 8), ("release", 8), ("reserve", 16)]


async def test_a_flagged_result_goes_to_review_never_to_the_channel(tmp_path: Path) -> None:
    """Runware's verdict (`NSFWContent: true`) is read: with a moderators' channel the set
    waits there (both videos attached, the flag named); the channel gets nothing until a
    moderator approves. The server chose the check through /seedance-admin safety."""
    from tests.e2e.test_moderation_e2e import admin_of, card_with_buttons, configure

    runware = FakeRunware()
    runware.polls_to_finish = 0
    runware.nsfw = {1}
    await seed_learned_durations(tmp_path / "data" / "seedance.sqlite3", "runware", seconds=1.0)
    async with runware, FakeDiscord() as fake, running(
            tmp_path, fake, RUNWARE_API_KEY=runware.api_key,
            RUNWARE_BASE_URL=runware.base_url) as bot:
        admin = admin_of(fake)
        mods = fake.add_channel("mods")
        said = await configure(fake, admin, "safety", {"mode": "all_frames"})
        assert "all frames" in said
        await configure(fake, admin, "moderation", {"mode": "off", "channel": mods.id})
        inter = await fake.slash("video", {"prompt": "a market at night", "provider": "runware",
                                           "count": 2, "ratio": "16:9", **FAST})
        card = await fake.wait_for(lambda: card_with_buttons(fake, mods), timeout=90,
                                   what="the review card")
        assert len([a for a in card.attachments if a.filename.endswith(".mp4")]) == 2
        assert "safety check flagged video 2" in str(card.embeds[0])
        assert video_posts(fake) == []
        [task] = [r.body[0] for r in runware.received("POST")
                  if r.body[0].get("taskType") == "videoInference"]
        assert task["safety"] == {"checkContent": True, "mode": "full"}
        store = await store_of(bot)
        try:
            [job] = await store.jobs()
            assert job.state.value == "held"
            assert [ln.kind for ln in await store.ledger(job.id)] == ["reserve"]
        finally:
            await store.close()
        assert "moderator" in status_text(inter)
