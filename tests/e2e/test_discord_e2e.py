"""The bot as users meet it: `seedance-bot run` as a subprocess, the real discord.py client
talking to the fake Discord (REST + gateway + CDN), the embedded local provider or a fake
gateway behind it. Nothing of ours is mocked.
"""

from __future__ import annotations

import io
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import av
import pytest

from bot.store import JobState, Store
from tests.e2e.harness import BotProcess
from tests.fakes.discord.server import FakeDiscord
from tests.fakes.discord.state import Message
from tests.media_factory import make_audio, make_image, make_video
from tests.test_engine_fakes import until

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]

FAST = {"duration": 4, "resolution": "480p"}


@asynccontextmanager
async def running(tmp_path: Path, fake: FakeDiscord, *, synced_globally: bool = False,
                  **env: str) -> AsyncIterator[BotProcess]:
    """The bot, once its commands are synced (to the fake's guild, or globally)."""
    data = tmp_path / "data"
    data.mkdir(exist_ok=True)
    bot = BotProcess(fake, data, env)
    await bot.start()
    try:
        await fake.wait_until_ready(timeout=60)
        guild_id = None if synced_globally else fake.guild.id
        await fake.wait_for(lambda: fake.commands(guild_id=guild_id), timeout=60,
                            what="command sync")
        yield bot
    except BaseException:
        print(bot.log())
        raise
    finally:
        await bot.stop()


def video_posts(fake: FakeDiscord) -> list[Message]:
    return [m for m in fake.messages(fake.channel.id)
            if not m.ephemeral and any(a.filename.endswith(".mp4") for a in m.attachments)]


def measure(data: bytes) -> tuple[int, int, float, int]:
    with av.open(io.BytesIO(data)) as c:
        v = c.streams.video[0]
        return v.width, v.height, round(c.duration / 1e6, 1), len(c.streams.audio)


def mp4_of(message: Message) -> bytes:
    return next(a.data for a in message.attachments if a.filename.endswith(".mp4"))


async def store_of(bot: BotProcess) -> Store:
    return await Store.open(bot.data_dir / "seedance.sqlite3")


def status_text(interaction: Any) -> str:
    original = interaction.original
    return original.content if original is not None else ""


async def test_every_input_mode_posts_a_real_video(tmp_path: Path) -> None:
    img = make_image(tmp_path / "cat.png", 800, 450).read_bytes()
    img2 = make_image(tmp_path / "dog.png", 800, 450, color=(20, 200, 40)).read_bytes()
    vid = make_video(tmp_path / "clip.mp4", seconds=3.0).read_bytes()
    aud = make_audio(tmp_path / "song.mp3", seconds=3.0, fmt="mp3").read_bytes()
    cases = [
        ("text", {"prompt": "a red fox in snow"}, [], "text"),
        ("first", {"prompt": "the cat wakes up"}, [("cat.png", img, "image/png")],
         "@image1 = file1 (cat.png) → first frame"),
        ("first+last", {"prompt": "cat becomes dog"},
         [("cat.png", img, "image/png"), ("dog.png", img2, "image/png")],
         "@image2 = file2 (dog.png) → last frame"),
        ("reference", {"prompt": "@image1 dances in @video1 to @audio1"},
         [("song.mp3", aud, "audio/mpeg"), ("cat.png", img, "image/png"),
          ("clip.mp4", vid, "video/mp4")],
         "@audio1 = file1 (song.mp3) → reference audio"),
        ("edit", {"prompt": "replace the car in @video1 with @image1", "mode": "edit"},
         [("cat.png", img, "image/png"), ("clip.mp4", vid, "video/mp4")],
         "@video1 = file2 (clip.mp4) → reference video"),
        ("extend", {"prompt": "continue the shot", "mode": "extend"},
         [("clip.mp4", vid, "video/mp4")], "@video1 = file1 (clip.mp4) → reference video"),
    ]
    async with FakeDiscord() as fake, running(tmp_path, fake):
        # Two members, three videos each: one member's six at once could meet the cap of five
        # waiting videos per member, depending on whether the first had started yet.
        members = [fake.member, fake.add_member("second")]
        interactions = []
        for i, (_, options, files, _) in enumerate(cases):
            inter = await fake.slash("video", {**options, **FAST}, attachments=files,
                                     user=members[i % 2])
            interactions.append(inter)
        for inter in interactions:
            callback = await fake.wait_for_callback(inter)
            assert callback.type == 5  # deferred within Discord's 3 s
        await fake.wait_for(lambda: len(video_posts(fake)) >= len(cases) or None, timeout=120,
                            what="six videos")
        posts = video_posts(fake)
        assert len(posts) == len(cases)
        for (name, _, _, expected), inter in zip(cases, interactions, strict=True):
            text = status_text(inter)
            assert expected in text or name == "text", (name, text)
            assert "✅ posted" in text or "posting" in text, text
        for post in posts:
            width, height, seconds, audio = measure(mp4_of(post))
            assert seconds == 4.0 and audio == 1
            assert (width, height) in {(864, 496), (640, 640), (496, 864)}
            assert post.embeds and "Seed" in str(post.embeds[0])
            custom_ids = str(post.components)
            assert "sd:reroll:" in custom_ids and "sd:extend:" in custom_ids


