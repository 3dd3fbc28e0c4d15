"""A finished task's files: downloaded under the address rules, proven from their bytes, kept.

A job in DOWNLOADING has its result URLs in its row. Each file is streamed to the job's folder
(bot/media/fetch.py) and probed (bot/media/probe.py): it must be the video or image it claims
to be before the job moves on to READY (charged) or HELD (for a moderator). An expired link is
refreshed once by asking the gateway again; a refused one is checked once against the gateway's
own answer to a poll (a forged or stray callback is dropped, and the task followed again).
"""

from __future__ import annotations

import logging
import re
import shutil
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

import httpx

from bot.config import Settings
from bot.errors import (
    DownloadError,
    GatewayError,
    RefusedDownload,
    ResultExpiredError,
    scrub,
)
from bot.media.fetch import download as fetch_download
from bot.media.fetch import safe_url
from bot.media.probe import UnreadableMedia, probe_file_async
from bot.models import MediaKind, TaskState, TaskStatus
from bot.providers.base import Capabilities, Provider
from bot.store import JobState, JobView, Store
from bot.words import a

from .events import EventKind, JobEvent, JobResult
from .machine import JobMachine
from .refunds import Outcome, gateway_outcome
from .scheduler import EngineLimits
from .sets import flagged_of, reviews_flagged, without_flagged
from .sizing import remember_sizes

log = logging.getLogger(__name__)

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]
Backoff = Callable[..., float]
#: Streams a URL to `dest` and returns the bytes written; it makes `dest`'s folder itself, off
#: the event loop (bot/media/fetch.py `download`).
Downloader = Callable[..., Awaitable[int]]
_VIDEO_NAME = re.compile(r"video(_[0-9]+)?\.mp4")
#: `result_meta` key naming the job's video files in its folder, written with READY or HELD.
VIDEO_FILES = "video_files"


def job_dir(settings: Settings, job_id: str) -> Path:
    """Where a job's files live: data_dir/jobs/<job id>/."""
    return settings.data_dir / "jobs" / job_id


def job_result(settings: Settings, job: JobView) -> JobResult:
    """The files of a job whose results are on disk, and what they cost.

    The row names them (`VIDEO_FILES`), so the folder is not listed on the event loop twice a
    job; a row written before it did is answered by listing the folder.
    """
    folder = job_dir(settings, job.id)
    meta = job.result_meta
    names = meta.get(VIDEO_FILES)
    if isinstance(names, list) and names:
        videos = [folder / n for n in names if isinstance(n, str) and _VIDEO_NAME.fullmatch(n)]
    else:
        # video.mp4, video_2.mp4 …: not the copies transcoded to fit beside them (video.fit….mp4).
        videos = sorted((p for p in folder.glob("video*.mp4") if _VIDEO_NAME.fullmatch(p.name)),
                        key=lambda p: (len(p.name), p.name))
    if not videos and job.result_path:
        videos = [Path(job.result_path)]
    return JobResult(
        video_paths=tuple(videos),
        last_frame_path=Path(job.last_frame_path) if job.last_frame_path else None,
        cost=meta.get("cost"),
        seed=meta.get("seed"),
        credits=job.credits_charged or job.credits_estimate,
    )


