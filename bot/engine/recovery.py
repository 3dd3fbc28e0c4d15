"""Finding a task whose create answer was lost, on gateways that list their tasks.

A gateway without an idempotency key (Magnific) may make a task and then lose its answer (a
read timeout, a dropped connection, a 5xx after the work was taken, a restart between sending
and reading). Sending again could bill twice, so such a job used to fail with its credits
returned while the gateway went on making (and billing) the video. Where the capability table
says `task_list`, the runner asks this module instead:

1. `snapshot`, before the create is sent: the ids the gateway lists now (creates asking at
   once share one list, and one write), written to the job's row (a restart between this
   and the create finds them there).
2. `find`, after a create that may have made a task: the list again. The task is adopted only
   when exactly one listed task is new since the snapshot, no other job has it, and no other
   create to that gateway that could have made it is on its way (another job in SUBMITTING
   past its own snapshot, which did not list the task). Anything less certain is not adopted:
   the job fails as before, credits returned.

The list shows no prompt or key to match on (docs/GATEWAYS.md#magnific), hence these rules.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import replace
from typing import Any, cast

from bot.batches import Batches
from bot.errors import GatewayError, GatewayUnavailableError
from bot.models import TaskState
from bot.providers.base import Provider, TaskLister
from bot.store import JobView, Store

log = logging.getLogger(__name__)

Clock = Callable[[], float]

#: Where the snapshot lives in the job's `result_meta` (replaced once results exist).
LISTED_BEFORE = "listed_before"


def lists_tasks(provider: Provider, model: str | None) -> bool:
    """The provider's table says it lists its tasks (and it has the method to)."""
    return provider.capabilities(model).task_list and isinstance(provider, TaskLister)


def may_have_created(error: GatewayError) -> bool:
    """A create failure that does not prove the gateway made no task: no (readable) answer or
    a server error. A 4xx refusal (bad request, key, balance, 429) made none."""
    return isinstance(error, GatewayUnavailableError) or (error.status or 0) >= 500


class TaskRecovery:
    """`snapshot` before a create, `find` after one whose answer was lost."""

    def __init__(self, store: Store, clock: Clock) -> None:
        self._store = store
        self._clock = clock
        self._listing: dict[str, asyncio.Task[list[str]]] = {}
        self._snapshots: Batches[tuple[str, dict[str, Any]], None] = Batches(
            self._write_snapshots)

    async def snapshot(self, job: JobView, provider: Provider) -> JobView:
        """Write the ids the gateway lists now; the job as written. A list that cannot be read
        leaves no snapshot (the create is still sent; only its recovery is given up)."""
        meta = {k: v for k, v in job.result_meta.items() if k != LISTED_BEFORE}
        try:
            listed = await self._listed_now(job.provider, cast(TaskLister, provider))
        except GatewayError as exc:
            log.info("job %s: %s task list unreadable before the create (%s); a lost answer "
                     "will not be recoverable", job.id, job.provider, exc)
            meta[LISTED_BEFORE] = None  # still marks "the create may be sent from here on"
        else:
            meta[LISTED_BEFORE] = listed
        await self._snapshots.ask((job.id, meta))  # in the row before the create
        return replace(job, result_meta=meta)

    async def _write_snapshots(self, items: list[tuple[str, dict[str, Any]]]) -> list[None]:
        """The creates that shared one list wake together, so their snapshots go in one
        statement (`Store.update_result_meta`), not one each (bot/batches.py)."""
        await self._store.update_result_meta(dict(items), now=self._clock())
        return [None] * len(items)

    async def _listed_now(self, name: str, lister: TaskLister) -> list[str]:
        """The ids `name` lists, shared by the creates that ask while one list is being read:
        that list is read before any of their creates is sent, which is all a snapshot must
        be, so a burst of creates (an event's entries) costs one list instead of one each."""
        pending = self._listing.get(name)
        if pending is None or pending.done():
            pending = asyncio.ensure_future(lister.list_task_ids())
            # Read its outcome even if every create waiting for it was cancelled.
            pending.add_done_callback(lambda t: t.cancelled() or t.exception())
            self._listing[name] = pending
        return list(await asyncio.shield(pending))

    async def find(self, job: JobView, provider: Provider) -> TaskState | None:
        """The job's task if the list proves which one it is (see the module docstring)."""
        current = await self._store.get_job(job.id) or job
        before = current.result_meta.get(LISTED_BEFORE)
        if not isinstance(before, list):
            return None
        try:
            listed = await cast(TaskLister, provider).list_tasks()
        except GatewayError as exc:
            log.warning("job %s: %s task list unreadable (%s); the task is not recovered",
                        job.id, job.provider, exc)
            return None
        seen = set(before)
        new = [t for t in listed if t.task_id not in seen]
        owners = await self._store.task_owners(job.provider, [t.task_id for t in new])
        free = [t for t in new if owners.get(t.task_id, job.id) == job.id]
        others = [j.id for j in await self._store.submitting_at(job.provider)
                  if j.id != job.id and _may_have_made(j, free)]
        if len(free) != 1 or others:
            log.warning("job %s: %d new unclaimed task(s) at %s and %d other create(s) on their "
                        "way; not adopting any", job.id, len(free), job.provider, len(others))
            return None
        log.info("job %s: task %s recovered from %s's task list", job.id, free[0].task_id,
                 job.provider)
        return free[0]



def _may_have_made(other: JobView, candidates: list[TaskState]) -> bool:
    """Could `other`'s create (on its way) have made one of `candidates`? Not before its
    snapshot (it sends nothing until then), nor a task its snapshot already listed."""
    if LISTED_BEFORE not in other.result_meta:
        return False
    listed = other.result_meta[LISTED_BEFORE]
    if not isinstance(listed, list):
        return True
    return any(t.task_id not in listed for t in candidates)
