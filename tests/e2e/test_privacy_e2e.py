"""`/my-data` through the fake Discord: what is stored, a confirmation only its owner can press,
a refusal while a job is unfinished, and a deletion that leaves accounting rows only."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.store import JobState
from tests.e2e.test_discord_admin_e2e import button, private_reply
from tests.e2e.test_discord_e2e import FAST, running, status_text, store_of, video_posts
from tests.fakes.discord.server import FakeDiscord
from tests.fakes.discord.state import MANAGE_GUILD

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]


async def test_my_data_delete_keeps_accounting_only(tmp_path: Path) -> None:
    async with FakeDiscord() as fake, running(tmp_path, fake) as bot:
        admin = fake.add_member("mod", roles=[fake.add_role("Mods", MANAGE_GUILD)])
        mods = fake.add_channel("mods")
        alice, bob = fake.member, fake.add_member("bob")

        await fake.slash("video", {"prompt": "alice's secret garden", **FAST})
        await fake.slash("video", {"prompt": "bob's harbour", **FAST}, user=bob)
        await fake.wait_for(lambda: len(video_posts(fake)) >= 2 or None, timeout=120,
                            what="both videos")
        store = await store_of(bot)
        try:
            [mine] = await store.jobs(user_id=str(alice.user.id))
        finally:
            await store.close()
        assert mine.state is JobState.DELIVERED and mine.result_path
        assert Path(mine.result_path).is_file()
        job_dir = bot.data_dir / "jobs" / mine.id

        shown = await private_reply(fake, await fake.slash("my-data", {}, path=("show",)))
        assert "**1** job of yours" in shown and "**1** with your prompt" in shown
        assert "32 days" in shown

        # An unfinished job (held for a moderator) blocks the deletion until it ends.
        mod = await fake.slash("seedance-admin", {"mode": "prompts", "channel": mods.id},
                               path=("moderation",), user=admin)
        assert "Moderation on" in await private_reply(fake, mod)
        waiting = await fake.slash("video", {"prompt": "alice waits for a moderator", **FAST})
        await fake.wait_for(lambda: "moderator" in status_text(waiting) or None, timeout=30,
                            what="the job waiting for approval")

        ask = await fake.slash("my-data", {}, path=("delete",))
        await private_reply(fake, ask)
        confirm = ask.original
        assert confirm is not None and confirm.ephemeral
        forget = button(confirm, "sdu:forget:")
        assert forget == f"sdu:forget:{alice.user.id}"

        other = await fake.click(confirm.id, forget, bob.user.id)
        assert "only they can press it" in await private_reply(fake, other)

        early = await fake.click(confirm.id, forget, alice.user.id)
        assert "1 unfinished job" in await private_reply(fake, early)
        store = await store_of(bot)
        try:
            assert (await store.get_job(mine.id)).request.prompt  # type: ignore[union-attr]
        finally:
            await store.close()

        status = waiting.original
        assert status is not None
        await fake.click(status.id, button(status, "sd:cancel:"), alice.user.id)
        await fake.wait_for(lambda: "cancelled" in status_text(waiting) or None, timeout=30,
                            what="the waiting job cancelled")

        await fake.click(confirm.id, forget, alice.user.id)
        done = await fake.wait_for(
            lambda: fake.message(confirm.id).content
            if "Done." in fake.message(confirm.id).content else None,
            timeout=30, what="the deletion's answer")
        assert "**2** jobs" in done
        assert not fake.message(confirm.id).custom_ids()  # the button is gone

        store = await store_of(bot)
        try:
            assert await store.jobs(user_id=str(alice.user.id)) == []
            after = await store.get_job(mine.id)
            assert after is not None and after.forgotten
            assert after.user_id.startswith("forgotten-")
            assert after.request.prompt == "" and after.request.references == []
            assert after.result_path is None and after.last_frame_path is None
            assert after.state is JobState.DELIVERED and after.credits_charged == 4
            ledger = await store.ledger(mine.id)
            assert [line.kind for line in ledger] == ["reserve", "commit"]
            assert {line.user_id for line in ledger} == {str(alice.user.id)}  # < 32 days old
            [bobs] = await store.jobs(user_id=str(bob.user.id))
            assert bobs.request.prompt == "bob's harbour" and bobs.result_path
            assert Path(bobs.result_path).is_file()
        finally:
            await store.close()
        assert not job_dir.exists() and not Path(mine.result_path).exists()

        again = await private_reply(fake, await fake.slash("my-data", {}, path=("show",)))
        assert "no jobs" in again
