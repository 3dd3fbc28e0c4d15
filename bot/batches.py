"""Work asked by many coroutines in one turn of the event loop, done together.

Two places gather work this way: SQLite's writes, one transaction for the writes of a turn
(bot/store/sqlite.py), and the task-list snapshots of creates that share one list, one
statement for all of them (bot/engine/recovery.py). `Batches` is that queue once: each
asker gets its own outcome, and nothing asked is dropped, whoever stops waiting for it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

I = TypeVar("I")  # noqa: E741 - an item asked for
R = TypeVar("R")


@dataclass(frozen=True, slots=True)
class Failed:
    """The outcome of one item that failed alone (the others of its batch may not have)."""

    error: Exception


class Batches(Generic[I, R]):
    """`ask(item)` queues `item` and waits for its outcome. A task runs `run` on what is
    queued (at most `most` items a call) from the next turn of the loop on, until nothing is
    left; items asked meanwhile go in the next call.

    `run` returns one outcome per item, in order: a result, or `Failed` for that item alone.
    If `run` raises, every item of that call fails with the error. If the task is stopped
    (cancelled), so is every item still queued. An asker that is cancelled does not take its
    item back: it is done anyway, as a single write given up on would be.
    """

    def __init__(self, run: Callable[[list[I]], Awaitable[Sequence[R | Failed]]], *,
                 most: int | None = None) -> None:
        self._run = run
        self._most = most
        self._queue: list[tuple[I, asyncio.Future[R]]] = []
        self._task: asyncio.Task[None] | None = None

    async def ask(self, item: I) -> R:
        loop = asyncio.get_running_loop()
        done: asyncio.Future[R] = loop.create_future()
        self._queue.append((item, done))
        if self._task is None or self._task.done():
            self._task = loop.create_task(self._drain())
        return await asyncio.shield(done)

    async def idle(self) -> None:
        """Return once everything asked so far has its outcome."""
        if self._task is not None:
            await asyncio.wait((self._task,))

    async def _drain(self) -> None:
        while self._queue:
            cut = len(self._queue) if self._most is None else self._most
            batch, self._queue = self._queue[:cut], self._queue[cut:]
            try:
                outcomes: Sequence[R | Failed] = await self._run([item for item, _ in batch])
            except Exception as exc:
                outcomes = [Failed(exc)] * len(batch)
            except BaseException:
                for _, done in (*batch, *self._queue):
                    done.cancel()
                self._queue = []
                raise
            for (_, done), outcome in zip(batch, outcomes, strict=True):
                if done.done():
                    continue
                if isinstance(outcome, Failed):
                    done.set_exception(outcome.error)
                else:
                    done.set_result(outcome)


__all__ = ["Batches", "Failed"]
