"""Admin, quota, queue and the buttons that check who pressed them — through the fake Discord."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bot.store import JobState
from tests.e2e.test_discord_e2e import FAST, running, status_text, store_of, video_posts
from tests.fakes.discord.server import FakeDiscord
from tests.fakes.discord.state import MANAGE_GUILD

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]


def button(message: Any, prefix: str) -> str:
    return next(c["custom_id"] for row in message.components for c in row["components"]
                if c.get("custom_id", "").startswith(prefix))


async def private_reply(fake: FakeDiscord, inter: Any) -> str:
    def found() -> str | None:
        for m in inter.followups:
            if m.ephemeral:
                return str(m.content)
        cb = inter.callback
        if cb is not None and cb.type == 4 and (cb.data or {}).get("flags", 0) & 64:
            return str(cb.data.get("content", ""))
        return None

    return await fake.wait_for(found, timeout=30, what="a private reply")


async def test_admin_needs_manage_server_and_quotas_apply(tmp_path: Path) -> None:
    async with FakeDiscord() as fake, running(tmp_path, fake):
        admin_role = fake.add_role("Mods", MANAGE_GUILD)
        admin = fake.add_member("mod", roles=[admin_role])
        member = fake.member

        denied = await fake.slash("seedance-admin", {}, path=("show",))
        assert "Manage Server" in await private_reply(fake, denied)

        setq = await fake.slash("seedance-admin", {"member": member.user.id, "credits": 4},
                                path=("quota-user",), user=admin)
        assert "4 credits per day" in await private_reply(fake, setq)

        quota = await fake.slash("quota", {})
        text = await private_reply(fake, quota)
        assert "**4** more credits" in text and "resets" in text

        first = await fake.slash("video", {"prompt": "fits exactly", **FAST})
        await fake.wait_for(lambda: "position" in status_text(first) or video_posts(fake)
                            or None, timeout=30, what="queued")
        second = await fake.slash("video", {"prompt": "one too many", **FAST})
        refusal = await private_reply(fake, second)
        assert "Not enough credits" in refusal and "0 left" in refusal

        show = await fake.slash("seedance-admin", {}, path=("show",), user=admin)
        shown = await private_reply(fake, show)
        assert f"<@{member.user.id}>: 4 credits per day" in shown

        queue = await fake.slash("queue", {})
        listing = await private_reply(fake, queue)
        assert "on this server" in listing or "queue is empty" in listing


async def test_cancel_and_delete_check_who_pressed(tmp_path: Path) -> None:
    async with FakeDiscord() as fake, running(tmp_path, fake, SEEDANCE_LOCAL_DELAY="30") as bot:
        stranger = fake.add_member("stranger")
        inter = await fake.slash("video", {"prompt": "a long render", **FAST})
        status = await fake.wait_for(
            lambda: inter.original if inter.original and inter.original.components else None,
            timeout=30, what="the status message with a Cancel button")
        cancel = button(status, "sd:cancel:")

        other = await fake.click(status.id, cancel, stranger.user.id)
        assert "Only the requester" in await private_reply(fake, other)

        mine = await fake.click(status.id, cancel, fake.member.user.id)
        outcome = await private_reply(fake, mine)
        assert "ancel" in outcome
        await fake.wait_for(lambda: "cancelled" in status_text(inter) or None, timeout=30,
                            what="the status saying cancelled")
        store = await store_of(bot)
        try:
            jobs = await store.jobs()
            assert [j.state for j in jobs] == [JobState.CANCELLED]
            kinds = [line.kind for line in await store.ledger(jobs[0].id)]
            assert kinds == ["reserve", "release"]
        finally:
            await store.close()


async def test_delete_button_only_for_requester(tmp_path: Path) -> None:
    async with FakeDiscord() as fake, running(tmp_path, fake):
        stranger = fake.add_member("stranger")
        await fake.slash("video", {"prompt": "to be deleted", **FAST})
        post = await fake.wait_for(lambda: (video_posts(fake) or [None])[0], timeout=90,
                                   what="the video")
        delete = button(post, "sd:delete:")
        other = await fake.click(post.id, delete, stranger.user.id)
        assert "Only the requester" in await private_reply(fake, other)
        assert not fake.message(post.id).deleted
        await fake.click(post.id, delete, fake.member.user.id)
        await fake.wait_for(lambda: fake.message(post.id).deleted or None, timeout=30,
                            what="the post deleted")


async def test_extend_and_animate_last_frame_make_new_jobs(tmp_path: Path) -> None:
    async with FakeDiscord() as fake, running(tmp_path, fake):
        await fake.slash("video", {"prompt": "a kite in the wind", **FAST})
        post = await fake.wait_for(lambda: (video_posts(fake) or [None])[0], timeout=90,
                                   what="the first video")
        await fake.click(post.id, button(post, "sd:extend:"), fake.member.user.id)
        await fake.click(post.id, button(post, "sd:animate:"), fake.member.user.id)
        await fake.wait_for(lambda: len(video_posts(fake)) >= 3 or None, timeout=120,
                            what="the extended and animated videos")
        settings = [str(p.embeds[0]) for p in video_posts(fake)[1:]]
        assert any("extend" in s and "the posted video" in s for s in settings), settings
        assert any("first frame" in s and "last frame" in s for s in settings), settings


async def test_a_servers_model_stays_with_its_gateway(tmp_path: Path) -> None:
    """A server set to Anyfast's `seedance` model: `/video provider:runware` used to send that
    model to Runware and fail; a model belongs to its gateway, so Runware runs its own."""
    from tests.fakes.runware import FakeRunware
    from tests.provider_helpers import seed_learned_durations

    runware = FakeRunware()
    runware.polls_to_finish = 0
    # A bot that saw Runware take a second: it polls at once instead of after a minute.
    await seed_learned_durations(tmp_path / "data" / "seedance.sqlite3", "runware", seconds=1.0)
    async with runware, FakeDiscord() as fake, running(
            tmp_path, fake, ANYFAST_API_KEY="unused-key", RUNWARE_API_KEY=runware.api_key,
            RUNWARE_BASE_URL=runware.base_url):
        admin = fake.add_member("mod", roles=[fake.add_role("Mods", MANAGE_GUILD)])
        chosen = await fake.slash("seedance-admin", {"provider": "anyfast", "model": "seedance"},
                                  path=("provider",), user=admin)
        assert "anyfast" in await private_reply(fake, chosen)
        await fake.slash("video", {"prompt": "a lighthouse at dusk", "provider": "runware",
                                   "ratio": "16:9", **FAST})
        post = await fake.wait_for(lambda: (video_posts(fake) or [None])[0], timeout=60,
                                   what="the Runware video")
        assert post is not None
    [task] = runware.received("POST")[0].body
    assert task["model"] == "bytedance:seedance@2.0-mini"