class ResultFetcher:
    """Drives a DOWNLOADING job to READY or HELD, or to its honest failure."""

    def __init__(
        self, settings: Settings, store: Store, *, machine: JobMachine, http: httpx.AsyncClient,
        limits: EngineLimits, clock: Clock, sleep: Sleep, backoff: Backoff,
        downloader: Downloader | None = None,
    ) -> None:
        self.settings = settings
        self._store = store
        self._machine = machine
        self._http = http
        self._limits = limits
        self._clock = clock
        self._sleep = sleep
        self._backoff = backoff
        self._downloader = downloader or fetch_download
        self._policy = settings.network_policy()

    async def download(self, job: JobView, provider: Provider) -> None:
        caps = provider.capabilities(job.model)
        meta = dict(job.result_meta)
        refreshed = looked_again = False
        expires = meta.get("expires_at")
        if expires is not None and expires <= self._clock() and job.task_id:
            meta = await self._refresh(job, provider, meta)
            refreshed = True
        flag_hold = False
        if flagged_of(meta):
            if reviews_flagged(job):
                flag_hold = True  # the whole set waits for a moderator
            else:
                meta = without_flagged(meta)
                if not meta["video_urls"]:
                    await self._machine.fail(
                        job, Outcome.FLAGGED, "flagged",
                        f"{job.provider}'s safety check flagged the video, and this server "
                        "has no moderators' channel to review it, so it was not posted. Your "
                        "credits were returned.")
                    return
                await self._store.update_job(job.id, now=self._clock(), result_meta=meta)
        folder = job_dir(self.settings, job.id)  # the downloader makes it (`Downloader`)
        attempt = 0
        while True:
            attempt += 1
            try:
                videos, frame = await self._fetch_results(job, caps, meta, folder)
                break
            except RefusedDownload as err:
                # Never fetched as it is. The URL may come from a forged callback: the gateway's
                # own answer to a poll is the authority, once.
                if not looked_again and job.task_id:
                    looked_again = True
                    state = await self._look_again(job, provider)
                    if state is not None and not state.done:
                        await self._back_to_generating(job, err)
                        return
                    fresh = _result_meta(meta, state)
                    if fresh is not None and fresh["video_urls"] != meta.get("video_urls"):
                        meta = fresh
                        await self._store.update_job(job.id, now=self._clock(), result_meta=meta)
                        continue
                await self._machine.fail(
                    job, Outcome.BAD_RESULT, "bad_result",
                    f"{job.provider} reported the video done (so it bills for it), but its "
                    f"result cannot be used ({self._reason(err)}). Nothing was delivered; "
                    "your credits were returned.",
                )
                shutil.rmtree(folder, ignore_errors=True)
                return
            except ResultExpiredError as err:
                if refreshed or not job.task_id:
                    await self._machine.fail(
                        job, gateway_outcome("fetch", err), err.kind,
                        "The video was made but its link expired before it could be fetched "
                        f"({self._reason(err)}).", error=err,
                    )
                    return
                meta = await self._refresh(job, provider, meta)
                refreshed = True
            except (DownloadError, GatewayError, OSError) as err:
                if attempt >= self._limits.download_attempts:
                    outcome = (gateway_outcome("fetch", err) if isinstance(err, GatewayError)
                               else Outcome.UNDOWNLOADABLE)
                    await self._machine.fail(
                        job, outcome, "download",
                        f"The video was made but could not be downloaded: {self._reason(err)}",
                        error=err if isinstance(err, GatewayError) else None,
                    )
                    return
                await self._sleep(self._backoff(
                    attempt, base=self._limits.retry_base, cap=self._limits.retry_cap))
        if caps.output_quality is not None:  # learned only where a quality can be asked
            await remember_sizes(self._store, job.provider, job.request, videos,
                                 now=self._clock())
        # A result a moderator already let out (fetched again on another host) is not held.
        held = (job.hold_result or flag_hold) and not job.result_meta.get("released")
        moved = await self._machine.move(
            job, JobState.HELD if held else JobState.READY,
            Outcome.HELD_FOR_REVIEW if held else Outcome.ON_DISK, detail="files on disk",
            result_path=str(videos[0]), last_frame_path=str(frame) if frame else None,
            result_meta={**meta, VIDEO_FILES: [p.name for p in videos]},
        )
        if moved is None:
            return
        result = job_result(self.settings, moved)
        await self._machine.emit(moved, JobEvent(EventKind.SUCCEEDED, result=result))
        if held:
            why = (f"{job.provider}'s safety check flagged it; a moderator decides"
                   if flag_hold else None)
            await self._machine.emit(moved, JobEvent(EventKind.HELD, result=result, reason=why))

    async def _fetch_results(
        self, job: JobView, caps: Capabilities, meta: Mapping[str, Any], folder: Path
    ) -> tuple[list[Path], Path | None]:
        """Download every result and prove each is what it claims (a video, an image) from its
        bytes before the job moves on; raises `RefusedDownload` otherwise."""
        hosts = self.settings.result_hosts(job.provider) or caps.result_hosts
        root = caps.result_files
        videos: list[Path] = []
        for i, url in enumerate(meta.get("video_urls") or []):
            name = "video.mp4" if i == 0 else f"video_{i + 1}.mp4"
            dest = await self._fetch(url, folder / name, hosts, root)
            await _prove(dest, url, MediaKind.VIDEO)
            videos.append(dest)
        if not videos:
            raise RefusedDownload("the gateway named no video")
        frame = None
        url = meta.get("last_frame_url")
        if job.request.return_last_frame and url:
            frame = await self._fetch(url, folder / f"last_frame{_suffix(url, '.png')}",
                                      hosts, root)
            await _prove(frame, url, MediaKind.IMAGE)
        return videos, frame

    async def _look_again(self, job: JobView, provider: Provider) -> TaskState | None:
        """The gateway's own view of the task (None when it cannot be asked)."""
        assert job.task_id is not None
        try:
            return await provider.poll(job.task_id)
        except GatewayError as err:
            log.info("could not look again at the task of %s: %s", job.id, err)
            return None

    async def _back_to_generating(self, job: JobView, err: Exception) -> None:
        """A "done" that the gateway itself does not confirm (a forged or stray callback):
        drop it and follow the task again."""
        log.warning("job %s: dropped a result the gateway does not confirm (%s)", job.id,
                    self._reason(err))
        await self._machine.move(
            job, JobState.GENERATING, Outcome.RESULT_UNCONFIRMED,
            detail=f"result not confirmed by {job.provider}; following the task again",
            result_meta={},
        )

    async def _refresh(
        self, job: JobView, provider: Provider, meta: dict[str, Any]
    ) -> dict[str, Any]:
        """Ask the gateway again for the task, hoping for fresh result URLs."""
        state = await self._look_again(job, provider)
        fresh = _result_meta(meta, state)
        if fresh is None:
            return meta
        await self._store.update_job(job.id, now=self._clock(), result_meta=fresh)
        return fresh

    async def _fetch(
        self, url: str, dest: Path, hosts: tuple[str, ...], root: Path | None
    ) -> Path:
        """Stream one file to `dest` under the address rules; it appears only when whole.

        `file://` results are read only inside the task's own folder of the provider that
        declares one (the embedded renderer); nothing else of the data folder is reachable.
        """
        await self._downloader(
            self._http, url, dest, max_bytes=self.settings.seedance_max_download_bytes,
            policy=self._policy, allowed_hosts=hosts, file_root=root,
        )
        return dest

    def _reason(self, err: Exception) -> str:
        return scrub(str(err), self.settings.secrets())


