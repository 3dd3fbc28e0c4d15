"""Failover through the real bot and the fake Discord: SEEDANCE_PROVIDERS set, the first gateway
out of balance, the video made by the second — and the member's status message said so."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e.test_discord_e2e import FAST, running, status_text, video_posts
from tests.fakes.discord.server import FakeDiscord
from tests.fakes.hiapi import FakeHiAPI
from tests.fakes.runware import FakeRunware
from tests.provider_helpers import seed_learned_durations

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]


async def test_an_empty_balance_sends_the_video_to_the_next_gateway(tmp_path: Path) -> None:
    hiapi, runware = FakeHiAPI(), FakeRunware()
    runware.polls_to_finish = 0
    hiapi.fail_next(402, {"code": 402, "message": "insufficient balance", "data": None,
                          "error_code": "INSUFFICIENT_BALANCE"}, method="POST",
                    path_prefix="/v1/tasks")
    await seed_learned_durations(tmp_path / "data" / "seedance.sqlite3", "runware", seconds=1.0)
    async with hiapi, runware, FakeDiscord() as fake, running(
            tmp_path, fake, SEEDANCE_PROVIDERS="hiapi,runware",
            HIAPI_API_KEY=hiapi.api_key, HIAPI_BASE_URL=hiapi.base_url,
            RUNWARE_API_KEY=runware.api_key, RUNWARE_BASE_URL=runware.base_url):
        asked = await fake.slash("video", {"prompt": "a heron at dawn", "ratio": "16:9", **FAST})
        post = await fake.wait_for(lambda: (video_posts(fake) or [None])[0], timeout=90,
                                   what="the video made by Runware")
        assert post is not None
        original = asked.original
        assert original is not None
        said = [str(e.body.get("content", "")) for e in original.edits]
        # The card names the gateway that made it, which one it left, and why.
        final = status_text(asked)
        assert "· runware ·" in final
        assert "moved from hiapi to runware" in final and "balance" in final, said
    assert len(hiapi.received("POST", "/v1/tasks")) == 1 and not hiapi.tasks
    assert len(runware.tasks) == 1
