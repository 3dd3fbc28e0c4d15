"""Moderation as server staff and members meet it, through the fake Discord: review cards with
buttons that survive restarts, a reject modal whose reason reaches the requester, blocklists that
never echo, access rules, the audit log and the CSV export."""

from __future__ import annotations

import asyncio
import csv
import io
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from bot.models import GenerationRequest
from bot.store import JobState, NewJob
from tests.e2e.test_discord_admin_e2e import button, private_reply
from tests.e2e.test_discord_e2e import FAST, running, status_text, store_of, video_posts
from tests.fakes.discord.server import FakeDiscord
from tests.fakes.discord.state import MANAGE_GUILD, MANAGE_MESSAGES, Channel, Member, Message

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]


def admin_of(fake: FakeDiscord) -> Member:
    role = fake.add_role("Staff", MANAGE_GUILD | MANAGE_MESSAGES)
    return fake.add_member("staff", roles=[role])


async def configure(fake: FakeDiscord, admin: Member, command: str,
                    options: dict[str, Any]) -> str:
    inter = await fake.slash("seedance-admin", options, path=(command,), user=admin)
    return await private_reply(fake, inter)


def cards(fake: FakeDiscord, channel: Channel) -> list[Message]:
    return [m for m in fake.messages(channel.id) if m.embeds and m.author.id == fake.bot_user_id]


def card_with_buttons(fake: FakeDiscord, channel: Channel) -> Message | None:
    return next((m for m in cards(fake, channel) if m.components), None)


async def test_prompt_waits_for_approval_then_is_generated(tmp_path: Path) -> None:
    async with FakeDiscord() as fake, running(tmp_path, fake):
        mods = fake.add_channel("mods")
        admin = admin_of(fake)
        said = await configure(fake, admin, "moderation", {"mode": "prompts",
                                                           "channel": mods.id})
        assert "approved before anything is generated" in said

        inter = await fake.slash("video", {"prompt": "a lighthouse at dawn", **FAST})
        card = await fake.wait_for(lambda: card_with_buttons(fake, mods), timeout=60,
                                   what="the approval card")
        assert "a lighthouse at dawn" in card.embeds[0]["description"]
        assert f"<@{fake.member.user.id}>" in str(card.embeds[0])
        await fake.wait_for(lambda: "waiting for a moderator" in status_text(inter) or None,
                            timeout=30, what="the pending status")
        assert "lighthouse" not in status_text(inter)  # nothing unreviewed in public
        assert not video_posts(fake)

        denied = await fake.click(card.id, button(card, "sdm:approve:"), fake.member.user.id)
        assert "Only moderators" in await private_reply(fake, denied)

        await fake.click(card.id, button(card, "sdm:approve:"), admin.user.id)
        post = await fake.wait_for(lambda: (video_posts(fake) or [None])[0], timeout=90,
                                   what="the approved video")
        assert "lighthouse" in str(post.embeds)
        decided = await fake.wait_for(
            # "Approved by" while it waits, "Prompt approved by" once it started: which one
            # depends on how soon the job starts, and both name the moderator.
            lambda: "approved by" in str(fake.message(card.id).embeds).lower() or None,
            timeout=30,
            what="the card showing the decision")
        assert decided and not fake.message(card.id).components
        assert len(cards(fake, mods)) == 1


async def test_held_result_rejected_with_reason_releases_credits(tmp_path: Path) -> None:
    async with FakeDiscord() as fake, running(tmp_path, fake) as bot:
        mods, audit = fake.add_channel("mods"), fake.add_channel("audit")
        admin = admin_of(fake)
        await configure(fake, admin, "moderation", {"mode": "results", "channel": mods.id})
        await configure(fake, admin, "audit-channel", {"channel": audit.id})

        inter = await fake.slash("video", {"prompt": "a spooky mansion", **FAST})
        card = await fake.wait_for(lambda: card_with_buttons(fake, mods), timeout=90,
                                   what="the result card")
        assert any(a.filename.endswith(".mp4") for a in card.attachments)
        assert not video_posts(fake)  # held: nothing public before a decision
        await fake.wait_for(lambda: "waiting for a moderator before it is posted"
                            in status_text(inter) or None, timeout=30, what="held status")

        opened = await fake.click(card.id, button(card, "sdm:reject:"), admin.user.id)
        await fake.wait_for(lambda: opened.modal, timeout=30, what="the reason modal")
        submitted = await fake.submit_modal(opened, {"reason": "Too scary for this server"},
                                            admin.user.id)
        assert "Rejected" in await private_reply(fake, submitted)

        told = await fake.wait_for(
            lambda: next((m for m in inter.followups if m.ephemeral
                          and "Too scary" in m.content), None), timeout=30,
            what="the requester's private note")
        assert "not approved" in told.content
        await fake.wait_for(lambda: "rejected" in status_text(inter) or None, timeout=30,
                            what="the rejected status")
        assert "Too scary" not in status_text(inter)  # the reason went privately
        entry = await fake.wait_for(lambda: next(iter(fake.messages(audit.id)), None),
                                    timeout=30, what="the audit entry")
        assert "rejected" in entry.content and f"<@{admin.user.id}>" in entry.content
        assert "credits released" in entry.content
        assert not video_posts(fake)

        store = await store_of(bot)
        try:
            (job,) = await store.jobs()
            assert job.state is JobState.REJECTED and job.moderator_id == str(admin.user.id)
            assert [line.kind for line in await store.ledger(job.id)] == ["reserve", "release"]
        finally:
            await store.close()


