"""Event voting through the fake Discord: entries by three members get a ▲ button, members vote
(a double click counts once; own entries, bots and votes after the end are refused privately),
a vote is taken back and cast again across a SIGKILL of the bot (the votes and the buttons
outlive it), /event status shows the standings, the summary in the gallery thread names the
winner and the tie behind it, and the CSV export carries the votes."""

from __future__ import annotations

import asyncio
import csv
import io
from pathlib import Path

import pytest

from tests.e2e.harness import BotProcess
from tests.e2e.test_discord_admin_e2e import private_reply
from tests.e2e.test_discord_e2e import FAST, running, store_of
from tests.e2e.test_events_e2e import start_event, summary_in, thread_videos
from tests.fakes.discord.interactions import FakeInteraction
from tests.fakes.discord.server import FakeDiscord
from tests.fakes.discord.state import MANAGE_GUILD, Member, Message

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]


def vote_button(message: Message) -> str:
    return next(c for c in message.custom_ids() if c.startswith("sd:vote:"))


def label(fake: FakeDiscord, message: Message) -> str:
    component = fake.message(message.id).find_component(vote_button(message))
    assert component is not None
    return str(component.get("label"))


async def press(fake: FakeDiscord, message: Message, who: Member) -> str:
    return await private_reply(fake, await fake.click(message.id, vote_button(message),
                                                      who.user.id))


async def shown(fake: FakeDiscord, message: Message, text: str) -> None:
    await fake.wait_for(lambda: label(fake, message) == text or None, timeout=30,
                        what=f"the vote label {text!r}")


async def stored_votes(bot: BotProcess) -> dict[str, set[str]]:
    """job id → voter ids, as the database holds them."""
    store = await store_of(bot)
    try:
        [event] = await store.events(str(bot.fake.guild.id))
        out: dict[str, set[str]] = {}
        for vote in await store.event_votes(event.id):
            out.setdefault(vote.job_id, set()).add(vote.voter_id)
        return out
    finally:
        await store.close()


def withdraw_message(fake: FakeDiscord, inter: FakeInteraction) -> Message:
    return next(m for m in inter.followups if any(c.startswith("sd:unvote:")
                                                  for c in m.custom_ids()))


