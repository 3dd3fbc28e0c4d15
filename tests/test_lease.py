"""The lease on a real SQLite file shared by two connections, as two bot processes would."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.lease import Lease, LeaseHeld, pid_alive
from bot.store import Store


@pytest.fixture
async def stores(tmp_path: Path) -> AsyncIterator[tuple[Store, Store]]:
    a = await Store.open(tmp_path / "seedance.sqlite3")
    b = await Store.open(tmp_path / "seedance.sqlite3")
    yield a, b
    await a.close()
    await b.close()


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t

    async def sleep(self, seconds: float) -> None:
        self.t += seconds
        await asyncio.sleep(0)


def lease(store: Store, clock: Clock, *, pid: int, host: str = "h",
          alive: set[int] | None = None) -> Lease:
    living = alive if alive is not None else {1, 2, 3}
    return Lease(store, ttl=30, host=host, pid=pid, alive=lambda p: p in living, clock=clock,
                 sleep=clock.sleep)


async def test_a_live_holder_keeps_it_and_the_second_stops_clearly(
        stores: tuple[Store, Store]) -> None:
    clock = Clock()
    first, second = lease(stores[0], clock, pid=1), lease(stores[1], clock, pid=2)
    await first.acquire()
    with pytest.raises(LeaseHeld) as caught:
        await second.acquire(wait=5)
    assert "SEEDANCE_DATA_DIR" in str(caught.value) and first.owner in str(caught.value)
    assert await first.renew()


async def test_a_killed_holder_is_replaced_at_once_on_the_same_host(
        stores: tuple[Store, Store]) -> None:
    clock = Clock()
    living = {1, 2}
    first = lease(stores[0], clock, pid=1, alive=living)
    await first.acquire()
    living.discard(1)  # SIGKILL
    second = lease(stores[1], clock, pid=2, alive=living)
    await second.acquire(wait=0)
    assert clock.t == 1000.0  # no waiting for the ttl
    assert not await first.renew()  # the old owner, if it were somehow alive, would stop


async def test_our_own_pid_from_a_previous_life_is_dead(stores: tuple[Store, Store]) -> None:
    clock = Clock()
    await lease(stores[0], clock, pid=1).acquire()
    await lease(stores[1], clock, pid=1).acquire(wait=0)  # container restarted: pid 1 again


async def test_another_hosts_lease_lapses_after_its_ttl(stores: tuple[Store, Store]) -> None:
    clock = Clock()
    await lease(stores[0], clock, pid=1, host="other").acquire()
    second = lease(stores[1], clock, pid=2)
    await second.acquire()  # waits (on the fake clock) until the other host's lease expires
    assert 1030.0 <= clock.t <= 1032.0
    holder = await stores[0].lease_holder("engine")
    assert holder is not None and holder[0] == second.owner


async def test_keep_renews_and_reports_a_lost_lease(stores: tuple[Store, Store]) -> None:
    clock = Clock()
    first = lease(stores[0], clock, pid=1, alive={1, 2})
    await first.acquire()
    lost = asyncio.Event()

    async def on_lost() -> None:
        lost.set()

    keeper = asyncio.create_task(first.keep(on_lost))
    for _ in range(5):
        await asyncio.sleep(0.01)
    assert not lost.is_set()
    await stores[1].take_lease("engine", "thief", until=clock.t + 1e6, now=clock.t + 1e5)
    await asyncio.wait_for(keeper, 5)
    assert lost.is_set()
    await first.release()  # not ours any more: the thief keeps it
    assert (await stores[0].lease_holder("engine"))[0] == "thief"  # type: ignore[index]


def test_pid_alive() -> None:
    import os
    assert pid_alive(os.getpid())
    assert not pid_alive(2**22 + 12345)


async def test_a_live_holder_on_this_host_is_refused_at_once(
        stores: tuple[Store, Store]) -> None:
    """Its pid runs here, so waiting for the ttl could not change the answer."""
    clock = Clock()
    first, second = lease(stores[0], clock, pid=1), lease(stores[1], clock, pid=2)
    await first.acquire()
    with pytest.raises(LeaseHeld) as caught:
        await second.acquire()  # the default wait is a whole ttl
    assert clock.t == 1000.0
    assert first.owner in str(caught.value)


async def test_waiting_for_another_hosts_lease_is_said_once(
        stores: tuple[Store, Store], caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    other = lease(stores[0], clock, pid=1, host="other")
    await other.acquire()
    with caplog.at_level(logging.WARNING, logger="bot.lease"):
        await lease(stores[1], clock, pid=2).acquire()
    waits = [r.getMessage() for r in caplog.records if "waiting up to" in r.getMessage()]
    assert len(waits) == 1
    assert other.owner in waits[0] and "31 s" in waits[0]
