"""bot/store/postgres.py: named locks make transactions take turns whatever the
name (ours go into the SQL as literals, others as a parameter), and a failed body leaves
nothing behind."""

from __future__ import annotations

import asyncio

import pytest

from bot.store.postgres import PostgresDatabase


@pytest.mark.parametrize("name", ["seedance:admit:42", "it's odd'); SELECT 1; --"])
async def test_transactions_with_one_lock_take_turns(postgres_url: str, name: str) -> None:
    db = await PostgresDatabase.connect(postgres_url)
    order: list[str] = []

    async def hold(tag: str) -> None:
        async with db.transaction(lock=name) as tx:
            order.append(f"{tag}+")
            await tx.fetchval("SELECT pg_sleep(0.05)")
            order.append(f"{tag}-")

    try:
        await asyncio.gather(hold("a"), hold("b"), hold("c"))
    finally:
        await db.close()
    pairs = [order[i:i + 2] for i in range(0, len(order), 2)]
    assert all(p[0][0] == p[1][0] and p[0].endswith("+") for p in pairs), order


async def test_a_failed_body_rolls_back_and_the_connection_stays_usable(
        postgres_url: str) -> None:
    db = await PostgresDatabase.connect(postgres_url, max_size=1)
    try:
        async with db.transaction() as tx:
            await tx.execute("CREATE TABLE t (n INTEGER)")
        with pytest.raises(ZeroDivisionError):
            async with db.transaction(lock="seedance:test") as tx:
                await tx.execute("INSERT INTO t VALUES (1)")
                raise ZeroDivisionError
        async with db.transaction(lock="seedance:test") as tx:
            await tx.execute("INSERT INTO t VALUES (2)")
        assert [r["n"] for r in await db.fetch("SELECT n FROM t")] == [2]
    finally:
        await db.close()
