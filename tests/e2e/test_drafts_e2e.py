"""Draft → final and remix as members meet them: the real bot (a subprocess) and discord.py
against the fake Discord, Magnific's fake gateway or the embedded renderer behind it.

- `/video draft:true` on Magnific sends 480p and the shortest duration with a seed; its post
  has a Final button. A stranger's press is refused privately; the owner's shows the higher
  price privately; Cancel charges nothing; Confirm — pressed twice, after a restart — makes one
  job, charged only then, whose create carries the same seed at 720p.
- Remix opens a form filled in from the video; a bad duration or ratio is refused privately
  with the fix; after a restart the form's submission makes a job with the same files and the
  edited prompt. A final whose files are gone (copies deleted, CDN links expired) is refused
  with the way out, and charges nothing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bot.store import JobView, LedgerLine
from tests.e2e.test_discord_admin_e2e import private_reply
from tests.e2e.test_discord_e2e import running, store_of, video_posts
from tests.e2e.test_sets_e2e import custom_ids
from tests.fakes.discord.server import FakeDiscord
from tests.fakes.discord.state import Message, iter_components
from tests.fakes.magnific import FakeMagnific
from tests.media_factory import make_image
from tests.provider_helpers import seed_learned_durations

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]


async def jobs_and_ledger(bot: Any) -> tuple[list[JobView], list[LedgerLine]]:
    store = await store_of(bot)
    try:
        return await store.jobs(), await store.ledger()
    finally:
        await store.close()


def price_prompt(inter: Any) -> Message | None:
    return next((m for m in inter.followups if m.ephemeral and m.components), None)


def first_post(fake: FakeDiscord) -> Message | None:
    posts = video_posts(fake)
    return posts[0] if posts else None


def button(message: Message, prefix: str) -> str:
    return next(i for i in custom_ids(message) if i.startswith(prefix))


async def test_a_draft_and_its_final_on_magnific(tmp_path: Path) -> None:
    magnific = FakeMagnific()
    magnific.polls_to_finish = 1
    await seed_learned_durations(tmp_path / "data" / "seedance.sqlite3", "magnific",
                                 seconds=1.0)
    async with magnific, FakeDiscord() as fake:
        env = {"MAGNIFIC_API_KEY": magnific.api_key, "MAGNIFIC_BASE_URL": magnific.base_url}
        stranger = fake.add_member("stranger")
        async with running(tmp_path, fake, **env) as bot:
            explicit = await fake.slash("video", {"prompt": "a lighthouse at dusk",
                                                  "provider": "magnific", "draft": True,
                                                  "resolution": "720p"})
            reply = await private_reply(fake, explicit)
            assert "a draft is made at 480p" in reply and "nothing was spent" in reply

            await fake.slash("video", {"prompt": "a lighthouse at dusk",
                                       "provider": "magnific", "draft": True})
            post = await fake.wait_for(lambda: first_post(fake), timeout=90,
                                       what="the draft")
            [create] = magnific.received("POST", "/v1/ai/video/")
            assert create.path == "/v1/ai/video/seedance-2-mini-480p"
            assert create.body["duration"] == 5  # Magnific's shortest (5 or 10 s)
            seed = create.body["seed"]
            assert isinstance(seed, int) and seed >= 0
            [draft], ledger = await jobs_and_ledger(bot)
            assert [(ln.kind, ln.credits) for ln in ledger] == [("reserve", 5), ("commit", 5)]
            final = button(post, "sd:final:")
            assert final == f"sd:final:{draft.id}" and f"sd:remix:{draft.id}" in custom_ids(post)

            denied = await fake.click(post.id, final, stranger.user.id)
            assert "Only the requester" in await private_reply(fake, denied)

            pressed = await fake.click(post.id, final)
            prompt = await fake.wait_for(lambda: price_prompt(pressed), timeout=30,
                                         what="the price")
            assert "It costs **10 credits** (the draft cost 5)" in prompt.content
            assert "720p" in prompt.content and f"seed {seed}, the draft's" in prompt.content
            cancel = await fake.click(prompt.id, button(prompt, "sdf:no:"))
            await fake.wait_for_callback(cancel)
            await fake.wait_for(lambda: "nothing was charged" in fake.message(prompt.id).content
                                or None, timeout=30, what="the cancelled prompt")
            assert not fake.message(prompt.id).components
            assert await jobs_and_ledger(bot) == ([draft], ledger)

            again = await fake.click(post.id, final)
            prompt = await fake.wait_for(lambda: price_prompt(again), timeout=30,
                                         what="a second price")

        # The price prompt's buttons work after a restart; a double click makes one job.
        async with running(tmp_path, fake, **env) as bot:
            confirm = button(prompt, "sdf:ok:")
            clicks = [await fake.click(prompt.id, confirm) for _ in range(2)]
            told = await fake.wait_for(
                lambda: next((m.content for c in clicks for m in c.followups
                              if m.ephemeral and "already" in m.content), None),
                timeout=60, what="the second click's answer")
            assert "confirmed this final already" in told and "Nothing more" in told
            await fake.wait_for(lambda: len(video_posts(fake)) >= 2 or None, timeout=120,
                                what="the final")
            jobs, ledger = await jobs_and_ledger(bot)
            assert len(jobs) == 2
            made = next(j for j in jobs if j.id != draft.id)
            assert made.context["final_of"] == draft.id
            assert sorted((ln.job_id == made.id, ln.kind, ln.credits) for ln in ledger) == [
                (False, "commit", 5), (False, "reserve", 5),
                (True, "commit", 10), (True, "reserve", 10)]
            creates = magnific.received("POST", "/v1/ai/video/")
            assert len(creates) == 2
            assert creates[1].path == "/v1/ai/video/seedance-2-mini-720p"
            assert creates[1].body["seed"] == seed and creates[1].body["duration"] == 5
            assert creates[1].body["prompt"] == "a lighthouse at dusk"
            assert "sd:final:" not in str(video_posts(fake)[1].components)


def form_values(inter: Any) -> dict[str, str]:
    modal = inter.modal or {}
    return {c["custom_id"]: c.get("value", "") for c in iter_components(
        modal.get("components") or []) if c.get("type") == 4}


async def test_remix_after_a_restart_and_a_final_whose_files_are_gone(tmp_path: Path) -> None:
    picture = make_image(tmp_path / "cat.png", 800, 450).read_bytes()
    async with FakeDiscord() as fake:
        async with running(tmp_path, fake) as bot:
            await fake.slash("video", {"prompt": "the cat wakes up", "draft": True,
                                       "ratio": "16:9"},
                             attachments=[("cat.png", picture, "image/png")])
            post = await fake.wait_for(lambda: first_post(fake), timeout=90,
                                       what="the draft")
            [draft], _ = await jobs_and_ledger(bot)
            opened = await fake.click(post.id, f"sd:remix:{draft.id}")
            await fake.wait_for(lambda: opened.modal, timeout=30, what="the remix form")
            assert form_values(opened) == {"prompt": "the cat wakes up", "duration": "4",
                                           "ratio": "16:9"}
            bad = await fake.submit_modal(opened, {"prompt": "the cat yawns",
                                                   "duration": "ten", "ratio": "5:4"})
            reply = await private_reply(fake, bad)
            assert "'ten' is not a whole number of seconds" in reply
            assert "'5:4' is not a ratio" in reply and "nothing was spent" in reply
            assert len((await jobs_and_ledger(bot))[0]) == 1

        async with running(tmp_path, fake) as bot:
            await fake.submit_modal(opened, {"prompt": "the cat yawns", "duration": "5",
                                             "ratio": "1:1"})
            await fake.wait_for(lambda: len(video_posts(fake)) >= 2 or None, timeout=120,
                                what="the remix")
            jobs, ledger = await jobs_and_ledger(bot)
            remix = next(j for j in jobs if j.id != draft.id)
            req = remix.request
            assert (req.prompt, req.duration, req.ratio.value) == ("the cat yawns", 5, "1:1")
            assert [r.source for r in req.references] == [r.source for r in
                                                          draft.request.references]
            assert req.seed == draft.request.seed and req.resolution.value == "480p"
            assert remix.context["remix_of"] == draft.id
            assert remix.context["draft"] == {"duration": 5}  # a draft's remix is a draft

            # The draft's files: our copies deleted, Discord's links expired.
            for copy in (bot.data_dir / "cache").iterdir():
                copy.unlink()
            fake.expire_attachments()
            pressed = await fake.click(post.id, f"sd:final:{draft.id}")
            prompt = await fake.wait_for(lambda: price_prompt(pressed), timeout=30,
                                         what="the price")
            confirmed = await fake.click(prompt.id, button(prompt, "sdf:ok:"))
            reply = await private_reply(fake, confirmed)
            assert "the link has expired" in reply
            assert "make it again with /video and the files attached" in reply
            assert await jobs_and_ledger(bot) == (jobs, ledger)


async def test_a_draft_set_posts_within_discords_button_limits(tmp_path: Path) -> None:
    async with FakeDiscord() as fake, running(tmp_path, fake) as bot:
        await fake.slash("video", {"prompt": "four paper boats", "draft": True, "count": 4})
        post = await fake.wait_for(lambda: first_post(fake), timeout=120,
                                   what="the set")  # the fake refuses a post over the limits
        [draft], _ = await jobs_and_ledger(bot)
        rows = [[c["custom_id"] for c in row["components"]] for row in post.components]
        assert len(rows) == 5 and all(len(row) <= 5 for row in rows)
        assert rows[-1] == [f"sd:remix:{draft.id}", f"sd:final:{draft.id}",
                            f"sd:delete:{draft.id}"]
        pressed = await fake.click(post.id, f"sd:final:{draft.id}")
        prompt = await fake.wait_for(lambda: price_prompt(pressed), timeout=30,
                                     what="the price")
        # 4 videos × 5 s × 4 credits a second at 1080p (the renderer's best).
        assert "1080p · 5 s · 4 videos" in prompt.content
        assert "It costs **80 credits** (the draft cost 16)" in prompt.content
