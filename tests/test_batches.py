"""bot/batches.py: what is asked in one turn goes in one call, each asker gets its own
outcome, and nothing asked is dropped or left waiting."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from bot.batches import Batches, Failed


class Recorder:
    def __init__(self, *, fail_on: int | None = None, raise_once: bool = False) -> None:
        self.calls: list[list[int]] = []
        self.fail_on = fail_on
        self.raise_once = raise_once
        self.gate: asyncio.Event | None = None
        self.called = asyncio.Event()

    async def run(self, items: list[int]) -> Sequence[int | Failed]:
        self.calls.append(items)
        self.called.set()
        if self.gate is not None:
            await self.gate.wait()
        if self.raise_once:
            self.raise_once = False
            raise OSError("the whole call failed")
        return [Failed(ValueError(n)) if n == self.fail_on else n * 10 for n in items]


async def test_one_call_for_a_turn_and_each_asker_its_own_outcome() -> None:
    rec = Recorder(fail_on=2)
    batches: Batches[int, int] = Batches(rec.run)
    outcomes = await asyncio.gather(*(batches.ask(n) for n in range(4)), return_exceptions=True)
    assert rec.calls == [[0, 1, 2, 3]]
    assert outcomes[:2] == [0, 10] and outcomes[3] == 30
    assert isinstance(outcomes[2], ValueError)


async def test_a_call_that_raises_fails_its_items_and_the_next_call_still_runs() -> None:
    rec = Recorder(raise_once=True)
    batches: Batches[int, int] = Batches(rec.run)
    first = await asyncio.gather(batches.ask(1), batches.ask(2), return_exceptions=True)
    assert all(isinstance(o, OSError) for o in first)
    assert await batches.ask(3) == 30


async def test_items_asked_during_a_call_and_past_most_go_in_the_next_calls() -> None:
    rec = Recorder()
    rec.gate = asyncio.Event()
    batches: Batches[int, int] = Batches(rec.run, most=2)
    early = [asyncio.ensure_future(batches.ask(n)) for n in range(3)]
    await rec.called.wait()
    late = asyncio.ensure_future(batches.ask(3))
    await asyncio.sleep(0)
    rec.gate.set()
    assert await asyncio.gather(*early, late) == [0, 10, 20, 30]
    assert rec.calls == [[0, 1], [2, 3]]


async def test_a_cancelled_asker_still_has_its_item_done() -> None:
    rec = Recorder()
    batches: Batches[int, int] = Batches(rec.run)
    asker = asyncio.ensure_future(batches.ask(7))
    await asyncio.sleep(0)
    asker.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asker
    await batches.idle()
    assert rec.calls == [[7]]


async def test_a_stopped_call_stops_its_items_and_those_queued_behind_it() -> None:
    rec = Recorder()
    rec.gate = asyncio.Event()  # never set: the call hangs until stopped
    batches: Batches[int, int] = Batches(rec.run, most=1)
    asked = [asyncio.ensure_future(batches.ask(n)) for n in range(3)]
    await rec.called.wait()
    assert batches._task is not None
    batches._task.cancel()
    async with asyncio.timeout(5):  # a hang guard, not a timing assertion
        ended = await asyncio.gather(*asked, return_exceptions=True)
    assert all(isinstance(e, asyncio.CancelledError) for e in ended)
    assert rec.calls == [[0]]
