"""One job from the command line: validate, submit, follow, download, write the file."""

from __future__ import annotations

import asyncio
import shutil
import sys
import tempfile
import uuid
from collections.abc import Sequence
from pathlib import Path

import httpx

from bot.config import Settings
from bot.errors import InvalidInput, Problem
from bot.intake import MediaInput, RequestOptions, prepare
from bot.media.fetch import download
from bot.models import TaskStatus
from bot.providers import create_provider
from bot.providers.http import Backoff


def _progress_line(stage: str, percent: float | None) -> None:
    pct = f" {percent:.0f}%" if percent is not None else ""
    print(f"\r[{stage}]{pct}        ", end="", file=sys.stderr, flush=True)


async def run_one(
    settings: Settings,
    provider_name: str,
    inputs: Sequence[MediaInput],
    options: RequestOptions,
    *,
    out: Path,
    last_frame_out: Path | None = None,
    progress: bool = False,
) -> int:
    async with httpx.AsyncClient(timeout=60.0, follow_redirects=True) as http:
        provider = create_provider(provider_name, settings, client=http)
        try:
            try:
                caps = provider.capabilities(options.model)
            except (KeyError, ValueError) as exc:
                raise InvalidInput([Problem("model", str(exc))]) from None
            request = await prepare(inputs, options, caps, http=http,
                                    cache_dir=settings.data_dir / "cache")
            submitted = await provider.submit(request, idempotency_key=str(uuid.uuid4()))
            state = submitted.state
            backoff = Backoff(base=2.0, cap=15.0)
            attempt = 0
            while state is None or not state.done:
                if progress:
                    _progress_line("generating", state.progress if state else None)
                attempt += 1
                hint = state.retry_after if state else None
                await asyncio.sleep(backoff.delay(attempt, hint) if attempt > 1 else 0.5)
                state = await provider.poll(submitted.task_id)
            if state.status is TaskStatus.FAILED:
                raise state.error
            assert state.result is not None and state.result.video_urls
            if progress:
                _progress_line("downloading", None)
            with tempfile.TemporaryDirectory(dir=out.parent) as tmp:
                part = Path(tmp) / "video.mp4"
                await download(http, state.result.video_urls[0], part,
                               max_bytes=settings.seedance_max_download_bytes,
                               allowed_hosts=caps.result_hosts, file_root=settings.data_dir)
                if last_frame_out is not None:
                    await _last_frame(http, settings, state.result.last_frame_url, part,
                                      last_frame_out, caps.result_hosts)
                shutil.move(str(part), out)
            if progress:
                print("\r[done]              ", file=sys.stderr)
            return 0
        finally:
            await provider.aclose()


async def _last_frame(http: httpx.AsyncClient, settings: Settings, url: str | None,
                      video: Path, dest: Path, hosts: Sequence[str]) -> None:
    if url:
        await download(http, url, dest, max_bytes=50 * 1024 * 1024, allowed_hosts=hosts,
                       file_root=settings.data_dir)
        return
    from bot.media.transcode import extract_last_frame

    extract_last_frame(video, dest)