async def test_members_vote_across_a_restart_and_the_summary_names_the_winner(
        tmp_path: Path) -> None:
    async with FakeDiscord() as fake:
        admin = fake.add_member("mod", roles=[fake.add_role("Mods", MANAGE_GUILD)])
        alice, bob, carol, dave = (fake.member, fake.add_member("bob"), fake.add_member("carol"),
                                   fake.add_member("dave"))
        robot = fake.world.add_user("otherbot", bot=True)
        fake.guild.members[robot.id] = Member(robot, fake.guild.id)
        robot_member = fake.guild.members[robot.id]

        async with running(tmp_path, fake) as bot:
            assert "Started" in await start_event(fake, admin, credits=8, minutes=30)
            for user, prompt in ((alice, "a kite festival"), (bob, "paper lanterns"),
                                 (carol, "a night market")):
                await fake.slash("video", {"prompt": prompt, **FAST}, user=user)
            store = await store_of(bot)
            try:
                [event] = await store.events(str(fake.guild.id))
            finally:
                await store.close()
            assert event.thread_id is not None
            thread = int(event.thread_id)
            posts = await fake.wait_for(
                lambda: (found if len(found := thread_videos(fake, thread)) == 3 else None),
                timeout=150, what="three entries in the gallery")
            entry = {who.user.id: next(m for m in posts if m.content == f"<@{who.user.id}>")
                     for who in (alice, bob, carol)}
            a, b, c = entry[alice.user.id], entry[bob.user.id], entry[carol.user.id]
            assert all(label(fake, m) == "▲ Vote" for m in (a, b, c))

            assert "your own entry" in await press(fake, a, alice)
            assert "Bots can't vote" in await press(fake, b, robot_member)
            # A double click: two presses before either is answered are one vote.
            clicks = [await fake.click(a.id, vote_button(a), bob.user.id) for _ in range(2)]
            replies = await asyncio.gather(*(private_reply(fake, i) for i in clicks))
            assert sum("Your vote is counted" in r for r in replies) == 1, replies
            assert sum("already" in r for r in replies) == 1, replies
            await shown(fake, a, "▲ 1")
            for voter in (carol, dave, alice):
                assert "Your vote is counted" in await press(fake, b, voter)
            await shown(fake, b, "▲ 3")
            # Dave changes his mind: his vote for B goes to C.
            dave_vote = await fake.click(b.id, vote_button(b), dave.user.id)
            assert "already" in await private_reply(fake, dave_vote)
            take_back = withdraw_message(fake, dave_vote)
            undone = await fake.click(take_back.id, f"sd:unvote:{vote_button(b)[8:]}",
                                      dave.user.id)
            assert "taken back" in await private_reply(fake, undone)
            assert "Your vote is counted" in await press(fake, c, dave)
            await shown(fake, b, "▲ 2")
            await shown(fake, c, "▲ 1")
            before = await stored_votes(bot)
            await bot.kill()  # mid-event, with no chance to clean up

        async with running(tmp_path, fake) as bot:
            assert await stored_votes(bot) == before  # votes are rows: they outlive the bot
            status = await private_reply(fake, await fake.slash("event", {}, path=("status",),
                                                                user=dave))
            assert (f"1. <@{bob.user.id}> — **2** votes" in status and
                    f"=2. <@{alice.user.id}> — **1** vote (tied)" in status and
                    f"=2. <@{carol.user.id}> — **1** vote (tied)" in status), status
            assert status.index(f"<@{alice.user.id}>") < status.index(f"<@{carol.user.id}>")
            # The buttons of before the restart answer: dave's private "take it back" (his
            # vote for B is gone already, so nothing changes), then ▲ on B, once more his.
            again = await fake.click(take_back.id, f"sd:unvote:{vote_button(b)[8:]}",
                                     dave.user.id)
            assert "no vote on this entry" in await private_reply(fake, again)
            assert "Your vote is counted" in await press(fake, b, dave)
            await shown(fake, b, "▲ 3")

            ended = await fake.slash("event", {}, path=("end",), user=admin)
            assert "are closed" in await private_reply(fake, ended)
            late = await press(fake, a, carol)
            assert "has ended; votes are closed" in late
            summary = await fake.wait_for(lambda: summary_in(fake, thread), timeout=30,
                                          what="the summary in the gallery")
            text = summary.content
            assert "Winners" in text, text
            assert f"1. <@{bob.user.id}> — **3** votes" in text, text
            assert f"=2. <@{alice.user.id}> — **1** vote (tied)" in text, text
            assert f"=2. <@{carol.user.id}> — **1** vote (tied)" in text, text
            assert f"/{thread}/{b.id})" in text  # the winner's entry is linked
            after = await private_reply(fake, await fake.slash("event", {}, path=("status",),
                                                               user=carol))
            assert "No event is running" in after
            assert f"1. <@{bob.user.id}> — **3** votes" in after, after
            assert await stored_votes(bot) == {
                vote_button(a)[8:]: {str(bob.user.id)},
                vote_button(b)[8:]: {str(carol.user.id), str(dave.user.id),
                                     str(alice.user.id)},
                vote_button(c)[8:]: {str(dave.user.id)}}

            export = await fake.slash("seedance-admin", {"since": "2020-01-01",
                                                         "until": "2099-12-31"},
                                      path=("export",), user=admin)
            reply = await fake.wait_for(lambda: next((m for m in export.followups
                                                      if m.attachments), None),
                                        timeout=30, what="the CSV")
            rows = {r["job_id"]: r for r in csv.DictReader(
                io.StringIO(reply.attachments[0].data.decode()))}
            winner = rows[vote_button(b)[8:]]
            assert winner["votes"] == "3"
            assert set(winner["voters"].split("; ")) == {str(carol.user.id), str(dave.user.id),
                                                         str(alice.user.id)}
