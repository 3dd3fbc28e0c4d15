"""A job's library files on this host's disk (docs/ARCHITECTURE.md "Files").

A request that uses server-library items (bot/service/library_use.py) names files written from
the database when the job was made, named `library-<blob id>-<unique>` (`library_file`). A
process on another host, where those files are not, writes them again from the database before
the create is sent; the job's `job_library` rows keep the bytes there until the job ends.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from pathlib import Path

from bot.models import GenerationRequest
from bot.store import Store

_LIBRARY_FILE = re.compile(r"library-([0-9a-f]{32})-[0-9a-f]{32}")


def library_file(folder: Path, blob_id: str) -> Path:
    """A new file name for the bytes of `blob_id` in `folder` (one per request)."""
    return folder / f"library-{blob_id}-{uuid.uuid4().hex}"


def missing_files(request: GenerationRequest) -> bool:
    """Whether a file the request names is not on this host (a stat per file, no SQL)."""
    return any(r.local_path and not Path(r.local_path).exists() for r in request.references)


async def restore_library_files(store: Store, request: GenerationRequest) -> int:
    """Write the request's library files that are missing here from the database; how many."""
    written = 0
    for ref in request.references:
        path = Path(ref.local_path) if ref.local_path else None
        match = _LIBRARY_FILE.fullmatch(path.name) if path else None
        if path is None or match is None or path.exists():
            continue
        data = await store.library_blob(match.group(1))
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