async def test_invalid_attachment_is_refused_privately_and_nothing_is_spent(
    tmp_path: Path,
) -> None:
    liar = b"this is a text file pretending to be a picture"
    small = make_image(tmp_path / "tiny.png", 120, 120).read_bytes()
    async with FakeDiscord() as fake, running(tmp_path, fake) as bot:
        inter = await fake.slash("video", {"prompt": "@image3 please", **FAST},
                                 attachments=[("cat.png", liar, "image/png"),
                                              ("tiny.png", small, "image/png")])
        reply = await fake.wait_for(
            lambda: next((m for m in inter.followups if m.ephemeral), None), timeout=30,
            what="an ephemeral problem list")
        assert "nothing was spent" in reply.content
        assert "file1 (cat.png)" in reply.content
        assert "not an image, video or audio" in reply.content
        assert "file2 (tiny.png)" in reply.content and "300–6000 px" in reply.content
        assert "@image3 points at no file" in reply.content
        assert not video_posts(fake)
        store = await store_of(bot)
        try:
            assert await store.ledger() == []
            assert await store.jobs() == []
        finally:
            await store.close()
        assert not (bot.data_dir / "local_tasks").exists() or not any(
            (bot.data_dir / "local_tasks").iterdir())


async def test_result_over_the_limit_is_transcoded_under_it(tmp_path: Path) -> None:
    async with FakeDiscord() as fake, running(tmp_path, fake):
        fake.guild.upload_limit_override = 300 * 1024 + 256 * 1024
        await fake.slash("video", {"prompt": "a busy city at night, lots of detail",
                                   "duration": 6, "resolution": "720p"})
        post = await fake.wait_for(lambda: (video_posts(fake) or [None])[0], timeout=120,
                                   what="the transcoded video")
        data = mp4_of(post)
        assert len(data) <= fake.guild.upload_limit
        _, _, seconds, audio = measure(data)
        assert abs(seconds - 6.0) <= 0.1 and audio == 1


async def test_result_that_cannot_fit_arrives_as_a_link_with_thumbnail(tmp_path: Path) -> None:
    async with FakeDiscord() as fake, running(tmp_path, fake):
        fake.guild.upload_limit_override = 8 * 1024 + 256 * 1024
        await fake.slash("video", {"prompt": "waves", **FAST})
        post = await fake.wait_for(
            lambda: next((m for m in fake.messages(fake.channel.id)
                          if m.embeds and "Too large" in str(m.embeds)), None),
            timeout=120, what="the link post")
        assert any(a.filename == "thumbnail.jpg" for a in post.attachments)
        assert not video_posts(fake)