def _result_meta(meta: Mapping[str, Any], state: TaskState | None) -> dict[str, Any] | None:
    """`meta` with the result URLs of a successful `state` (None when it has none)."""
    if state is None or state.status is not TaskStatus.SUCCEEDED or state.result is None:
        return None
    if not state.result.video_urls:
        return None
    fresh = {
        **meta,
        "video_urls": list(state.result.video_urls),
        "last_frame_url": state.result.last_frame_url or meta.get("last_frame_url"),
        "flagged": list(state.result.flagged),
        "expires_at": state.result.expires_at,
    }
    # Flagged videos refused once stay refused, whatever fresh links the gateway gives.
    return without_flagged(fresh) if "refused_flagged" in meta else fresh


async def _prove(path: Path, url: str, kind: MediaKind) -> None:
    """Refuse a downloaded result whose bytes are not a `kind` we can read (it is deleted)."""
    try:
        facts = await probe_file_async(path)
    except UnreadableMedia as exc:
        facts = None
        why = str(exc)
    if facts is not None:
        if facts.kind is kind and (kind is not MediaKind.VIDEO or facts.format in ("mp4", "mov")):
            return
        why = f"it is {a(facts.format.upper() + ' ' + facts.kind.value)}, not {a(kind.value)}"
    path.unlink(missing_ok=True)
    raise RefusedDownload(f"{safe_url(url)} is not a real {kind.value} ({why})")


def _suffix(url: str, default: str) -> str:
    path = url.split("?", 1)[0].rsplit("/", 1)[-1]
    suffix = Path(path).suffix.lower()
    return suffix if suffix in (".png", ".jpg", ".jpeg", ".webp") else default


__all__ = ["VIDEO_FILES", "ResultFetcher", "job_dir", "job_result"]
