"""A /video refusal reads in the asker's language end to end (issue 16, item 4): the real bot,
the fake Discord, a member whose Discord client is in Japanese. The private answer is Japanese —
a file problem and a refusal for credits — while an English member's answer stays as it was."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e.test_discord_e2e import FAST, running
from tests.fakes.discord.server import FakeDiscord
from tests.fakes.discord.state import Message
from tests.media_factory import make_image

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]


async def private_answer(fake: FakeDiscord, options: dict[str, object], locale: str,
                         attachments: list[tuple[str, bytes, str]] | None = None) -> str:
    inter = await fake.invoke_slash(fake.channel.guild_id, fake.channel.id,
                                    fake.member.user.id, "video", options, attachments,
                                    locale=locale)
    reply: Message = await fake.wait_for(
        lambda: next((m for m in inter.followups if m.ephemeral), None), timeout=60,
        what=f"the private answer in {locale}")
    return str(reply.content)


async def test_a_video_refusal_reads_in_japanese_end_to_end(tmp_path: Path) -> None:
    tiny = make_image(tmp_path / "tiny.png", 120, 120)
    files = [("tiny.png", tiny.read_bytes(), "image/png")]
    async with FakeDiscord() as fake, running(tmp_path, fake, SEEDANCE_USER_DAILY_CREDITS="0"):
        problem = await private_answer(fake, {"prompt": "a fox", **FAST}, "ja", files)
        credits = await private_answer(fake, {"prompt": "a fox", **FAST}, "ja")
        english = await private_answer(fake, {"prompt": "a fox", **FAST}, "en-US")
    assert problem.startswith("**このリクエストはまだ実行できません。"), problem
    assert "クレジットは消費されていません。**" in problem and "tiny.png" in problem
    assert "120x120 px です。各辺は 300–6000 px にする必要がある" in problem
    assert credits.startswith("クレジットが足りません: この動画には"), credits
    assert "あなたの 1 日のクレジット: 0 のうち 0 使用済み、残り 0" in credits
    assert "クレジットは消費されていません。" in credits
    assert not any(word in problem + credits for word in ("Nothing was spent", "credits", "Fix "))
    assert english.startswith("Not enough credits: This video costs "), english
    assert "your daily credits: 0 of 0 used, 0 left" in english
