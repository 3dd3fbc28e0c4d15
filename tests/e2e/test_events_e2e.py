"""Events through the fake Discord: a gallery thread, entries on the event's own credits, live
numbers in /event status, and a summary that matches the store, whether an admin ends the
event or its end time does (across a SIGKILL of the bot)."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest

from bot.store import EventRow, EventStats, JobState
from tests.e2e.harness import BotProcess
from tests.e2e.test_discord_admin_e2e import private_reply
from tests.e2e.test_discord_e2e import FAST, running, store_of, video_posts
from tests.fakes.discord.server import FakeDiscord
from tests.fakes.discord.state import MANAGE_GUILD, PUBLIC_THREAD, Member, Message

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]


def thread_videos(fake: FakeDiscord, thread_id: int) -> list[Message]:
    return [m for m in fake.messages(thread_id)
            if any(a.filename.endswith(".mp4") for a in m.attachments)]


def summary_in(fake: FakeDiscord, channel_id: int) -> Message | None:
    return next((m for m in fake.messages(channel_id) if "has ended." in m.content), None)


def summary_numbers(text: str) -> EventStats:
    def number(label: str) -> int:
        found = re.search(rf"{label}: \*\*(\d+)\*\*", text)
        assert found, (label, text)
        return int(found.group(1))

    posted = re.search(r"posted (\d+), rejected (\d+)", text)
    assert posted, text
    return EventStats(number("Entries"), int(posted.group(1)), int(posted.group(2)),
                      number("Participants"), number("Credits used"))


async def the_event(bot: BotProcess) -> tuple[EventRow, EventStats, int]:
    """The only event as stored, its stats, and the credits committed by its jobs' ledgers."""
    store = await store_of(bot)
    try:
        events = [e for g in {j.guild_id for j in await store.jobs()}
                  for e in await store.events(g)]
        assert len(events) == 1, events
        event = events[0]
        jobs = [j for j in await store.jobs() if j.event_id == event.id]
        committed = 0
        for job in jobs:
            committed += sum(line.credits for line in await store.ledger(job.id)
                             if line.kind == "commit")
        return event, await store.event_stats(event.id), committed
    finally:
        await store.close()


async def start_event(fake: FakeDiscord, admin: Member, **options: object) -> str:
    inter = await fake.slash("event", {"name": "Spring Jam", "channel": fake.channel.id,
                                       **options}, path=("start",), user=admin)
    return await private_reply(fake, inter)


async def test_event_gallery_status_and_summary_match_the_store(tmp_path: Path) -> None:
    async with FakeDiscord() as fake, running(tmp_path, fake,
                                              SEEDANCE_USER_DAILY_CREDITS="4") as bot:
        admin = fake.add_member("mod", roles=[fake.add_role("Mods", MANAGE_GUILD)])
        alice, bob = fake.member, fake.add_member("bob")

        denied = await fake.slash("event", {"name": "Nope", "credits": 8, "minutes": 30},
                                  path=("start",))
        assert "Manage Server" in await private_reply(fake, denied)

        started = await start_event(fake, admin, credits=8, minutes=30)
        assert "Started **Spring Jam**" in started
        store = await store_of(bot)
        try:
            [event] = await store.events(str(fake.guild.id), open_only=True)
        finally:
            await store.close()
        assert event.thread_id is not None and event.credits_per_user == 8
        thread = fake.world.channels[int(event.thread_id)]
        assert thread.type == PUBLIC_THREAD and thread.parent_id == fake.channel.id
        announcement = next(m for m in fake.messages(fake.channel.id)
                            if "Spring Jam" in m.content)
        assert f"<t:{int(event.ends_at)}:f>" in announcement.content
        assert "**8** per person" in announcement.content
        assert f"<#{thread.id}>" in announcement.content

        again = await start_event(fake, admin, credits=5, minutes=10)
        assert "already has an open event" in again

        # Daily credits are 4 (one 4 s video); the event's 8 let alice enter twice.
        for user, prompt in ((alice, "a kite festival"), (bob, "paper lanterns"),
                             (alice, "a second kite")):
            await fake.slash("video", {"prompt": prompt, **FAST}, user=user)
        await fake.wait_for(lambda: len(thread_videos(fake, thread.id)) >= 3 or None,
                            timeout=150, what="three entries in the gallery")
        assert len(thread_videos(fake, thread.id)) == 3
        assert video_posts(fake) == []  # nothing in the channel itself

        status = await fake.slash("event", {}, path=("status",), user=bob)
        text = await private_reply(fake, status)
        assert ("**3** entries, **3** posted, **2** participants, **12** credits used"
                in text), text
        assert "You have **4** of 8 event credits left" in text

        refused = await fake.slash("event", {}, path=("end",), user=bob)
        assert "Manage Server" in await private_reply(fake, refused)
        ended = await fake.slash("event", {}, path=("end",), user=admin)
        assert "are closed" in await private_reply(fake, ended)

        summary = await fake.wait_for(lambda: summary_in(fake, thread.id), timeout=30,
                                      what="the summary in the gallery")
        stored, stats, committed = await the_event(bot)
        assert stored.state == "closed" and stored.summary_ref == str(summary.id)
        assert stats == EventStats(entries=3, posted=3, rejected=0, participants=2,
                                   credits_used=12)
        assert committed == 12
        assert summary_numbers(summary.content) == stats
        pointer = next(m for m in fake.messages(fake.channel.id) if "has ended:" in m.content)
        assert str(summary.id) in pointer.content

        after = await fake.slash("event", {}, path=("status",), user=bob)
        assert "No event is running" in await private_reply(fake, after)
    assert len([m for m in fake.messages(thread.id) if "has ended." in m.content]) == 1


async def test_event_ends_by_its_end_time_across_a_restart(tmp_path: Path) -> None:
    async with FakeDiscord() as fake:
        admin = fake.add_member("mod", roles=[fake.add_role("Mods", MANAGE_GUILD)])
        async with running(tmp_path, fake) as bot:
            started = await start_event(fake, admin, credits=10, minutes=0.25)
            assert "Started" in started
            await fake.slash("video", {"prompt": "the last entry", **FAST})
            store = await store_of(bot)
            try:
                [event] = await store.events(str(fake.guild.id))
            finally:
                await store.close()
            assert event.thread_id is not None
            thread_id = int(event.thread_id)
            await fake.wait_for(lambda: thread_videos(fake, thread_id) or None, timeout=90,
                                what="the entry in the gallery")
            await bot.kill()  # before the end time: nobody is left to close the event
        assert summary_in(fake, thread_id) is None
        async with running(tmp_path, fake) as bot:
            summary = await fake.wait_for(lambda: summary_in(fake, thread_id), timeout=60,
                                          what="the summary posted by the loop")
            # The summary's id is saved once the pointer to it is posted too: wait for it.
            for _ in range(600):
                stored, stats, committed = await the_event(bot)
                if stored.summary_ref is not None:
                    break
                await asyncio.sleep(0.05)
            assert stored.state == "closed" and stored.summary_ref == str(summary.id)
            assert stored.closed_at == stored.ends_at  # intake closed at the end time
            assert stats == EventStats(entries=1, posted=1, rejected=0, participants=1,
                                       credits_used=4) and committed == 4
            assert summary_numbers(summary.content) == stats
            store = await store_of(bot)
            try:
                jobs = await store.jobs()
            finally:
                await store.close()
            assert [(j.state, j.event_id) for j in jobs] == [(JobState.DELIVERED, event.id)]
