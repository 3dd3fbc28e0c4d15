"""The server library through the fake Discord and the fake Anyfast (Seedance 2.0, `seedance`):
a character added once, used by `@name` in two videos (registered once, sent as `asset://`),
listed with its preview and use count, refused names and limits, a face the gateway's review
refuses at `add`, a non-owner's removal refused, and a removal while a job that uses it waits
in the queue (the job finishes with its copy)."""

from __future__ import annotations

import asyncio
import io
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from bot.store import JobState
from tests.e2e.test_discord_admin_e2e import private_reply
from tests.e2e.test_discord_e2e import FAST, running, status_text, store_of, video_posts
from tests.fakes.anyfast import REAL_PERSON_MARKER, FakeAnyfast
from tests.fakes.common import Recorded
from tests.fakes.discord.server import FakeDiscord
from tests.fakes.discord.state import MANAGE_GUILD, MANAGE_MESSAGES
from tests.media_factory import make_image
from tests.provider_helpers import seed_learned_durations

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]


def calls(anyfast: FakeAnyfast, path: str) -> list[Recorded]:
    return [r for r in anyfast.received("POST") if r.path == path]


def creates(anyfast: FakeAnyfast) -> list[Recorded]:
    return calls(anyfast, "/v1/video/generations")


def selfie() -> bytes:
    """A picture the fake Anyfast's asset review takes for a real person."""
    info = PngInfo()
    info.add_text("Comment", REAL_PERSON_MARKER.decode())
    out = io.BytesIO()
    Image.new("RGB", (800, 450), (220, 180, 160)).save(out, format="PNG", pnginfo=info)
    return out.getvalue()


async def add(fake: FakeDiscord, name: str, file: tuple[str, bytes, str], **kw: Any) -> str:
    inter = await fake.slash("library", {"name": name}, attachments={"file": file},
                             path=("add",), **kw)
    return await private_reply(fake, inter)


