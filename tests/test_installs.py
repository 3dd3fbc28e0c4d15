"""User installs below Discord: the follow-up claims and a person's jobs in the store (both
backends), and the rules a personal job meets (bot/service/gate.py) and `/my-videos`'s service
(bot/service/my_videos.py). The Discord side is tests/e2e/test_installs_e2e.py."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest

from bot.config import Settings
from bot.engine import QuotaExceeded
from bot.engine.quota import QuotaWindow
from bot.guild import ReviewMode
from bot.i18n import say
from bot.models import GenerationRequest
from bot.service import DM_GUILD, Blocked, BlockedWords, Fetch, Requester, ReviewedServer
from bot.store import JobState, NewJob, Store
from cogs.utils.premium import premium_view
from tests.test_service import ADMIN, GUILD, World, make, running_world


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[Store]:
    s = await Store.open(store_url)
    yield s
    await s.close()


async def add_job(store: Store, user: str = "u1", prompt: str = "a fox") -> str:
    job_id = str(uuid.uuid4())
    refused = await store.create_job(NewJob(
        id=job_id, guild_id=DM_GUILD, channel_id="c", user_id=user, role_ids=(),
        request=GenerationRequest(prompt=prompt, duration=5), provider="local", model=None,
        state=JobState.QUEUED, credits_estimate=5, context={"personal": True, "keep": 1}),
        [], now=time.time())
    assert refused is None
    return job_id


# ---- the store --------------------------------------------------------------------------------
async def test_follow_ups_are_claimed_once_each_and_never_past_the_limit(store: Store) -> None:
    job = await add_job(store)
    now = time.time()
    assert await store.claim_followup(job, "result", limit=2, now=now)
    assert not await store.claim_followup(job, "result", limit=2, now=now)  # sent (maybe)
    assert await store.claim_followup(job, "note", limit=2, now=now)
    assert not await store.claim_followup(job, "other", limit=2, now=now)  # the limit
    assert not await store.claim_followup(str(uuid.uuid4()), "result", limit=2, now=now)
    row = await store.get_job(job)
    assert row is not None
    assert row.context["followups"] == 2 and row.context["followups_sent"] == ["result", "note"]
    assert row.context["personal"] is True and row.context["keep"] == 1  # the rest kept


async def test_merging_the_context_keeps_its_other_keys(store: Store) -> None:
    job = await add_job(store)
    await store.claim_followup(job, "result", limit=5, now=time.time())
    await store.merge_context(job, {"dm_closed": True}, now=time.time())
    row = await store.get_job(job)
    assert row is not None and row.context["dm_closed"] is True
    assert row.context["followups"] == 1 and row.context["keep"] == 1


async def test_a_persons_jobs_newest_first_in_pages_and_by_id(store: Store) -> None:
    ids = [await add_job(store, prompt=f"p{i}") for i in range(3)]
    other = await add_job(store, user="u2")
    first = await store.user_jobs("u1", limit=2)
    second = await store.user_jobs("u1", limit=2, offset=2)
    assert [j.id for j in first + second] == ids[::-1]
    found = await store.user_job("u1", ids[1][:8])
    assert found is not None and found.id == ids[1]
    assert await store.user_job("u1", other[:8]) is None  # another person's job
    assert await store.user_job("u1", "%") is None  # no wildcard smuggled in


# ---- the rules a personal job meets -----------------------------------------------------------
@pytest.fixture
async def world(data_dir: Path) -> AsyncIterator[World]:
    async with running_world(data_dir) as w:
        yield w


#: A user install used in the server GUILD, which has the bot.
THERE = Requester("2", DM_GUILD, "10", rules_guild_id=GUILD)
#: A user install used in a DM, or a server without the bot.
AWAY = Requester("2", DM_GUILD, "99")


async def test_a_personal_job_spends_the_users_own_credits(world: World) -> None:
    await make(world, AWAY)
    [job] = await world.store.jobs()
    assert job.guild_id == DM_GUILD  # the personal scope, not a server's
    status = await world.services.videos.quota(AWAY)
    user = status.window("user")
    assert user is not None and user.used == job.credits_estimate
    pool = status.window("guild")
    assert pool is not None and pool.describe().startswith("the shared personal-use monthly")
    server = await world.services.videos.quota(Requester("2", GUILD, "10"))
    assert (w := server.window("user")) is not None and w.used == 0  # not the server's


async def test_the_personal_pool_has_its_own_size_when_the_operator_sets_one(
        data_dir: Path) -> None:
    """SEEDANCE_PERSONAL_MONTHLY_CREDITS sizes what user installs spend together; a server's
    pool keeps SEEDANCE_GUILD_MONTHLY_CREDITS."""
    async with running_world(data_dir, seedance_personal_monthly_credits=6,
                             seedance_guild_monthly_credits=3000) as w:
        pool = (await w.services.videos.quota(AWAY)).window("guild")
        assert pool is not None and pool.limit == 6
        server = (await w.services.videos.quota(Requester("2", GUILD, "10"))).window("guild")
        assert server is not None and server.limit == 3000
        await make(w, AWAY)
        [job] = await w.store.jobs()
        assert job.credits_estimate > 6 // 2  # so a second video can't fit in the pool
        with pytest.raises(QuotaExceeded):
            await make(w, Requester("3", DM_GUILD, "98"))  # another person, same pool


async def test_the_servers_rules_hold_for_a_personal_job_asked_there(world: World) -> None:
    await world.services.admin.add_rule(ADMIN, "word", "banana")
    with pytest.raises(BlockedWords):
        await make(world, THERE, prompt="a banana boat")
    await make(world, AWAY, prompt="a banana boat")  # not in that server: its rules don't
    await world.services.admin.block(ADMIN, "2", "spam")
    with pytest.raises(Blocked, match="spam"):
        await make(world, THERE)
    await world.services.admin.edit_list(ADMIN, "allowed_channels", "add", "11")
    with pytest.raises(Exception, match="<#11>"):
        await make(world, Requester("3", DM_GUILD, "10", rules_guild_id=GUILD))


async def test_a_reviewing_server_refuses_personal_jobs(world: World) -> None:
    await world.store.update_guild_settings(
        GUILD, lambda s: s.changed(moderation=ReviewMode.PROMPTS, mod_channel="77"))
    with pytest.raises(ReviewedServer, match="DM with the app") as refused:
        await make(world, THERE)
    assert await world.store.jobs() == []
    assert "アプリとのDM" in say(refused.value, "ja")  # in the reader's language


async def test_my_videos_pages_and_fetches_only_ones_own(world: World) -> None:
    for i in range(12):
        await add_job(world.store, "2", prompt=f"clip {i}")
    await add_job(world.store, "5", prompt="someone else")
    mine = world.services.my_videos
    first, second = await mine.page("2", 1), await mine.page("2", 2)
    assert len(first.jobs) == 10 and first.more and len(second.jobs) == 2 and not second.more
    assert first.jobs[0].request.prompt == "clip 11"
    assert (await mine.page("2", 3)).jobs == ()
    other = (await mine.page("5")).jobs[0]
    assert (await mine.fetch("2", other.id[:8])).outcome is Fetch.UNKNOWN
    waiting = await mine.fetch("2", first.jobs[0].id[:8])
    assert waiting.outcome is Fetch.NOT_READY and waiting.job is not None
    assert (await mine.fetch("2", "ab")).outcome is Fetch.UNKNOWN  # too short to name one


async def test_an_empty_personal_pool_offers_purchases_not_a_server_subscription() -> None:
    settings = Settings(_env_file=None,
                        seedance_skus="123=consumable:100,456=guild_subscription:3000/month")
    pool = QuotaWindow("guild", "month", 3000, 3000, None, personal=True)
    view = premium_view(settings, QuotaExceeded(pool, 4))
    assert view is not None and [getattr(b, "sku_id", None) for b in view.children] == [123]
    server = premium_view(settings, QuotaExceeded(replace(pool, personal=False), 4))
    assert server is not None and [getattr(b, "sku_id", None) for b in server.children] == [456]
