"""User installs through the real bot and the fake Discord: `/video` run through the app
installed to the user, in the bot's DM, in a server without the bot (answers forced private),
and in a server with the bot whose rules refuse it; a job outliving its token sent by DM once
across a crash; closed DMs leaving the video to `/my-videos`. The bot syncs its commands
globally here (user installs reach global commands only)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from bot.store import JobState, JobView, Store
from tests.e2e.harness import BotProcess
from tests.e2e.test_discord_admin_e2e import private_reply
from tests.e2e.test_discord_e2e import FAST, running, store_of
from tests.fakes.discord.components_v2 import FLAG_COMPONENTS_V2
from tests.fakes.discord.server import FakeDiscord
from tests.fakes.discord.state import MANAGE_GUILD, USE_EXTERNAL_APPS, Message
from tests.test_engine_fakes import until

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]

CHANNEL_POSTS = "/channels/{channel_id}/messages"


@asynccontextmanager
async def installed(tmp_path: Path, fake: FakeDiscord, **env: str) -> AsyncIterator[BotProcess]:
    """The bot, its commands synced globally (no dev guild)."""
    async with running(tmp_path, fake, synced_globally=True,
                       **{"SEEDANCE_DEV_GUILD_ID": "0", **env}) as bot:
        yield bot


def status_text(inter: Any) -> str:
    """The words of an interaction's status (its deferred answer), card or plain."""
    return inter.original.text if inter.original is not None else ""


def has_video(message: Message) -> bool:
    return any(a.filename.endswith(".mp4") for a in message.attachments)


def dm_videos(fake: FakeDiscord, channel_id: int) -> list[Message]:
    return [m for m in fake.messages(channel_id) if has_video(m)]


def video_followup(inter: Any) -> Message | None:
    return next((m for m in inter.followups if has_video(m)), None)


async def jobs_when(bot: BotProcess, done: Any) -> list[JobView]:
    """The jobs, once `done(jobs)` holds (read from the bot's database)."""
    store: Store = await store_of(bot)
    try:
        async def ready() -> bool:
            return bool(done(await store.jobs()))

        await until(ready, tries=3000, pause=0.02)
        return await store.jobs()
    finally:
        await store.close()


async def test_a_dm_a_server_without_the_bot_and_a_server_whose_rules_refuse(
        tmp_path: Path) -> None:
    async with FakeDiscord() as fake, installed(tmp_path, fake,
                                                SEEDANCE_RESULT_CARDS="1") as bot:
        me = fake.member.user.id
        # In the bot's DM: the status is the deferred answer, the video a follow-up (cards).
        dm = fake.open_dm(me)
        asked = await fake.user_slash("video", {"prompt": "a quiet lake", **FAST}, channel=dm)
        video = await fake.wait_for(lambda: video_followup(asked), timeout=90,
                                    what="the video as a follow-up")
        assert not video.ephemeral and video.channel_id == dm.id
        assert video.flags & FLAG_COMPONENTS_V2 and "a quiet lake" in video.text
        await fake.wait_for(lambda: "✅ posted" in status_text(asked) or None, timeout=30,
                            what="the status says posted")

        # A server that never installed the app, where @everyone may not use external apps:
        # every answer private, and nothing through the channel API there.
        away = fake.add_guild("Elsewhere", with_bot=False)
        fake.join(fake.member, away)
        there = fake.world.channels[away.default_channel_id]
        there.overwrites.append({"id": str(away.id), "type": 0, "allow": "0",
                                 "deny": str(USE_EXTERNAL_APPS)})
        private = await fake.user_slash("video", {"prompt": "a far hill", **FAST},
                                        channel=there)
        hidden = await fake.wait_for(lambda: video_followup(private), timeout=90,
                                     what="the private video")
        assert private.callback is not None and private.callback.ephemeral  # the bot asked
        assert hidden.ephemeral and fake.messages(there.id) == []
        assert not [r for r in fake.requests if f"/channels/{there.id}" in r.path]
        assert fake.received("POST", CHANNEL_POSTS) == []  # no channel post anywhere

        jobs = await jobs_when(bot, lambda js: len(js) == 2 and all(
            j.state is JobState.DELIVERED for j in js))
        assert {j.guild_id for j in jobs} == {"dm"}  # the user's own quota
        assert all(j.context["followups"] == 1 for j in jobs)
        assert all((j.delivery_ref or "").startswith("followup:") for j in jobs)

        # Discord refuses a follow-up (the token died early): the video goes by DM instead.
        dave = fake.add_member("dave")
        daves_dm = fake.open_dm(dave.user.id)
        early = await fake.user_slash("video", {"prompt": "an early end", **FAST},
                                      channel=daves_dm, user=dave)
        await fake.wait_for(lambda: "DMs" in status_text(early) or None, timeout=30,
                            what="dave's status")
        early.expire_token()
        await fake.wait_for(lambda: dm_videos(fake, daves_dm.id) or None, timeout=90,
                            what="dave's video by DM")
        [daves] = [j for j in await jobs_when(bot, lambda js: len(js) == 3 and all(
            j.terminal for j in js)) if j.user_id == str(dave.user.id)]
        assert daves.context["followup_refused"] and (daves.delivery_ref or "").startswith("dm:")
        assert len(dm_videos(fake, daves_dm.id)) == 1 and not video_followup(early)

        # The server with the bot blocks a word: a user-install /video there is refused the
        # same way as the server's own /video.
        admin = fake.add_member("mod", roles=[fake.add_role("Mods", MANAGE_GUILD)])
        rule = await fake.slash("seedance-admin", {"kind": "word", "pattern": "volcano"},
                                path=("blocklist-add",), user=admin)
        assert "Added rule" in await private_reply(fake, rule)
        own = await fake.slash("video", {"prompt": "a volcano at dawn", **FAST})
        mine = await fake.user_slash("video", {"prompt": "a volcano at dawn", **FAST},
                                     channel=fake.channel)
        refused = await private_reply(fake, own)
        assert refused == await private_reply(fake, mine) and "rule" in refused
        assert len(await jobs_when(bot, lambda js: True)) == 3  # nothing written


