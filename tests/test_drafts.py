"""Draft → final and remix (bot/service/drafts.py, bot/service/draft_rules.py) against a real
store (SQLite and PostgreSQL), a real engine and the embedded renderer.

A draft is the cheapest version the gateway's table allows and keeps its seed; its final is the
same request at the best resolution with that seed, priced first (nothing written), made once
per confirmation (also when two confirmations race), refused when the price moved. A remix
keeps the files and settings and takes the edited prompt, duration and ratio, checked as
`/video` checks them.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import httpx
import pytest

from bot.config import Settings
from bot.engine import Engine
from bot.errors import InvalidInput
from bot.guild import FixedSettings
from bot.intake import MediaInput, RequestOptions
from bot.models import Ratio, Resolution
from bot.providers import ProviderRegistry
from bot.service import (
    AlreadyConfirmed,
    Made,
    NotAllowed,
    NothingThere,
    PriceChanged,
    Requester,
    Services,
)
from bot.service.draft_rules import draft_settings, final_resolution
from bot.service.drafts import final_job_id, remix_values
from bot.store import EventRow, JobState, JobView, Store
from tests.media_factory import make_image
from tests.test_engine_fakes import FakeDelivery

GUILD = "100"
MEMBER = Requester("2", GUILD, "10")
OTHER = Requester("3", GUILD, "10")
MODERATOR = Requester("4", GUILD, "10", moderator=True)


@dataclass
class World:
    settings: Settings
    store: Store
    engine: Engine
    services: Services

    async def draft(self, who: Requester = MEMBER, inputs: list[MediaInput] | None = None,
                    **kw: Any) -> JobView:
        """A finished draft (rendered, downloaded, delivered), with the engine stopped after
        it, so what the test makes next is written and never rendered."""
        made = await self.services.videos.make(
            who, inputs or [], RequestOptions(prompt="a paper boat", draft=True, **kw))
        await self.engine.start()
        done = await self.engine.wait(made.job.id)
        await self.engine.stop()
        assert done.state is JobState.DELIVERED, done.error_message
        return done

    async def counts(self) -> tuple[int, list[tuple[str, str, int]]]:
        ledger = await self.store.ledger()
        return len(await self.store.jobs()), [(ln.job_id, ln.kind, ln.credits) for ln in ledger]


@pytest.fixture
async def world(data_dir: Path, store_url: str) -> AsyncIterator[World]:
    config = Settings(_env_file=None, seedance_data_dir=data_dir)
    store = await Store.open(store_url)
    async with httpx.AsyncClient() as http:
        engine = Engine(config, store, delivery=FakeDelivery(),
                        providers=ProviderRegistry(config, client=http), http=http)
        yield World(config, store, engine,
                    Services.build(config, store, engine, engine.provider, http))
        await engine.stop()
    await store.close()


# ---- the draft ------------------------------------------------------------------------------
async def test_a_draft_is_the_cheapest_the_gateway_allows_whatever_the_server_default(
    world: World,
) -> None:
    await world.store.update_guild_settings(
        GUILD, lambda g: g.model_copy(update={"resolution": Resolution.P720, "duration": 8}))
    made = await world.services.videos.make(MEMBER, [], RequestOptions(prompt="a fox",
                                                                       draft=True))
    req = made.job.request
    assert (req.resolution, req.duration) == (Resolution.P480, 4)
    assert req.seed is not None  # drawn now: the final repeats it whatever the gateway says
    assert made.job.context["draft"] == {"duration": None}
    assert made.job.credits_estimate == 4
    plain = await world.services.videos.make(MEMBER, [], RequestOptions(prompt="a fox"))
    assert (plain.job.request.resolution, plain.job.request.duration) == (Resolution.P720, 8)
    assert "draft" not in plain.job.context


async def test_a_draft_refuses_a_choice_that_contradicts_it_and_keeps_one_that_does_not(
    world: World,
) -> None:
    with pytest.raises(InvalidInput) as refused:
        await world.services.videos.make(MEMBER, [], RequestOptions(
            prompt="a fox", draft=True, resolution=Resolution.P720, duration=10))
    text = str(refused.value.problems)
    assert "a draft is made at 480p" in text and "set draft off for 720p" in text
    assert "a draft is made at 4 s" in text and "set draft off for 10 s" in text
    assert await world.counts() == (0, [])
    made = await world.services.videos.make(MEMBER, [], RequestOptions(
        prompt="a fox", draft=True, duration=4, resolution=Resolution.P480, seed=9))
    assert made.job.request.seed == 9 and made.job.context["draft"] == {"duration": 4}


async def test_an_events_fixed_setting_stands_in_a_draft(world: World) -> None:
    now = time.time()
    await world.store.create_event(EventRow(
        id="e1", guild_id=GUILD, name="Jam", channel_id="10", ends_at=now + 3600,
        credits_per_user=100, moderation="off", created_at=now,
        fixed={"resolution": "720p"}))
    made = await world.services.videos.make(MEMBER, [], RequestOptions(prompt="a fox",
                                                                       draft=True))
    assert (made.job.request.resolution, made.job.request.duration) == (Resolution.P720, 4)


# ---- the final ------------------------------------------------------------------------------
async def test_a_final_is_priced_first_then_made_once_with_the_same_seed(world: World) -> None:
    draft = await world.draft()
    seed = draft.request.seed
    assert seed is not None and draft.result_meta["seed"] == seed
    before = await world.counts()

    quote = await world.services.drafts.quote(draft.id, MEMBER)
    assert await world.counts() == before  # a price costs nothing and writes nothing
    req = quote.request
    # The local renderer makes 1080p; no duration was chosen, so the normal default (5 s).
    assert (req.resolution, req.duration, req.seed) == (Resolution.P1080, 5, seed)
    assert quote.credits == 5 * 4 and quote.seed_kept

    with pytest.raises(PriceChanged, match="now costs 20 credits, not the 8"):
        await world.services.drafts.final(draft.id, MEMBER, credits=8, nonce=quote.nonce)
    assert await world.counts() == before

    made = await world.services.drafts.final(draft.id, MEMBER, credits=20, nonce=quote.nonce)
    final = made.job
    assert final.id == final_job_id(draft.id, quote.nonce)
    assert (final.request.seed, final.request.resolution) == (seed, Resolution.P1080)
    assert final.request.prompt == draft.request.prompt and final.context["final_of"] == draft.id
    assert "draft" not in final.context
    with pytest.raises(AlreadyConfirmed, match=final.id[:8]):
        await world.services.drafts.final(draft.id, MEMBER, credits=20, nonce=quote.nonce)
    jobs, ledger = await world.counts()
    assert jobs == 2 and ledger == [*before[1], (final.id, "reserve", 20)]


async def test_two_confirmations_racing_make_one_job(world: World) -> None:
    draft = await world.draft()
    quote = await world.services.drafts.quote(draft.id, MEMBER)
    results = await asyncio.gather(
        *(world.services.drafts.final(draft.id, MEMBER, credits=quote.credits,
                                      nonce=quote.nonce) for _ in range(3)),
        return_exceptions=True)
    made = [r for r in results if isinstance(r, Made)]
    assert len(made) == 1, results
    assert all(isinstance(r, AlreadyConfirmed) for r in results if r not in made), results
    jobs, ledger = await world.counts()
    assert jobs == 2 and [k for j, k, _ in ledger if j == made[0].job.id] == ["reserve"]
    # A new quote is a new confirmation: a second final is the person's own choice.
    again = await world.services.drafts.quote(draft.id, MEMBER)
    assert again.nonce != quote.nonce
    await world.services.drafts.final(draft.id, MEMBER, credits=again.credits,
                                      nonce=again.nonce)
    assert (await world.counts())[0] == 3


async def test_the_final_takes_the_duration_the_member_chose_for_the_draft(
    world: World,
) -> None:
    draft = await world.draft(duration=4)
    quote = await world.services.drafts.quote(draft.id, MEMBER)
    assert (quote.request.duration, quote.credits) == (4, 16)


async def test_who_may_ask_for_a_final_and_of_what(world: World) -> None:
    draft = await world.draft()
    with pytest.raises(NotAllowed, match="requester or someone with Manage Messages"):
        await world.services.drafts.quote(draft.id, OTHER)
    quote = await world.services.drafts.quote(draft.id, MODERATOR)
    with pytest.raises(NotAllowed):
        await world.services.drafts.final(draft.id, OTHER, credits=quote.credits,
                                          nonce=quote.nonce)
    made = await world.services.drafts.final(draft.id, MODERATOR, credits=quote.credits,
                                             nonce=quote.nonce)
    assert made.job.user_id == MODERATOR.user_id  # who confirmed pays
    plain = await world.services.videos.make(MEMBER, [], RequestOptions(
        prompt="not a draft", duration=4, resolution=Resolution.P480))
    with pytest.raises(NotAllowed, match="Only a video made with draft:true"):
        await world.services.drafts.quote(plain.job.id, MEMBER)


async def test_no_final_where_the_event_fixes_the_drafts_resolution(world: World) -> None:
    now = time.time()
    await world.store.create_event(EventRow(
        id="e1", guild_id=GUILD, name="Jam", channel_id="10", ends_at=now + 3600,
        credits_per_user=100, moderation="off", created_at=now,
        fixed={"resolution": "480p"}))
    draft = await world.draft()
    with pytest.raises(NotAllowed, match="this event fixes the resolution at 480p"):
        await world.services.drafts.quote(draft.id, MEMBER)


async def test_a_final_whose_files_are_gone_names_the_way_out(world: World,
                                                               tmp_path: Path) -> None:
    picture = make_image(tmp_path / "cat.png", 800, 450)
    operator = Requester.operator("op")
    draft = await world.draft(operator, [MediaInput(str(picture))])
    quote = await world.services.drafts.quote(draft.id, operator)
    before = await world.counts()
    picture.unlink()
    with pytest.raises(InvalidInput) as refused:
        await world.services.drafts.final(draft.id, operator, credits=quote.credits,
                                          nonce=quote.nonce)
    text = str(refused.value.problems)
    assert "no such file" in text and "make it again with /video and the files attached" in text
    assert await world.counts() == before


# ---- remix and reroll -------------------------------------------------------------------------
async def test_a_remix_keeps_the_files_and_takes_the_edits(world: World, tmp_path: Path) -> None:
    picture = make_image(tmp_path / "cat.png", 800, 450)
    operator = Requester.operator("op")
    first = await world.services.videos.make(operator, [MediaInput(str(picture))],
                                             RequestOptions(prompt="the cat wakes up",
                                                            duration=4, seed=11,
                                                            resolution=Resolution.P480))
    form = await world.services.drafts.remix_form(first.job.id, operator)
    assert (form.prompt, form.duration, form.ratio) == ("the cat wakes up", "4", "adaptive")
    made = await world.services.drafts.remix(first.job.id, operator, prompt="the cat yawns",
                                             duration="6", ratio="1:1")
    old, new = first.job.request, made.job.request
    assert new.prompt == "the cat yawns" and new.duration == 6 and new.ratio is Ratio.R1_1
    assert [(r.source, r.role) for r in new.references] == [(r.source, r.role)
                                                          for r in old.references]
    assert new.seed == 11 and new.resolution is Resolution.P480
    assert made.job.context["remix_of"] == first.job.id and "draft" not in made.job.context

    before = await world.counts()
    with pytest.raises(InvalidInput) as refused:
        await world.services.drafts.remix(first.job.id, operator, prompt="x", duration="99",
                                          ratio="1:1")
    assert "99 s is not available" in str(refused.value.problems)
    with pytest.raises(NotAllowed):
        await world.services.drafts.remix(first.job.id, OTHER, prompt="x", duration="5",
                                          ratio="1:1")
    assert await world.counts() == before


def test_a_remix_form_names_each_field_to_fix() -> None:
    with pytest.raises(InvalidInput) as refused:
        remix_values("  ", "ten", "5:4")
    subjects = {p.subject: p.message for p in refused.value.problems}
    assert "describe what the video shows" in subjects["prompt"]
    assert "'ten' is not a whole number of seconds" in subjects["duration"]
    assert "'5:4' is not a ratio" in subjects["ratio"] and "16:9" in subjects["ratio"]
    assert remix_values(" a fox ", "6 s", " 9:16 ") == ("a fox", 6, Ratio.R9_16)


async def test_a_reroll_or_remix_of_a_draft_is_a_draft_too(world: World) -> None:
    draft = await world.draft()
    reroll = await world.services.videos.reroll(draft.id, MEMBER)
    assert reroll.job.context["draft"] == {"duration": None}
    assert reroll.job.request.seed not in (None, draft.request.seed)
    same = await world.services.drafts.remix(draft.id, MEMBER, prompt="a paper plane",
                                             duration="4", ratio="adaptive")
    assert same.job.context["draft"] == {"duration": None}
    longer = await world.services.drafts.remix(draft.id, MEMBER, prompt="a paper plane",
                                               duration="6", ratio="adaptive")
    assert longer.job.context["draft"] == {"duration": 6}


async def test_nothing_is_made_from_a_video_whose_owner_deleted_their_data(
    world: World,
) -> None:
    draft = await world.draft()
    await world.services.privacy.forget(MEMBER.user_id, MEMBER)
    with pytest.raises(NothingThere, match="deleted at its owner's request"):
        await world.services.drafts.remix_form(draft.id, MODERATOR)
    with pytest.raises(NothingThere, match="deleted at its owner's request"):
        await world.services.drafts.remix(draft.id, MODERATOR, prompt="a fox", duration="5",
                                          ratio="1:1")


# ---- the rules, per gateway table ---------------------------------------------------------------
@pytest.mark.parametrize(("gateway", "model", "shortest", "best", "seeded"), [
    ("anyfast", "seedance", 4, Resolution.P1080, False),
    ("anyfast", "seedance-2.0-mini", 4, Resolution.P720, False),
    ("magnific", None, 5, Resolution.P720, True),
    ("runware", None, 4, Resolution.P720, False),
    ("local", None, 4, Resolution.P1080, True),
])
def test_drafts_and_finals_follow_each_gateways_table(
    data_dir: Path, gateway: str, model: str | None, shortest: int, best: Resolution,
    seeded: bool,
) -> None:
    config = Settings(_env_file=None, seedance_data_dir=data_dir, anyfast_api_key="k",
                      magnific_api_key="k", runware_api_key="k")
    caps = ProviderRegistry(config)(gateway).capabilities(model)
    none = FixedSettings()
    wanted = RequestOptions(prompt="a fox", draft=True)
    drafted = draft_settings(wanted, wanted, none, caps)
    assert (drafted.resolution, drafted.duration) == (Resolution.P480, shortest)
    assert (drafted.seed is not None) is seeded
    assert final_resolution(caps, none) is best
    # An event's fixed values win over both.
    fixed = FixedSettings(resolution=Resolution.P720, duration=10)
    assert final_resolution(caps, fixed) is Resolution.P720
    entry = replace(wanted, duration=10, resolution=Resolution.P720)  # the event's values
    kept = draft_settings(entry, entry, fixed, caps)
    assert (kept.resolution, kept.duration) == (Resolution.P720, 10)
