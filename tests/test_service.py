"""The use cases every front end shares (bot/service/), against a real store and engine.

Each refusal is a type a front end renders; a refused request writes nothing and spends nothing.
The engine is not started in most tests: what matters is what `make` lets into the queue.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from bot.config import Settings
from bot.engine import Engine, RateLimited
from bot.errors import InvalidInput, Refusal
from bot.guild import GuildSettings, ReviewMode
from bot.intake import MediaInput, RequestOptions
from bot.models import Resolution
from bot.providers import ProviderRegistry
from bot.service import (
    BadSetting,
    Blocked,
    BlockedWords,
    EventClosed,
    NotAllowed,
    NotInThisChannel,
    Requester,
    ReviewUnavailable,
    RoleRequired,
    Services,
    resolve_options,
)
from bot.store import EventRow, Store
from tests.test_engine_fakes import FakeDelivery

GUILD = "100"
ADMIN = Requester("1", GUILD, "10", admin=True, moderator=True)
MEMBER = Requester("2", GUILD, "10")


@dataclass
class World:
    settings: Settings
    store: Store
    engine: Engine
    services: Services

    async def nothing_written(self) -> None:
        assert await self.store.jobs() == [] and await self.store.ledger() == []


async def build(data_dir: Path, http: httpx.AsyncClient, **settings: object) -> World:
    config = Settings(_env_file=None, seedance_data_dir=data_dir, **settings)  # type: ignore[arg-type]
    store = await Store.open(config.database_path)
    engine = Engine(config, store, delivery=FakeDelivery(),
                    providers=ProviderRegistry(config, client=http), http=http)
    return World(config, store, engine,
                 Services.build(config, store, engine, engine.provider, http))


@asynccontextmanager
async def running_world(data_dir: Path, **settings: object) -> AsyncIterator[World]:
    """A World (`build`) for one test, its engine stopped and store closed after it."""
    async with httpx.AsyncClient() as http:
        w = await build(data_dir, http, **settings)
        try:
            yield w
        finally:
            await w.engine.stop()
            await w.store.close()


@pytest.fixture
async def world(data_dir: Path) -> AsyncIterator[World]:
    async with running_world(data_dir) as w:
        yield w


def text(prompt: str = "a fox", **kw: object) -> RequestOptions:
    kw.setdefault("duration", 4)
    kw.setdefault("resolution", Resolution.P480)
    return RequestOptions(prompt=prompt, **kw)  # type: ignore[arg-type]


async def make(world: World, who: Requester = MEMBER, **kw: object) -> object:
    return await world.services.videos.make(who, [], text(**kw))


# ---- the gate ---------------------------------------------------------------------------------
async def test_a_blocked_member_is_refused_with_the_reason(world: World) -> None:
    await world.services.admin.block(ADMIN, MEMBER.user_id, "spamming the channel")
    with pytest.raises(Blocked, match="spamming the channel"):
        await make(world)
    await world.nothing_written()


async def test_channels_count_a_thread_as_its_channel(world: World) -> None:
    await world.services.admin.edit_list(ADMIN, "allowed_channels", "add", "10")
    in_thread = Requester("2", GUILD, "55", parent_channel_id="10")
    elsewhere = Requester("2", GUILD, "77")
    await make(world, in_thread)
    with pytest.raises(NotInThisChannel, match="<#10>"):
        await make(world, elsewhere)


async def test_roles(world: World) -> None:
    await world.services.admin.edit_list(ADMIN, "allowed_roles", "add", "900")
    with pytest.raises(RoleRequired, match="<@&900>"):
        await make(world)
    await make(world, Requester("2", GUILD, "10", role_ids=("900",)))


async def test_the_blocklist_names_the_rule_never_the_words(world: World) -> None:
    rule = await world.services.admin.add_rule(ADMIN, "word", "banana")
    with pytest.raises(BlockedWords) as refused:
        await make(world, prompt="a BANANA boat")
    assert refused.value.rule_id == rule.id and "banana" not in str(refused.value).lower()
    await world.nothing_written()


async def test_an_ended_event_closes_its_channel(world: World) -> None:
    now = time.time()
    await world.store.create_event(EventRow(
        id="e1", guild_id=GUILD, name="Jam", channel_id="10", ends_at=now - 1,
        credits_per_user=10, moderation="off", created_at=now - 100))
    with pytest.raises(EventClosed, match="Jam"):
        await make(world)


async def test_review_without_a_moderators_channel_fails_closed(world: World) -> None:
    await world.store.update_guild_settings(
        GUILD, lambda s: s.changed(moderation=ReviewMode.PROMPTS))
    with pytest.raises(ReviewUnavailable):
        await make(world)
    await world.nothing_written()


async def test_review_holds_the_job_for_a_moderator(world: World) -> None:
    await world.services.admin.set_moderation(ADMIN, ReviewMode.BOTH, "99")
    made = await world.services.videos.make(MEMBER, [], text())
    assert made.review is ReviewMode.BOTH
    assert made.job.state.value == "awaiting_approval" and made.job.hold_result
    with pytest.raises(NotAllowed, match="Only moderators"):
        await world.services.videos.approve(made.job.id, MEMBER)
    approved = await world.services.videos.approve(made.job.id, ADMIN)
    assert approved.state.value == "queued"


# ---- defaults and the gateway -----------------------------------------------------------------
def test_server_defaults_fill_in_without_touching_the_callers_options() -> None:
    settings = Settings(_env_file=None, seedance_provider="anyfast", seedance_model="seedance")
    guild = GuildSettings(provider="runware", duration=8, resolution=Resolution.P720)
    asked = RequestOptions(prompt="x")
    resolved = resolve_options(asked, guild, settings)
    assert (resolved.provider, resolved.duration, resolved.resolution) == (
        "runware", 8, Resolution.P720)
    assert resolved.model is None  # SEEDANCE_MODEL belongs to anyfast, not the server's runware
    assert asked.duration is None and asked.provider == ""  # the caller's copy as given
    on_anyfast = resolve_options(RequestOptions(prompt="x", provider="anyfast"), guild, settings)
    assert on_anyfast.model == "seedance"


async def test_a_gateway_without_a_key_is_a_refusal(world: World) -> None:
    from bot.service import GatewayUnavailable

    with pytest.raises(GatewayUnavailable, match="RUNWARE_API_KEY"):
        await make(world, provider="runware")


async def test_invalid_input_is_every_problem_at_once(world: World, tmp_path: Path) -> None:
    from tests.media_factory import make_image

    tiny = make_image(tmp_path / "tiny.png", 100, 100)
    with pytest.raises(InvalidInput) as refused:
        await world.services.videos.make(
            MEMBER, [MediaInput(str(tiny), name="file1 (tiny.png)")],
            text("@image1 and @image2", duration=3))
    found = [str(p) for p in refused.value.problems]
    assert any("300–6000 px" in p for p in found) and any("@image2" in p for p in found)
    await world.nothing_written()


# ---- the per-minute rate, held in the database ------------------------------------------------
async def test_the_rate_holds_across_two_processes_on_one_database(data_dir: Path) -> None:
    """Two processes (two stores on one file) each preparing a request: the second launch is
    refused while the first still downloads, and a launch older than a minute no longer
    counts."""
    first = await Store.open(data_dir / "shared.sqlite3")
    second = await Store.open(data_dir / "shared.sqlite3")
    try:
        now = 1_000.0
        assert await first.claim_launch(GUILD, "2", per_minute=1, now=now, launch_id="a")
        assert not await second.claim_launch(GUILD, "2", per_minute=1, now=now + 1,
                                             launch_id="b")
        assert await second.claim_launch(GUILD, "3", per_minute=1, now=now + 1, launch_id="c")
        assert await second.claim_launch(GUILD, "2", per_minute=1, now=now + 61, launch_id="d")
        await first.drop_launch("a")
        await second.drop_launch("d")
        assert await first.claim_launch(GUILD, "2", per_minute=1, now=now + 62, launch_id="e")
    finally:
        await first.close()
        await second.close()


async def test_a_second_quick_request_is_refused_by_the_rate(world: World) -> None:
    await world.services.admin.set_rate_limit(ADMIN, 1)
    await make(world)
    with pytest.raises(RateLimited, match="per minute"):
        await make(world, prompt="again")
    assert len(await world.store.jobs()) == 1


# ---- settings ---------------------------------------------------------------------------------
async def test_settings_are_validated_whole_and_unknown_keys_refused(world: World) -> None:
    with pytest.raises(BadSetting, match="duration"):
        await world.services.admin.set_defaults(ADMIN, duration=3)
    with pytest.raises(ValueError, match="no server setting 'channels'"):
        GuildSettings().changed(channels=["1"])
    with pytest.raises(NotAllowed, match="Manage Server"):
        await world.services.admin.set_rate_limit(MEMBER, 5)
    with pytest.raises(BadSetting, match="moderators use"):
        await world.services.admin.set_moderation(ADMIN, ReviewMode.RESULTS, None)
    assert await world.store.guild_settings(GUILD) == GuildSettings()


async def test_limits_are_set_shown_and_reset(world: World) -> None:
    admin = world.services.admin
    changed = await admin.set_limits(ADMIN, running=6, user_queued=2)
    effective = admin.effective_limits(changed)
    assert (effective.running, effective.user_queued) == (6, 2)
    assert effective.user_running == world.engine.limits.user_running
    reset = await admin.set_limits(ADMIN, running=0)
    assert admin.effective_limits(reset).running == world.engine.limits.guild_running


async def test_refusals_are_refusals(world: World) -> None:
    """Front ends catch one type for every "no" (the CLI exits 2 on it)."""
    for cls in (Blocked, BlockedWords, EventClosed, NotInThisChannel, ReviewUnavailable,
                RoleRequired, RateLimited, BadSetting, NotAllowed):
        assert issubclass(cls, Refusal)