async def test_a_job_outliving_its_token_comes_by_dm_once_or_waits_in_my_videos(
        tmp_path: Path) -> None:
    async with FakeDiscord() as fake:
        me = fake.member.user.id
        bob = fake.add_member("bob")
        carol = fake.add_member("carol")
        fake.close_dms(bob.user.id)
        dm = fake.open_dm(me)
        group = fake.add_group_dm(fake.member, bob)
        answers = asyncio.Event()  # the lost answers below come after the crash
        async with installed(tmp_path, fake, SEEDANCE_LOCAL_DELAY="4") as bot:
            mine = await fake.user_slash("video", {"prompt": "a long night", **FAST},
                                         channel=dm)
            bobs = await fake.user_slash("video", {"prompt": "a closed door", **FAST},
                                         channel=group, user=bob)
            # Carol's token lives; her video's follow-up is made, but its answer is lost.
            carols = await fake.user_slash("video", {"prompt": "a kept secret", **FAST},
                                           channel=fake.open_dm(carol.user.id), user=carol)
            fake.fail_next(503, method="POST", applied=True, hold=answers,
                           route=f"/webhooks/{fake.application_id}/{carols.token}")
            await fake.wait_for(lambda: all("DMs" in status_text(i) for i in (mine, bobs))
                                or None, timeout=60, what="both statuses")
            # Both outlive their tokens: Discord's die, and the rows say so.
            store = await store_of(bot)
            try:
                outliving = {str(me), str(bob.user.id)}
                for job in [j for j in await store.jobs() if j.user_id in outliving]:
                    assert job.state is not JobState.READY and not job.terminal
                    await store.merge_context(
                        job.id, {"token_issued_at": time.time() - 16 * 60}, now=time.time())
            finally:
                await store.close()
            mine.expire_token()
            bobs.expire_token()
            # The DM is made, but its answer is lost: the bot dies before it hears of it.
            fake.fail_next(503, method="POST", route=f"/channels/{dm.id}/messages",
                           applied=True, hold=answers)
            await fake.wait_for(lambda: (dm_videos(fake, dm.id) and video_followup(carols))
                                or None, timeout=90, what="the DM and carol's follow-up")
            await bot.kill()
            answers.set()
        async with installed(tmp_path, fake, SEEDANCE_LOCAL_DELAY="4") as bot:
            jobs = await jobs_when(bot, lambda js: all(j.terminal for j in js))
            by_user = {j.user_id: j for j in jobs}
            [post] = dm_videos(fake, dm.id)  # the status is the DM's other message
            # Found in the DM's history after the restart, not posted again.
            assert len(fake.received("POST", f"/channels/{dm.id}/messages")) == 1
            assert has_video(post) and by_user[str(me)].delivery_ref == f"dm:{post.id}"
            assert by_user[str(me)].state is JobState.DELIVERED
            # Carol's follow-up may or may not have gone out, as far as the bot knows: it is
            # not sent again, and her status says where to get it.
            assert by_user[str(carol.user.id)].delivery_ref == "unsure"
            assert [m for m in carols.followups if has_video(m)] == [video_followup(carols)]
            await fake.wait_for(lambda: "not shown below" in status_text(carols) or None,
                                timeout=30, what="carol's status")
            closed = by_user[str(bob.user.id)]
            assert closed.context["dm_closed"] and closed.delivery_ref == "my-videos"
            assert dm_videos(fake, fake.open_dm(bob.user.id).id) == []
            assert not video_followup(mine) and not video_followup(bobs)
            # In the group DM, bob finds it with /my-videos (in his language), and has it
            # attached there.
            listed = await fake.user_slash("my-videos", {}, channel=group, user=bob,
                                           locale="ja")
            text = await private_reply(fake, listed)
            assert closed.id[:8] in text and "a closed door" in text
            assert "まだどこにも表示されていません" in text and "a long night" not in text
            fetch = await fake.user_slash("my-videos", {"job": closed.id[:8]}, channel=group,
                                          user=bob)
            attached = await fake.wait_for(lambda: video_followup(fetch), timeout=30,
                                           what="the attached video")
            assert attached.ephemeral
