"""What the bot keeps about a person, and deleting it.

Deleting refuses while a job of theirs is unfinished (rather than skipping it), so nobody
believes everything is gone while a job still holds their prompt. Each finished job keeps an
anonymised accounting row; ledger lines keep the user id while a quota window needs them
(bot/store/moderation.py). The votes they cast in events are deleted outright (a vote is theirs
alone and accounts for nothing; a running event's counts drop by them); votes others cast for
their entries stay with those voters, but an entry whose author is forgotten is out of the
running (bot/service/votes.py). Purchases from Discord's store (`entitlements`,
`purchased_credits`, bot/store/premium.py) are kept: they are the member's paid credits and
the record that a purchase was credited once (deleting them would let Discord's list credit it
again); they hold ids and amounts only, no prompt or file.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, replace
from pathlib import Path

from bot.engine import Engine
from bot.moderation import Forgotten, forget_user
from bot.store import TERMINAL_STATES, JobState, JobView, Store
from bot.store.moderation import LEDGER_KEEP_SECONDS

from .people import Requester
from .refusals import NotAllowed, UnfinishedJobs

UNFINISHED = [s for s in JobState if s not in TERMINAL_STATES]
#: Days a deleted user's ledger lines keep their id (quotas are counted from them).
LEDGER_DAYS = LEDGER_KEEP_SECONDS // 86400


@dataclass(frozen=True)
class Holdings:
    """What is stored about one user, for `/my-data show`."""

    jobs: int
    with_prompt: int
    unfinished: int
    files: int
    bytes: int
    votes: int = 0  # votes cast in events


def count_holdings(jobs: list[JobView], data_dir: Path) -> Holdings:
    """Count the user's jobs and the files on disk that belong to them (blocking: disk I/O)."""
    root = data_dir.resolve()
    files: set[Path] = set()
    for job in jobs:
        folder = data_dir / "jobs" / job.id
        if folder.is_dir():
            files.update(p.resolve() for p in folder.rglob("*") if p.is_file())
        for ref in job.request.references:
            if ref.local_path:
                path = Path(ref.local_path).resolve()
                if path.is_relative_to(root) and path.is_file():
                    files.add(path)
    size = 0
    for path in files:
        with contextlib.suppress(OSError):
            size += path.stat().st_size
    return Holdings(
        jobs=len(jobs),
        with_prompt=sum(1 for j in jobs if j.request.prompt or j.request.references),
        unfinished=sum(1 for j in jobs if j.state not in TERMINAL_STATES),
        files=len(files),
        bytes=size,
    )


class PrivacyService:
    def __init__(self, store: Store, engine: Engine, data_dir: Path) -> None:
        self.store = store
        self.engine = engine
        self.data_dir = data_dir

    async def job_count(self, user_id: str) -> int:
        """How many jobs of theirs the bot keeps (cheap: no disk scan)."""
        return len(await self.store.jobs(user_id=user_id))

    async def holdings(self, user_id: str) -> Holdings:
        jobs = await self.store.jobs(user_id=user_id)
        held = await asyncio.to_thread(count_holdings, jobs, self.data_dir)
        return replace(held, votes=await self.store.votes_by(user_id))

    async def may_forget(self, user_id: str, who: Requester) -> None:
        """Only the person themself, and not while a job of theirs still holds their data."""
        if who.user_id != user_id:
            raise NotAllowed(key="errors.privacy.not_yours")
        unfinished = await self.store.jobs(UNFINISHED, user_id=user_id)
        if unfinished:
            raise UnfinishedJobs(len(unfinished))

    async def forget(self, user_id: str, who: Requester) -> Forgotten:
        """Delete the user's prompts, inputs and files (refused as `may_forget` says), and the
        server-library items they added (bot/store/library.py; a job of someone else that uses
        one keeps its copy until it ends)."""
        await self.may_forget(user_id, who)
        votes = await self.store.forget_votes(user_id)
        await self.store.forget_library_items(user_id)
        done = await forget_user(self.store, self.data_dir, user_id, now=time.time(),
                                 discard=self.engine.discard_task)
        return replace(done, votes=votes)
