"""`/my-videos`: a person's own jobs, newest first, and the video of one of them again.

It is where a personal job (the app installed to the user) ends up when its video could not be
shown anywhere: the interaction's token died and the user's DMs are closed
(cogs/utils/installs.py). It lists every job of the person, in any server or DM, and only
theirs: the list and the file go to them privately.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from pathlib import Path

from bot.config import Settings
from bot.engine.results import job_result
from bot.store import JobState, JobView, Store

#: Jobs per page: one message of lines well within Discord's 2,000 characters.
PAGE_SIZE = 10


@dataclass(frozen=True)
class VideoPage:
    """One page of a person's jobs; `more`: a next page exists."""

    page: int
    jobs: tuple[JobView, ...]
    more: bool


class Fetch(enum.Enum):
    UNKNOWN = "unknown"  # no job of theirs has that id
    NOT_READY = "not_ready"  # no video (yet, or ever)
    GONE = "gone"  # made, but its files were cleaned up
    READY = "ready"


@dataclass(frozen=True)
class Fetched:
    outcome: Fetch
    job: JobView | None = None
    paths: tuple[Path, ...] = ()


class MyVideosService:
    def __init__(self, settings: Settings, store: Store) -> None:
        self.settings = settings
        self.store = store

    async def page(self, user_id: str, page: int = 1) -> VideoPage:
        page = max(1, page)
        rows = await self.store.user_jobs(user_id, limit=PAGE_SIZE + 1,
                                          offset=(page - 1) * PAGE_SIZE)
        return VideoPage(page, tuple(rows[:PAGE_SIZE]), len(rows) > PAGE_SIZE)

    async def fetch(self, user_id: str, prefix: str) -> Fetched:
        """The video files of the person's job whose id starts with `prefix` (8+ characters
        as `/my-videos` shows them; another person's job is unknown to them)."""
        wanted = prefix.strip().lower()
        if len(wanted) < 4:
            return Fetched(Fetch.UNKNOWN)
        job = await self.store.user_job(user_id, wanted)
        if job is None:
            return Fetched(Fetch.UNKNOWN)
        if job.state not in (JobState.DELIVERED, JobState.READY) or job.forgotten:
            return Fetched(Fetch.NOT_READY, job)
        paths = tuple(p for p in job_result(self.settings, job).video_paths if p.exists())
        if not paths:
            return Fetched(Fetch.GONE, job)
        return Fetched(Fetch.READY, job, paths)
