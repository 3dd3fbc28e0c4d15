"""The buttons under a posted video (cogs/utils/views.py, cogs/utils/finals.py) stay within
Discord's limits — 5 rows of at most 5 buttons, unique custom ids of at most 100 characters —
for a single video and for result sets of up to 4, drafts (with Final) or not; and each
custom id is one that a restarted bot's dynamic items match again; and the price prompt's
words."""

from __future__ import annotations

import re
from typing import Any

import pytest

from bot.models import GenerationRequest
from bot.service import FinalQuote
from bot.store import JobState, JobView
from cogs.utils.finals import ConfirmFinal, DraftButton, confirm_view, draft_buttons
from cogs.utils.texts import final_quote_text
from cogs.utils.views import JobButton, result_view
from cogs.utils.voting import VoteButton

JOB_ID = "0b7c4a52-93c2-4bd4-8f0e-2f4a8d3c9e11"


def job(*, draft: bool, results: int = 1, event: bool = False) -> JobView:
    return JobView(
        id=JOB_ID, guild_id="1", channel_id="2", user_id="3", role_ids=(),
        request=GenerationRequest(prompt="a fox", results=results), provider="local",
        model=None, state=JobState.DELIVERED, seq=1,
        context={"draft": {"duration": None}} if draft else {},
        event_id="e1" if event else None)


def rows_of(view: Any) -> list[list[dict[str, Any]]]:
    return [row["components"] for row in view.to_components()]


def matches(custom_id: str) -> bool:
    templates = [JobButton.__discord_ui_compiled_template__,
                 DraftButton.__discord_ui_compiled_template__,
                 VoteButton.__discord_ui_compiled_template__,
                 ConfirmFinal.__discord_ui_compiled_template__]
    return any(isinstance(t, re.Pattern) and t.fullmatch(custom_id) for t in templates)


@pytest.mark.parametrize("videos", [1, 2, 3, 4])
@pytest.mark.parametrize("draft", [False, True])
@pytest.mark.parametrize("event", [False, True])
async def test_result_buttons_fit_discords_limits(videos: int, draft: bool,
                                                  event: bool) -> None:
    the_job = job(draft=draft, results=videos, event=event)
    rows = rows_of(result_view(the_job, videos, draft_buttons(the_job)))
    assert len(rows) <= 5 and all(1 <= len(row) <= 5 for row in rows), rows
    ids = [c["custom_id"] for row in rows for c in row]
    assert len(ids) == len(set(ids)) and all(len(i) <= 100 for i in ids)
    assert all(matches(i) for i in ids), ids
    # Per video: Reroll, Extend, Animate; once per message, in the last row: Remix, Final
    # (drafts only), Delete and Vote (event entries only).
    assert len(ids) == 3 * videos + 2 + draft + event
    assert [c["custom_id"] for c in rows[-1]] == [
        f"sd:remix:{JOB_ID}", *([f"sd:final:{JOB_ID}"] if draft else []),
        f"sd:delete:{JOB_ID}", *([f"sd:vote:{JOB_ID}"] if event else [])]
    assert (f"sd:final:{JOB_ID}" in ids) is draft


async def test_the_price_prompts_buttons_carry_the_quote() -> None:
    quote = FinalQuote(job(draft=True), GenerationRequest(), credits=999_999_999,
                       nonce="ab" * 16)
    [row] = rows_of(confirm_view(quote))
    ids = [c["custom_id"] for c in row]
    assert ids == [f"sdf:ok:{JOB_ID}:999999999:{'ab' * 16}", f"sdf:no:{JOB_ID}"]
    assert all(len(i) <= 100 and matches(i) for i in ids)
    assert "999999999 credits" in row[0]["label"]


def test_the_price_says_when_the_final_cannot_keep_the_seed() -> None:
    kept = FinalQuote(job(draft=True), GenerationRequest(seed=77, provider="local"), 20, "ab12")
    assert "seed 77, the draft's" in final_quote_text(kept)
    assert "It costs **20 credits**" in final_quote_text(kept)
    lost = FinalQuote(job(draft=True, results=4),
                      GenerationRequest(provider="runware", results=4), 40, "ab12")
    text = final_quote_text(lost)
    assert "runware takes no seed" in text and "new take" in text and "4 videos" in text
