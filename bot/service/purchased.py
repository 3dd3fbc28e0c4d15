"""Spending purchased credits (bot/service/premium.py) when the free quota runs out.

Spend order: the free daily/monthly quota first; when a video does not fit in it, the whole
video is paid from purchased credits, if they cover it. The spend is written (keyed by the job
id) before the job, which is then admitted without the credit windows; a job that is not
written gives the credits back at once, and one that releases credits later (fails, is
cancelled or rejected) or was never written after a crash gets them back from
`Store.settle_purchased` (run by the premium cog on start and periodically).

The ledger books the job as usual, but its day rows (what the quota windows count) leave it
out: paid credits use neither the member's free credits nor the server's monthly pool.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from bot.engine import Engine, QuotaExceeded
from bot.models import GenerationRequest
from bot.store import JobView
from bot.store.premium import PAID_KEY as PURCHASED_KEY


async def enqueue_paying(engine: Engine, request: GenerationRequest, *, user_id: str,
                         enforce_quota: bool, job_id: str | None,
                         context: dict[str, Any] | None, **kw: Any) -> JobView:
    """`Engine.enqueue`, paying from purchased credits what the free quota refuses (not an
    event's own limit, which purchases do not lift)."""
    try:
        return await engine.enqueue(request, user_id=user_id, enforce_quota=enforce_quota,
                                    job_id=job_id, context=context, **kw)
    except QuotaExceeded as exc:
        if not enforce_quota or exc.window.name == "event":
            raise
        needed, store = exc.needed, engine.store
        new_id = job_id or str(uuid.uuid4())
        if not await store.spend_purchased(str(user_id), new_id, needed, now=time.time()):
            raise
    try:
        return await engine.enqueue(
            request, user_id=user_id, enforce_quota=False, job_id=new_id,
            context={**(context or {}), PURCHASED_KEY: needed}, **kw)
    except BaseException:
        await store.return_purchased(new_id, needed, now=time.time())
        raise


__all__ = ["PURCHASED_KEY", "enqueue_paying"]
