"""Result sets and flagged results: what a job that asked for several videos is charged, and
what becomes of a video the gateway's own safety check flagged.

A request may ask one task for several videos (`GenerationRequest.results`, where the
gateway's capability table allows, e.g. Runware's numberResults). Its reservation covers every
video asked for (bot/pricing.py); when it is charged, only the videos that came are: the rest
is released in the same settlement (bot/store/ledger.py `settle`). That is the principle of
bot/engine/refunds.py per video: the requester pays for a video that was made and could have
been theirs, never for one the gateway did not make or that we refused to show.

A video flagged by the gateway's safety check (`ProviderResult.flagged`, kept as indexes in the
job's `result_meta["flagged"]`) is never posted as it is: with a moderators' channel the whole
set waits for a moderator (HELD, the review queue of bot/moderation.py); without one, the
flagged videos are dropped before download and refunded, and a set with nothing left fails
(`Outcome.FLAGGED`, released).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from bot.store import JobView

#: The job's context says where a flagged result goes: "review" (the server has a moderators'
#: channel, written by bot/service/videos.py when the job is made), anything else: refused.
FLAGGED_KEY = "flagged"
FLAGGED_TO_REVIEW = "review"


def set_charge(job: JobView, meta: Mapping[str, Any] | None = None) -> int | None:
    """Credits to charge for `job` when its reservation is committed: its share for the videos
    the gateway gave (`meta`'s result URLs, the job's own by default) when fewer came than were
    asked for; None: the whole reservation (one video asked, all came, or none is known, e.g.
    a task we lost sight of, which the gateway bills whole)."""
    asked = max(1, job.request.results)
    made = len((meta if meta is not None else job.result_meta).get("video_urls") or [])
    if asked <= 1 or made == 0 or made >= asked:
        return None
    return job.credits_estimate * made // asked


def flagged_of(meta: Mapping[str, Any]) -> list[int]:
    """Indexes of the result URLs the gateway's safety check flagged."""
    urls = meta.get("video_urls") or []
    return sorted({int(i) for i in meta.get("flagged") or [] if 0 <= int(i) < len(urls)})


def reviews_flagged(job: JobView) -> bool:
    """Whether a flagged result of `job` goes to the moderators (else it is refused)."""
    return job.context.get(FLAGGED_KEY) == FLAGGED_TO_REVIEW


def without_flagged(meta: Mapping[str, Any]) -> dict[str, Any]:
    """`meta` with the flagged videos taken out (they are neither fetched nor charged)."""
    drop = set(flagged_of(meta))
    urls = [u for i, u in enumerate(meta.get("video_urls") or []) if i not in drop]
    return {**meta, "video_urls": urls, "flagged": [], "refused_flagged": len(drop)}


__all__ = ["FLAGGED_KEY", "FLAGGED_TO_REVIEW", "flagged_of", "reviews_flagged", "set_charge",
           "without_flagged"]
