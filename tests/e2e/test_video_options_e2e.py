"""/video's gateway options through the fake Discord and a fake gateway: 9:21, a fixed camera,
web search and the watermark where the gateway has them (the status card says which were
used), a private refusal where it has not (nothing sent), and an event that fixes settings."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e.test_discord_admin_e2e import private_reply
from tests.e2e.test_discord_e2e import (
    FAST,
    measure,
    mp4_of,
    running,
    status_text,
    video_posts,
)
from tests.fakes.discord.server import FakeDiscord
from tests.fakes.discord.state import MANAGE_GUILD
from tests.fakes.magnific import FakeMagnific

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]


async def test_video_options_reach_the_gateway_or_are_refused(tmp_path: Path) -> None:
    async with FakeMagnific() as magnific, FakeDiscord() as fake, running(
            tmp_path, fake, MAGNIFIC_API_KEY=magnific.api_key,
            MAGNIFIC_BASE_URL=magnific.base_url):
        # The embedded renderer has every option: the video is 9:21 and the card says so.
        inter = await fake.slash("video", {"prompt": "a lighthouse, ultra tall", **FAST,
                                           "ratio": "9:21", "camera_fixed": True,
                                           "web_search": True, "watermark": True})
        await fake.wait_for(lambda: video_posts(fake) or None, timeout=120, what="the video")
        width, height, _seconds, _audio = measure(mp4_of(video_posts(fake)[0]))
        assert (width, height) == (432, 992)
        card = await fake.wait_for(lambda: ("✅ posted" in status_text(inter)
                                   and status_text(inter)) or None, timeout=30, what="card")
        assert "9:21" in card and "fixed camera" in card and "web search" in card
        assert "watermark" in card

        # Magnific has no web search and no such model: refused privately, nothing sent.
        refused = await fake.slash("video", {"prompt": "a lighthouse", "provider": "magnific",
                                             "duration": 5, "resolution": "480p",
                                             "web_search": True})
        reply = await private_reply(fake, refused)
        assert "nothing was spent" in reply and "has no web search" in reply
        model = await fake.slash("video", {"prompt": "a lighthouse", "provider": "magnific",
                                           "duration": 5, "model": "seedance"})
        assert "offers only seedance-2-mini" in await private_reply(fake, model)
        assert magnific.requests == []

        # What Magnific has reaches its create body.
        await fake.slash("video", {"prompt": "a lighthouse", "provider": "magnific",
                                   "duration": 5, "resolution": "480p", "ratio": "9:21",
                                   "camera_fixed": True})
        create = await fake.wait_for(
            lambda: next((r for r in magnific.received("POST", "/v1/ai/video/")), None),
            timeout=60, what="Magnific's create")
        assert create.path == "/v1/ai/video/seedance-2-mini-480p"
        assert create.body["aspect_ratio"] == "film_vertical_9_21"
        assert create.body["camera_fixed"] is True


async def test_an_event_fixes_the_ratio_of_every_entry(tmp_path: Path) -> None:
    async with FakeDiscord() as fake, running(tmp_path, fake):
        admin = fake.add_member("mod", roles=[fake.add_role("Mods", MANAGE_GUILD)])
        bad = await fake.slash("event", {"name": "Tall Jam", "credits": 20, "minutes": 30,
                                         "channel": fake.channel.id, "ratio": "9:21",
                                         "audio": False, "provider": "local",
                                         "model": "seedance"},
                               path=("start",), user=admin)
        assert "can't fix that model" in await private_reply(fake, bad)
        started = await fake.slash("event", {"name": "Tall Jam", "credits": 20, "minutes": 30,
                                             "channel": fake.channel.id, "ratio": "9:21",
                                             "audio": False}, path=("start",), user=admin)
        assert "Fixed for every entry: ratio 9:21 · audio off" in await private_reply(
            fake, started)
        wide = await fake.slash("video", {"prompt": "a wide beach", **FAST, "ratio": "16:9"})
        reply = await private_reply(fake, wide)
        assert "this event fixes the ratio at 9:21" in reply and "nothing was spent" in reply
        entry = await fake.slash("video", {"prompt": "a tall tower", **FAST})
        card = await fake.wait_for(lambda: ("9:21" in status_text(entry)
                                   and status_text(entry)) or None, timeout=60, what="card")
        assert "Fixed by the event: ratio, audio" in card and "no audio" in card