async def test_sigkill_while_generating_posts_once_and_charges_once(tmp_path: Path) -> None:
    async with FakeDiscord() as fake:
        async with running(tmp_path, fake, SEEDANCE_LOCAL_DELAY="6") as bot:
            inter = await fake.slash("video", {"prompt": "a slow sunrise", **FAST})
            await fake.wait_for(lambda: "generating" in status_text(inter) or None,
                                timeout=60, what="generating")
            await bot.kill()
        async with running(tmp_path, fake, SEEDANCE_LOCAL_DELAY="6") as bot:
            await fake.wait_for(lambda: video_posts(fake) or None, timeout=120,
                                what="the video after restart")
            store = await store_of(bot)
            try:
                # The post comes first, then the row says delivered (the post is recorded
                # before its side effect, the state after it).
                async def delivered() -> bool:
                    return [j.state for j in await store.jobs()] == [JobState.DELIVERED]

                await until(delivered, tries=1500, pause=0.02)
                jobs = await store.jobs()
                ledger = await store.ledger(jobs[0].id)
                commits = [line for line in ledger if line.kind == "commit"]
                assert len(commits) == 1 and commits[0].credits == 4
            finally:
                await store.close()
        assert len(video_posts(fake)) == 1


async def test_an_ending_whose_edit_a_crash_lost_is_said_at_the_next_start(
        tmp_path: Path) -> None:
    """The job's end is written before its status edit: when the process that ended it dies
    between the two, the next start says it (cogs/utils/delivery.py catch_up)."""
    async with FakeDiscord() as fake:
        async with running(tmp_path, fake, SEEDANCE_LOCAL_DELAY="60") as bot:
            inter = await fake.slash("video", {"prompt": "a slow sunrise", **FAST})
            await fake.wait_for(lambda: "generating" in status_text(inter) or None,
                                timeout=60, what="generating")
            await bot.kill()
            store = await store_of(bot)
            try:
                job, = await store.jobs()
                # What a process cancelling it wrote before it died, edit unmade.
                assert await store.transition(job.id, JobState.CANCELLED, now=time.time(),
                                              ledger="release") is not None
            finally:
                await store.close()
        assert "generating" in status_text(inter)
        async with running(tmp_path, fake):
            await fake.wait_for(lambda: "🚫 cancelled" in status_text(inter) or None,
                                timeout=60, what="the ending said after the restart")
        assert video_posts(fake) == []


async def test_buttons_work_after_a_restart(tmp_path: Path) -> None:
    async with FakeDiscord() as fake:
        async with running(tmp_path, fake):
            await fake.slash("video", {"prompt": "a paper boat", **FAST, "seed": 7})
            first = await fake.wait_for(lambda: (video_posts(fake) or [None])[0], timeout=90,
                                        what="the first video")
        async with running(tmp_path, fake):
            reroll = next(c["custom_id"] for row in first.components for c in row["components"]
                          if c["custom_id"].startswith("sd:reroll:"))
            await fake.click(first.id, reroll, fake.member.user.id)
            await fake.wait_for(lambda: len(video_posts(fake)) >= 2 or None, timeout=90,
                                what="the rerolled video")
            second = video_posts(fake)[1]
            assert "paper boat" in str(second.embeds)
            seeds = [str(p.embeds[0]) for p in video_posts(fake)]
            assert seeds[0] != seeds[1]  # a new seed


async def test_job_outliving_the_interaction_token_still_updates_and_posts(
    tmp_path: Path,
) -> None:
    async with FakeDiscord() as fake:
        fake.token_lifetime = 2.0
        async with running(tmp_path, fake, SEEDANCE_LOCAL_DELAY="5"):
            inter = await fake.slash("video", {"prompt": "a long job", **FAST})
            await fake.wait_for(lambda: video_posts(fake) or None, timeout=90, what="video")
            await fake.wait_for(lambda: "✅ posted" in status_text(inter) or None, timeout=30,
                                what="final status edit")
            channel_edits = fake.received("PATCH", "/channels/{channel_id}/messages/{message_id}")
            assert channel_edits, "status edits after the token died must use the channel API"


async def test_quota_exhaustion_is_refused_with_what_is_left_and_when(tmp_path: Path) -> None:
    async with FakeDiscord() as fake, running(tmp_path, fake, SEEDANCE_USER_DAILY_CREDITS="5"):
        await fake.slash("video", {"prompt": "one", **FAST})
        second = await fake.slash("video", {"prompt": "two", **FAST})
        reply = await fake.wait_for(
            lambda: next((m for m in second.followups if m.ephemeral), None), timeout=30,
            what="the quota refusal")
        assert "Not enough credits" in reply.content
        assert "1 left" in reply.content and "resets" in reply.content
        assert "Nothing was spent" in reply.content