async def test_blocklisted_prompt_is_refused_without_echo(tmp_path: Path) -> None:
    async with FakeDiscord() as fake, running(tmp_path, fake) as bot:
        admin = admin_of(fake)
        added = await configure(fake, admin, "blocklist-add", {"kind": "word",
                                                               "pattern": "banana"})
        assert "Added rule #1" in added
        tested = await configure(fake, admin, "blocklist-test", {"text": "a BANANA boat"})
        assert "rule #1" in tested

        inter = await fake.slash("video", {"prompt": "a giant banana boat", **FAST})
        refusal = await private_reply(fake, inter)
        assert "rule #1" in refusal and "Nothing was spent" in refusal
        assert "banana" not in refusal.lower()
        public = [m for m in fake.messages(fake.channel.id) if not m.ephemeral]
        assert all("banana" not in str(m.content).lower() for m in public)
        store = await store_of(bot)
        try:
            assert await store.jobs() == [] and await store.ledger() == []
        finally:
            await store.close()


async def test_access_rules_refuse_privately(tmp_path: Path) -> None:
    async with FakeDiscord() as fake, running(tmp_path, fake) as bot:
        admin = admin_of(fake)
        creators = fake.add_role("Creators")
        creator = fake.add_member("creator", roles=[creators])
        await configure(fake, admin, "roles", {"action": "add", "role": creators.id})

        outsider = await fake.slash("video", {"prompt": "a cat", **FAST})
        assert "needs one of these roles" in await private_reply(fake, outsider)

        await configure(fake, admin, "block", {"member": creator.user.id,
                                               "reason": "spamming the channel"})
        blocked = await fake.slash("video", {"prompt": "a cat", **FAST}, user=creator)
        assert "spamming the channel" in await private_reply(fake, blocked)
        await configure(fake, admin, "unblock", {"member": creator.user.id})

        await configure(fake, admin, "rate-limit", {"per_minute": 1})
        first = await fake.slash("video", {"prompt": "first cat", **FAST}, user=creator)
        second = await fake.slash("video", {"prompt": "second cat", **FAST}, user=creator)
        assert "per minute" in await private_reply(fake, second)  # even while the first loads
        await fake.wait_for(lambda: "first cat" in status_text(first) or None, timeout=30,
                            what="the first video's status")
        store = await store_of(bot)
        try:
            assert [j.request.prompt for j in await store.jobs()] == ["first cat"]
        finally:
            await store.close()


async def test_approval_buttons_work_after_a_restart(tmp_path: Path) -> None:
    async with FakeDiscord() as fake:
        admin = admin_of(fake)
        mods = fake.add_channel("mods")
        async with running(tmp_path, fake) as bot:
            await configure(fake, admin, "moderation", {"mode": "prompts", "channel": mods.id})
            await fake.slash("video", {"prompt": "a red kite", **FAST})
            card = await fake.wait_for(lambda: card_with_buttons(fake, mods), timeout=60,
                                       what="the approval card")
            await bot.kill()
        async with running(tmp_path, fake):
            await fake.click(card.id, button(card, "sdm:approve:"), admin.user.id)
            await fake.wait_for(lambda: video_posts(fake) or None, timeout=90,
                                what="the video approved after the restart")
            # The reject modal opened before a restart is handled after it, too.
            await fake.slash("video", {"prompt": "a blue kite", **FAST})
            second = await fake.wait_for(
                lambda: next((m for m in cards(fake, mods) if m.id != card.id
                              and m.components), None), timeout=60, what="a second card")
            opened = await fake.click(second.id, button(second, "sdm:reject:"), admin.user.id)
            await fake.wait_for(lambda: opened.modal, timeout=30, what="the reason modal")
        async with running(tmp_path, fake):
            submitted = await fake.submit_modal(opened, {"reason": "off topic"}, admin.user.id)
            assert "Rejected" in await private_reply(fake, submitted)
        assert len(cards(fake, mods)) == 2  # the restarts re-posted no card


async def test_csv_export_lists_exactly_the_guilds_jobs(tmp_path: Path) -> None:
    async with FakeDiscord() as fake, running(tmp_path, fake) as bot:
        admin = admin_of(fake)
        for prompt in ("one fox", "two foxes"):
            await fake.slash("video", {"prompt": prompt, **FAST})
        store = await store_of(bot)
        try:
            # Another server's job in the same database must not leak into this export.
            elsewhere = NewJob(id=str(uuid.uuid4()), guild_id="999", channel_id="1",
                               user_id="2", role_ids=(), request=GenerationRequest(prompt="x"),
                               provider="local", model=None, state=JobState.CANCELLED,
                               credits_estimate=0)
            await store.create_job(elsewhere, [], now=time.time())
            for _ in range(300):
                if len(await store.jobs()) == 3:
                    break
                await asyncio.sleep(0.1)
            expected = [j.id for j in await store.jobs() if j.guild_id == str(fake.guild.id)]
        finally:
            await store.close()
        assert len(expected) == 2
        inter = await fake.slash("seedance-admin", {"since": "2020-01-01", "until": "2099-12-31"},
                                 path=("export",), user=admin)
        reply = await fake.wait_for(lambda: next((m for m in inter.followups if m.attachments),
                                                 None), timeout=30, what="the CSV")
        assert reply.ephemeral and "2 jobs" in reply.content
        rows = list(csv.DictReader(io.StringIO(reply.attachments[0].data.decode())))
        assert sorted(r["job_id"] for r in rows) == sorted(expected)
        assert {r["prompt"] for r in rows} == {"one fox", "two foxes"}
        none = await fake.slash("seedance-admin", {"since": "2020-01-01", "until": "2020-01-02"},
                                path=("export",), user=admin)
        empty = await fake.wait_for(lambda: next((m for m in none.followups if m.attachments),
                                                 None), timeout=30, what="the empty CSV")
        assert "0 jobs" in empty.content
