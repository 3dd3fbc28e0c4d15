"""Retention: what a finished job leaves behind is deleted once it is old enough.

Each job finished more than SEEDANCE_RETENTION_DAYS ago loses its folder, its downloaded input
copies and the provider's copy of its task, once (the store marks it cleaned). Input copies
that no kept job refers to (refused uploads among them) go once they are an hour old.
"""

from __future__ import annotations

import asyncio
import shutil
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from bot.config import Settings
from bot.store import JobView, Store

from .results import job_dir

#: A downloaded input no job refers to is deleted by retention once this old: intake writes the
#: file a moment before the job's row, so a fresh one may be about to be used.
ORPHAN_INPUT_SECONDS = 3600.0


async def cleanup(
    settings: Settings, store: Store, *, inputs_dir: Path, days: int | None, now: float,
    discard: Callable[[JobView], Awaitable[None]],
) -> int:
    """Delete what retention no longer keeps; returns how many files went (see the module
    docstring). `discard` lets the provider drop its copy of a job's task."""
    keep = settings.seedance_retention_days if days is None else days
    cutoff = now - keep * 86400
    kept = {Path(ref.local_path).resolve()
            for request in await store.requests_kept(cutoff)
            for ref in request.references if ref.local_path}
    removed = 0
    for job in await store.finished_before(cutoff):
        removed += await asyncio.to_thread(_remove_files, settings, inputs_dir, job, kept)
        await discard(job)
        await store.mark_cleaned(job.id, now=now)
    removed += await asyncio.to_thread(
        _sweep, inputs_dir, time.time() - ORPHAN_INPUT_SECONDS, kept)
    # The bytes of removed library items go once no unfinished job uses them (migration 0014).
    await store.sweep_library_blobs()
    return removed


def _remove_files(settings: Settings, inputs_dir: Path, job: JobView, kept: set[Path]) -> int:
    """The job's folder and its input copies under `inputs_dir` that no kept job needs."""
    removed = 0
    folder = job_dir(settings, job.id)
    if folder.exists():
        removed += sum(1 for p in folder.rglob("*") if p.is_file())
        shutil.rmtree(folder, ignore_errors=True)
    root = inputs_dir.resolve()
    for ref in job.request.references:
        if not ref.local_path:
            continue
        path = Path(ref.local_path).resolve()
        if path.is_relative_to(root) and path not in kept and path.is_file():
            path.unlink(missing_ok=True)
            removed += 1
    return removed


def _sweep(folder: Path, older_than: float, kept: set[Path]) -> int:
    """Delete files of `folder` last written before `older_than` that no kept job needs."""
    removed = 0
    if not folder.is_dir():
        return 0
    for path in folder.iterdir():
        try:
            if (path.is_file() and path.resolve() not in kept
                    and path.stat().st_mtime < older_than):
                path.unlink()
                removed += 1
        except OSError:
            continue
    return removed


__all__ = ["ORPHAN_INPUT_SECONDS", "cleanup"]
