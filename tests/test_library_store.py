"""The server library's tables on both backends (`store_url`): names unique per server whatever
the case, limits checked in the same transaction as the write, bytes kept while an unfinished
job uses them, the 'registering' rows of gateway assets, and a member's items forgotten."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import replace

import pytest

from bot.store import JobState, Store
from bot.store.library import LibraryFull, LibraryItem
from tests.test_store import new_job

BIG = 10**9


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[Store]:
    s = await Store.open(store_url)
    yield s
    await s.close()


def item(name: str = "hero", *, guild: str = "g1", owner: str = "u1", size: int = 100,
         state: str = "ready") -> LibraryItem:
    return LibraryItem(
        id=uuid.uuid4().hex, guild_id=guild, name=name, kind="image", format="png", size=size,
        seconds=None, width=800, height=450, description="our hero", owner_id=owner,
        blob_id=uuid.uuid4().hex, state=state, uses=0, decided_by=None, created_at=5.0,
        has_thumb=True)


async def test_items_round_trip_with_their_bytes_and_preview(store: Store) -> None:
    hero = item()
    data = bytes(range(256)) * 4  # every byte value survives
    written = await store.add_library_item(hero, data, b"\x89PNG-thumb", max_items=5,
                                           max_bytes=BIG)
    assert written == hero
    found = await store.library_item("g1", "HERO")  # any case
    assert found == hero
    assert await store.library_blob(hero.blob_id) == data
    assert await store.library_thumb(hero.id) == b"\x89PNG-thumb"
    assert await store.library_items("g1") == [hero]
    assert await store.library_items("g2") == []
    assert await store.library_item("g2", "hero") is None
    assert await store.library_usage("g1") == (1, 100)


async def test_names_clash_whatever_the_case_and_limits_are_counted(store: Store) -> None:
    assert isinstance(await store.add_library_item(item("Hero"), b"x", None, max_items=2,
                                                   max_bytes=250), LibraryItem)
    clash = await store.add_library_item(item("hERO"), b"x", None, max_items=2, max_bytes=250)
    assert clash == LibraryFull("exists", 1, 100)
    # The same name on another server is another item.
    assert isinstance(await store.add_library_item(item("hero", guild="g2"), b"x", None,
                                                   max_items=2, max_bytes=250), LibraryItem)
    too_big = await store.add_library_item(item("castle", size=151), b"x", None, max_items=2,
                                           max_bytes=250)
    assert too_big == LibraryFull("bytes", 1, 100)
    assert isinstance(await store.add_library_item(item("castle", size=150), b"x", None,
                                                   max_items=2, max_bytes=250), LibraryItem)
    full = await store.add_library_item(item("dog", size=1), b"x", None, max_items=2,
                                        max_bytes=BIG)
    assert full == LibraryFull("count", 2, 250)
    assert [i.name for i in await store.library_items("g1")] == ["castle", "Hero"]


async def test_two_adds_at_once_never_pass_the_limit_together(store_url: str) -> None:
    """Each add checks and writes in one transaction under the server's lock: with room for
    one more item, two processes adding at once get one item and one refusal."""
    first, second = await Store.open(store_url), await Store.open(store_url)
    try:
        await first.add_library_item(item("a"), b"x", None, max_items=2, max_bytes=BIG)
        results = await asyncio.gather(
            first.add_library_item(item("b"), b"x", None, max_items=2, max_bytes=BIG),
            second.add_library_item(item("c"), b"x", None, max_items=2, max_bytes=BIG))
        assert sorted(type(r).__name__ for r in results) == ["LibraryFull", "LibraryItem"]
        assert (await first.library_usage("g1"))[0] == 2
    finally:
        await first.close()
        await second.close()


async def test_a_removed_items_bytes_stay_while_an_unfinished_job_uses_them(store: Store
                                                                            ) -> None:
    hero, other = item(), item("other")
    for it in (hero, other):
        await store.add_library_item(it, b"hero-bytes", None, max_items=5, max_bytes=BIG)
    job = new_job()
    assert await store.create_job(job, [], now=10.0) is None
    await store.use_library_items(job.id, [(hero.id, hero.blob_id, "/data/cache/library-1")])
    await store.use_library_items(job.id, [(hero.id, hero.blob_id, "/data/cache/library-1")])
    assert (await store.library_item("g1", "hero")) == replace(hero, uses=2, has_thumb=False)
    assert await store.job_library(job.id) == [(hero.blob_id, "/data/cache/library-1")]

    assert await store.remove_library_item(hero.id)
    assert await store.library_item("g1", "hero") is None
    assert await store.library_blob(hero.blob_id) == b"hero-bytes"  # the queued job's copy
    assert await store.remove_library_item(other.id)
    assert await store.library_blob(other.blob_id) is None  # nobody uses it: gone at once
    assert not await store.remove_library_item(hero.id)  # removed already

    await store.transition(job.id, JobState.CANCELLED, now=11.0, from_states=[JobState.QUEUED])
    assert await store.sweep_library_blobs() == 1
    assert await store.library_blob(hero.blob_id) is None
    assert await store.job_library(job.id) == []


async def test_pending_items_are_approved_once(store: Store) -> None:
    waiting = item(state="pending")
    await store.add_library_item(waiting, b"x", None, max_items=5, max_bytes=BIG)
    found = await store.library_item("g1", "hero")
    assert found is not None and found.pending
    assert await store.approve_library_item(waiting.id, "mod")
    assert not await store.approve_library_item(waiting.id, "mod2")
    approved = await store.library_item("g1", "hero")
    assert approved is not None and approved.state == "ready" and approved.decided_by == "mod"


async def test_asset_rows_are_written_before_the_call_and_taken_once(store: Store) -> None:
    hero = item()
    await store.add_library_item(hero, b"x", None, max_items=5, max_bytes=BIG)
    assert await store.begin_library_group("g1", "anyfast") == ("mine", None)
    # While the first caller creates the group, a second one waits rather than making another.
    assert await store.begin_library_group("g1", "anyfast") == ("busy", None)
    await store.end_library_group("g1", "anyfast", "group-1")
    assert await store.begin_library_group("g1", "anyfast") == ("ready", "group-1")
    assert await store.begin_library_group("g2", "anyfast") == ("mine", None)
    await store.end_library_group("g2", "anyfast", None)  # its creation failed: the row goes
    assert await store.begin_library_group("g2", "anyfast") == ("mine", None)

    assert await store.begin_library_asset(hero.id, "anyfast")
    assert not await store.begin_library_asset(hero.id, "anyfast")  # never registered twice
    assert await store.library_assets([hero.id], "anyfast") == {}  # registering: not usable
    await store.end_library_asset(hero.id, "anyfast", "asset-7")
    assert await store.library_assets([hero.id, "nope"], "anyfast") == {hero.id: "asset-7"}
    assert await store.library_assets([hero.id], "runware") == {}
    assert await store.library_assets([], "anyfast") == {}
    # A refused registration leaves no row, so the item is sent as a file.
    other = item("other")
    await store.add_library_item(other, b"x", None, max_items=5, max_bytes=BIG)
    assert await store.begin_library_asset(other.id, "anyfast")
    await store.end_library_asset(other.id, "anyfast", None)
    assert await store.begin_library_asset(other.id, "anyfast")
    # Removing an item removes its asset rows.
    assert await store.remove_library_item(hero.id)
    assert await store.library_assets([hero.id], "anyfast") == {}


async def test_a_members_items_are_forgotten_on_every_server(store: Store) -> None:
    mine = [item("a"), item("b", guild="g2")]
    theirs = item("c", owner="u2")
    for it in (*mine, theirs):
        await store.add_library_item(it, b"x", None, max_items=5, max_bytes=BIG)
    assert [i.name for i in await store.library_items_of("u1")] == ["a", "b"]
    assert await store.forget_library_items("u1") == 2
    assert await store.library_items_of("u1") == []
    assert [i.name for i in await store.library_items("g1")] == ["c"]
    assert [await store.library_blob(i.blob_id) for i in mine] == [None, None]
    assert await store.library_blob(theirs.blob_id) == b"x"
