"""A job's library files on this host's disk (docs/ARCHITECTURE.md "Files").

A request that uses server-library items (bot/service/library_use.py) names files written from
the database when the job was made; the job's `job_library` rows say which bytes each file
holds, so a process on another host, where those files are not, writes them again before the
create is sent.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from bot.models import GenerationRequest
from bot.store import Store


def missing_files(request: GenerationRequest) -> bool:
    """Whether a file the request names is not on this host (a stat per file, no SQL)."""
    return any(r.local_path and not Path(r.local_path).exists() for r in request.references)


async def restore_library_files(store: Store, job_id: str) -> int:
    """Write the job's library files that are missing here from the database; how many."""
    written = 0
    for blob_id, where in await store.job_library(job_id):
        path = Path(where)
        if path.exists():
            continue
        data = await store.library_blob(blob_id)
        if data is not None:
            await asyncio.to_thread(write_file, path, data)
            written += 1
    return written


def write_file(path: Path, data: bytes) -> None:
    """`data` at `path`, whole or not at all (written beside it, then renamed)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    part = path.with_name(path.name + ".part")
    part.write_bytes(data)
    part.replace(path)