async def test_a_character_in_two_videos_listed_and_removed(tmp_path: Path) -> None:
    hero = ("hero.png", make_image(tmp_path / "hero.png", 800, 450).read_bytes(), "image/png")
    castle = ("castle.png", make_image(tmp_path / "castle.png", 800, 450,
                                       color=(20, 20, 200)).read_bytes(), "image/png")
    anyfast = FakeAnyfast()
    anyfast.pending_statuses = []
    await seed_learned_durations(tmp_path / "data" / "seedance.sqlite3", "anyfast", seconds=1.0)
    async with anyfast, FakeDiscord() as fake, running(
            tmp_path, fake, ANYFAST_API_KEY=anyfast.api_key, ANYFAST_BASE_URL=anyfast.base_url,
            SEEDANCE_PROVIDER="anyfast", SEEDANCE_MODEL="seedance",
            SEEDANCE_GATEWAY_CONCURRENCY="anyfast=1", SEEDANCE_LIBRARY_MAX_ITEMS="2") as bot:
        other = fake.add_member("other")
        added = await fake.slash("library", {"name": "hero", "description": "our hero"},
                                 attachments={"file": hero}, path=("add",))
        assert (await fake.wait_for_callback(added)).type == 5  # deferred at once
        reply = await private_reply(fake, added)
        assert "Added `hero`" in reply and "registered on anyfast" in reply

        # Names refused with the reason; nothing kept.
        assert "has an item called `HERO` already" in await add(fake, "HERO", castle, user=other)
        assert "looks like the `@image1`" in await add(fake, "image1", castle)
        assert "not a single word" in await add(fake, "the castle", castle)
        # A face the gateway's review refuses is reported now, not at generation time.
        assert "may show a real person" in await add(fake, "me", ("me.png", selfie(),
                                                                  "image/png"))
        assert len(calls(anyfast, "/volc/asset/CreateAsset")) == 2  # hero, and the face

        # Two videos by @name: registered once, sent as asset://, mapped before spending.
        first = await fake.slash("video", {"prompt": "@hero walks in the rain", **FAST})
        second = await fake.slash("video", {"prompt": "@Hero waves goodbye", **FAST})
        await fake.wait_for(lambda: len(video_posts(fake)) >= 2 or None, timeout=120,
                            what="two videos")
        assert len(calls(anyfast, "/volc/asset/CreateAssetGroup")) == 1
        assert len(calls(anyfast, "/volc/asset/CreateAsset")) == 2  # no new registration
        asset = calls(anyfast, "/volc/asset/CreateAsset")[0]
        assert asset.body["AssetType"] == "Image"
        for create in creates(anyfast):
            text, picture = create.body["content"]
            assert text["text"].startswith("@image1 ") and "@hero" not in text["text"].lower()
            assert picture["image_url"]["url"].startswith("asset://asset-")
            assert picture["role"] == "reference_image"
        for inter in (first, second):
            assert "@image1 = library: hero → reference image" in status_text(inter)

        # The list: a preview, who added it, how often it was used.
        listed = await fake.slash("library", {}, path=("list",))
        assert "**1** of 2 items" in await private_reply(fake, listed)
        card = await fake.wait_for(lambda: next((m for m in listed.followups if m.embeds), None),
                                   timeout=30, what="the library's cards")
        shown = str(card.embeds)
        assert "@hero" in shown and "2 times" in shown and f"<@{fake.member.user.id}>" in shown
        assert [a.filename for a in card.attachments] == ["thumb_1.png"]
        assert Image.open(io.BytesIO(card.attachments[0].data)).size[0] <= 160

        # Limits, with the numbers.
        assert "Added `castle`" in await add(fake, "castle", castle)
        assert "full: 2 of 2 items" in await add(fake, "dog", castle)

        # Only the owner or Manage Server removes.
        refused = await fake.slash("library", {"name": "hero"}, path=("remove",), user=other)
        assert "Only the member who added `hero`" in await private_reply(fake, refused)

        # Removed while a job that uses it waits in the queue: the job keeps its copy. On
        # Seedance 2.0 Mini (no assets) the picture goes as the file itself.
        anyfast.pending_statuses = ["IN_PROGRESS"] * 100_000  # the one slot stays busy
        await fake.slash("video", {"prompt": "a slow lighthouse", **FAST})
        await fake.wait_for(lambda: len(creates(anyfast)) >= 3 or None, timeout=60,
                            what="the slow job's create")
        waiting = await fake.slash("video", {"prompt": "@hero dances", **FAST,
                                             "model": "seedance-2.0-mini"})
        store = await store_of(bot)
        try:
            for _ in range(600):  # until the bot has written the job (it waits for the slot)
                jobs = await store.jobs([JobState.QUEUED])
                if any(j.request.prompt == "@image1 dances" for j in jobs):
                    break
                await asyncio.sleep(0.1)
            else:
                raise AssertionError("the waiting job was never queued")
            removed = await fake.slash("library", {"name": "hero"}, path=("remove",))
            assert "Removed `hero`" in await private_reply(fake, removed)
            assert await store.library_item(str(fake.guild.id), "hero") is None
        finally:
            await store.close()
        anyfast.pending_statuses = []
        await fake.wait_for(lambda: len(video_posts(fake)) >= 4 or None, timeout=120,
                            what="the queued video")
        text, picture = creates(anyfast)[-1].body["content"]
        assert text["text"] == "@image1 dances"
        assert picture["image_url"]["url"].startswith("data:image/png;base64,")
        assert "✅ posted" in await fake.wait_for(
            lambda: ("✅ posted" in status_text(waiting) and status_text(waiting)) or None,
            timeout=30, what="the card")


async def test_an_item_in_a_reviewing_server_waits_for_a_moderator(tmp_path: Path) -> None:
    """With prompts reviewed, an item is told to the moderators' channel and unusable until a
    moderator approves it; the embedded renderer sends it as the file itself."""
    hero = ("hero.png", make_image(tmp_path / "hero.png", 800, 450).read_bytes(), "image/png")
    async with FakeDiscord() as fake, running(tmp_path, fake):
        mods = fake.add_channel("mods")
        staff = fake.add_member("staff", roles=[fake.add_role("Staff",
                                                              MANAGE_GUILD | MANAGE_MESSAGES)])
        await private_reply(fake, await fake.slash(
            "seedance-admin", {"mode": "prompts", "channel": mods.id}, path=("moderation",),
            user=staff))
        reply = await add(fake, "hero", hero)
        assert "waits for a moderator's approval" in reply
        note = await fake.wait_for(lambda: next((m for m in fake.messages(mods.id)
                                                 if "`hero`" in m.content), None),
                                   timeout=30, what="the moderators' note")
        assert "/library approve name:hero" in note.content

        early = await fake.slash("video", {"prompt": "@hero waves", **FAST})
        assert "waits for a moderator's approval" in await private_reply(fake, early)
        denied = await fake.slash("library", {"name": "hero"}, path=("approve",))
        assert "Only moderators" in await private_reply(fake, denied)
        approved = await fake.slash("library", {"name": "hero"}, path=("approve",), user=staff)
        assert "approved by" in await private_reply(fake, approved)

        inter = await fake.slash("video", {"prompt": "@hero waves", **FAST})
        await fake.wait_for(lambda: "waiting for a moderator" in status_text(inter) or None,
                            timeout=60, what="the prompt's review")
