"""Every card of cogs/utils/layout.py, as discord.py would send it, is stored by the fake
Discord (tests/fakes/discord/components_v2.py applies Discord's v2 rules): one video, a set of
4, a draft with Final, an event entry with Vote, a hosted link, and the status card at each
stage; and the fake refuses what Discord refuses, so these checks can fail."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bot.engine import EventKind, JobEvent, JobResult
from bot.models import GenerationRequest
from bot.store import JobState, JobView
from cogs.utils.card_texts import MAX_CARD_TEXT
from cogs.utils.finals import draft_buttons
from cogs.utils.layout import result_card, status_card
from cogs.utils.texts import status_text
from cogs.utils.views import video_filename
from tests.fakes.discord.components_v2 import FLAG_COMPONENTS_V2
from tests.fakes.discord.state import iter_components
from tests.fakes.discord.world import ApiError, Upload, World

JOB_ID = "0b7c4a52-93c2-4bd4-8f0e-2f4a8d3c9e11"


def job(*, results: int = 1, draft: bool = False, event: bool = False, prompt: str = "a fox",
        state: JobState = JobState.DELIVERED) -> JobView:
    return JobView(
        id=JOB_ID, guild_id="1", channel_id="2", user_id="3", role_ids=(),
        request=GenerationRequest(prompt=prompt, results=results), provider="local",
        model=None, state=state, seq=1, credits_estimate=4 * results,
        context={"draft": {"duration": None}} if draft else {},
        event_id="e1" if event else None)


def result(n: int) -> JobResult:
    return JobResult(video_paths=tuple(Path(f"/nowhere/{i}.mp4") for i in range(n)), seed=7,
                     credits=4 * n)


@pytest.fixture
def world() -> tuple[World, int]:
    w = World("MTAxNzQ.fake.bot-token")
    guild = w.add_guild()
    return w, next(c.id for c in w.channels.values() if c.guild_id == guild.id)


def post(world: tuple[World, int], card: Any, files: list[str]) -> dict[str, Any]:
    """Store the card as discord.py sends it; what the fake kept."""
    w, channel = world
    body = {"components": card.to_components(), "flags": FLAG_COMPONENTS_V2}
    uploads = [Upload(f"files[{i}]", name, None, b"x") for i, name in enumerate(files)]
    msg, _ = w.post_message(channel, w.bot, body, uploads, check_permissions=False)
    return msg.to_dict()


def uploaded(n: int) -> list[str]:
    return [video_filename(JOB_ID, i) for i in range(1, n + 1)]


@pytest.mark.parametrize(("videos", "draft", "event"),
                         [(1, False, False), (4, False, False), (1, True, False),
                          (2, True, True), (4, True, True)])
def test_result_cards_pass_discords_rules(world: tuple[World, int], videos: int, draft: bool,
                                          event: bool) -> None:
    the_job = job(results=videos, draft=draft, event=event)
    names = uploaded(videos)
    card = result_card(the_job, result(videos), videos=[f"attachment://{n}" for n in names],
                       inputs=["attachment://input1.jpg"], extra=draft_buttons(the_job))
    stored = post(world, card, [*names, "input1.jpg"])
    comps = iter_components(stored["components"])
    assert len(comps) <= 40 and not stored["content"] and not stored["embeds"]
    [gallery] = [c for c in comps if c["type"] == 12]
    # attachment:// is resolved to the uploaded file, as Discord does.
    urls = [i["media"]["url"] for i in gallery["items"]]
    assert len(urls) == videos and all(names[i] in u for i, u in enumerate(urls)), urls
    ids = [c["custom_id"] for c in comps if c.get("custom_id")]
    assert len(ids) == 3 * videos + 2 + draft + event
    assert f"sd:reroll:{JOB_ID}" in ids and (f"sd:final:{JOB_ID}" in ids) == draft
    assert (f"sd:vote:{JOB_ID}" in ids) == event
    assert any(c["type"] == 11 for c in comps)  # the input as a thumbnail


def test_hosted_links_spoiler_and_a_long_prompt_fit(world: tuple[World, int]) -> None:
    the_job = job(prompt="word " * 900)  # 4,500 characters
    links = ["https://cdn.example/v.mp4"]
    card = result_card(the_job, result(1), videos=links, spoiler_prompt=True,
                       note="Too large to upload here")
    stored = post(world, card, [])
    texts = [c["content"] for c in iter_components(stored["components"]) if c["type"] == 10]
    assert sum(map(len, texts)) <= MAX_CARD_TEXT
    assert any(t.startswith("||word") and "…||" in t for t in texts)  # clipped, hidden
    assert "Too large" in "".join(texts)


@pytest.mark.parametrize(("state", "event", "bar", "cancel"), [
    (JobState.QUEUED, JobEvent(EventKind.QUEUED, position=3, eta=90.0), None, True),
    (JobState.GENERATING, JobEvent(EventKind.PROGRESS, percent=50.0, eta=30.0), "50%", True),
    (JobState.DELIVERED, JobEvent(EventKind.DELIVERED, reason="1"), "100%", False),
    (JobState.FAILED, JobEvent(EventKind.FAILED, reason="the gateway broke"), None, False),
])
def test_status_cards_pass_discords_rules(world: tuple[World, int], state: JobState,
                                          event: JobEvent, bar: str | None,
                                          cancel: bool) -> None:
    the_job = job(state=state)
    card = status_card(the_job, status_text(the_job, event), event,
                       final=state in (JobState.DELIVERED, JobState.FAILED))
    stored = post(world, card, [])
    comps = iter_components(stored["components"])
    text = "\n".join(c["content"] for c in comps if c["type"] == 10)
    if state is JobState.QUEUED:
        assert "position 3" in text and "1 min 30 s" in text
    if state is JobState.FAILED:
        assert "the gateway broke" in text
    assert (bar in text) if bar else "▰" not in text and "▱" not in text
    assert any(c.get("custom_id") == f"sd:cancel:{JOB_ID}" for c in comps) == cancel


@pytest.mark.parametrize("broken", ["content", "components", "text", "gallery", "file",
                                    "legacy"])
def test_the_fake_refuses_what_discord_refuses(world: tuple[World, int], broken: str) -> None:
    w, channel = world
    text = {"type": 10, "content": "hi"}
    body: dict[str, Any] = {"flags": FLAG_COMPONENTS_V2, "components": [text]}
    if broken == "content":
        body["content"] = "hello"
    elif broken == "components":
        body["components"] = [{"type": 17, "components": [dict(text) for _ in range(40)]}]
    elif broken == "text":
        body["components"] = [{"type": 10, "content": "x" * 2001} for _ in range(2)]
    elif broken == "gallery":
        body["components"] = [{"type": 12, "items": [
            {"media": {"url": "https://a.example/x.png"}} for _ in range(11)]}]
    elif broken == "file":
        body["components"] = [{"type": 12, "items": [{"media": {"url": "attachment://a.mp4"}}]}]
    else:
        body = {"components": [text]}  # a v2 component without the flag
    with pytest.raises(ApiError) as refused:
        w.post_message(channel, w.bot, body, [], check_permissions=False)
    assert refused.value.status == 400


def test_a_card_keeps_its_flag_and_buttons_are_found(world: tuple[World, int]) -> None:
    w, channel = world
    card = status_card(job(state=JobState.QUEUED), "queued", None, final=False)
    msg, _ = w.post_message(channel, w.bot, {"components": card.to_components(),
                                             "flags": FLAG_COMPONENTS_V2}, [],
                            check_permissions=False)
    with pytest.raises(ApiError):  # the flag can't be dropped, nor text added
        w.edit_message(msg, {"content": "plain", "flags": 0}, [])
    with pytest.raises(ApiError):
        w.edit_message(msg, {"content": "plain"}, [])
    assert msg.flags & FLAG_COMPONENTS_V2
