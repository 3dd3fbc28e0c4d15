"""The embedded offline provider: Seedance's protocol, rendered on this machine for free.

It is the default so the bot runs with no paid key, and it is what demos, end-to-end tests and
benchmarks drive. It behaves like a gateway where it matters to the engine:

* `submit` is idempotent: the task id is ``"local-" + idempotency_key``, and a repeated submit
  for the same job returns the same task without rendering twice.
* Tasks are durable. Each one is a JSON spec under ``data_dir/local_tasks/`` (request, seed,
  deadline); the video is rendered in a worker thread to a temporary name and renamed when
  complete. After a restart, `poll` finds a spec without output and starts the render again.
* `seedance_local_delay` seconds (from submit, stored as a wall-clock deadline so it survives a
  restart) hold the task RUNNING before it may succeed, to look like a gateway in demos.
* Results are ``file://`` URIs of the MP4 (and of a PNG last frame when asked) inside
  ``local_tasks/``, the only folder `Capabilities.result_files` lets the engine copy from; cost
  is 0. `discard` deletes a task's files (and its spec, which holds the prompt) once the job
  has its own copy or has ended.

Test hook: a prompt containing ``[local:fail:<kind>]`` makes the task fail (after the simulated
delay) the way a gateway would (bot/providers/local_failures.py).

There are no callbacks: `parse_callback` raises and `verify_callback` is False.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import secrets
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import httpx

from bot.config import Settings
from bot.errors import (
    TaskFailedError,
    TaskNotFoundError,
)
from bot.media.render import FPS, RenderCancelled, render_video
from bot.models import (
    GenerationRequest,
    MediaKind,
    ProviderResult,
    Resolution,
    SourceKind,
    TaskState,
    TaskStatus,
)
from bot.providers.base import ALL_RATIOS, Capabilities, SubmitResult
from bot.providers.http import Sleep
from bot.providers.local_failures import failure_error, failure_marker
from bot.providers.local_tasks import TASK_ID as _TASK_ID
from bot.providers.local_tasks import Render as _Job
from bot.providers.local_tasks import default_parallel_renders, task_id_for

log = logging.getLogger(__name__)

NAME = "local"
DEFAULT_MODEL = "seedance-local"
SPEC_VERSION = 1

#: Poll hint while rendering: frequent enough for a demo, cheap (a stat and a small JSON read).
_POLL_HINT = 0.25


class LocalProvider:
    """Renders requests with `bot.media.render` behind the `Provider` protocol."""

    name = NAME
    #: A repeated submit for the same key returns the same task (the engine may resubmit).
    idempotent_submit = True

    def __init__(
        self,
        settings: Settings,
        *,
        sleep: Sleep = asyncio.sleep,
        clock: Callable[[], float] = time.time,
        max_parallel: int | None = None,
    ) -> None:
        """`clock` is wall-clock time (deadlines outlive the process); tests may move it."""
        self._dir = Path(settings.data_dir).expanduser().resolve() / "local_tasks"
        self._delay = float(settings.seedance_local_delay)
        self._sleep = sleep
        self._clock = clock
        self._jobs: dict[str, _Job] = {}
        self._closed = False
        self._slots = asyncio.Semaphore(max_parallel or default_parallel_renders())

    @property
    def default_model(self) -> str:
        return DEFAULT_MODEL

    def capabilities(self, model: str | None = None) -> Capabilities:
        """Everything Seedance 2.0 offers; files are read in place (PATH) or after download.

        One model, like the single-model gateways: any other id is refused, so a typo in
        --model or SEEDANCE_MODEL is caught here too instead of being recorded as the model.
        """
        if model not in (None, DEFAULT_MODEL):
            raise ValueError(f"local has no model {model!r}; it runs {DEFAULT_MODEL}")
        where = frozenset({SourceKind.PATH, SourceKind.URL})
        return Capabilities(
            provider=NAME,
            model=DEFAULT_MODEL,
            resolutions=frozenset(Resolution),
            durations=frozenset(range(4, 16)),
            ratios=ALL_RATIOS,  # 9:21 too: the pixel table (bot/models.py) has every ratio
            audio_generation=True,
            web_search=True,  # accepted, no effect: there is nothing to search offline
            last_frame=True,
            seed=True,
            camera_fixed=True,
            watermark=True,
            webhooks=False,
            results_per_task=4,  # like Runware's numberResults, so sets work offline
            accepts={kind: where for kind in MediaKind},
            typical_seconds=5.0 + self._delay,
            result_files=self._dir,
        )

    # -- files ---------------------------------------------------------------------------------

    def _spec_path(self, task_id: str) -> Path:
        return self._dir / f"{task_id}.json"

    def _video_path(self, task_id: str) -> Path:
        return self._dir / f"{task_id}.mp4"

    def _set_path(self, task_id: str, n: int) -> Path:
        """The n-th video (from 2) of a task asked for several; the first is `_video_path`."""
        return self._dir / f"{task_id}.{n}.mp4"

    def _frame_path(self, task_id: str) -> Path:
        return self._dir / f"{task_id}.last.png"

    def _read_spec(self, task_id: str) -> dict[str, Any] | None:
        if not _TASK_ID.match(task_id):
            return None
        try:
            spec: dict[str, Any] = json.loads(self._spec_path(task_id).read_text("utf-8"))
        except FileNotFoundError:
            return None
        return spec

    def _write_spec(self, task_id: str, spec: dict[str, Any]) -> None:
        """Atomic: a crash leaves the old spec or the new one, never half of one."""
        self._dir.mkdir(parents=True, exist_ok=True)
        tmp = self._dir / f"{task_id}.json.{secrets.token_hex(4)}.tmp"
        tmp.write_text(json.dumps(spec, indent=1), "utf-8")
        os.replace(tmp, self._spec_path(task_id))

    def _spec_or_raise(self, task_id: str) -> dict[str, Any]:
        spec = self._read_spec(task_id)
        if spec is None:
            raise TaskNotFoundError(f"no local task {task_id!r}", provider=NAME, status=404)
        return spec

    # -- protocol ------------------------------------------------------------------------------

    async def submit(
        self,
        request: GenerationRequest,
        *,
        idempotency_key: str,
        callback_url: str | None = None,
    ) -> SubmitResult:
        """Store the task's spec (once per key) and start rendering it."""
        task_id = task_id_for(idempotency_key)
        spec = self._read_spec(task_id)
        if spec is None:
            now = self._clock()
            seed = request.seed if request.seed is not None else secrets.randbits(32)
            spec = {
                "version": SPEC_VERSION,
                "task_id": task_id,
                "request": request.model_dump(mode="json"),
                "seed": seed,
                "submitted_at": now,
                "ready_at": now + self._delay,
                "failure": failure_marker(request),
                "cancelled": False,
                "error": None,
            }
            self._write_spec(task_id, spec)
            log.info("local task %s submitted (seed %s)", task_id, seed)
        self._ensure_render(task_id, spec)
        return SubmitResult(task_id=task_id, state=self._state(task_id, spec))

    async def poll(self, task_id: str) -> TaskState:
        """Look at the files; restart a render this process does not know about."""
        spec = self._spec_or_raise(task_id)
        self._ensure_render(task_id, spec)
        return self._state(task_id, spec)

    async def cancel(self, task_id: str) -> bool:
        """Stop the render; False when the task already finished (nothing left to stop)."""
        spec = self._spec_or_raise(task_id)
        if spec.get("cancelled"):
            return True
        if spec.get("error") or self._video_path(task_id).exists():
            return False
        spec["cancelled"] = True
        self._write_spec(task_id, spec)
        job = self._jobs.get(task_id)
        if job is not None:
            job.stop.set()
        log.info("local task %s cancelled", task_id)
        return True

    def parse_callback(self, headers: Mapping[str, str], body: bytes) -> TaskState:
        raise TaskNotFoundError("the local provider sends no callbacks", provider=NAME)

    def verify_callback(self, headers: Mapping[str, str], body: bytes) -> bool:
        return False

    async def discard(self, task_id: str) -> None:
        """Delete the task's spec (it holds the prompt) and its files once the job has its own
        copy or has ended: nothing of a finished job stays under local_tasks/."""
        if not _TASK_ID.match(task_id):
            return
        job = self._jobs.pop(task_id, None)
        if job is not None:
            job.stop.set()
            if job.task is not None:
                await asyncio.gather(job.task, return_exceptions=True)
        for path in (self._spec_path(task_id), self._video_path(task_id),
                     self._frame_path(task_id), *self._dir.glob(f"{task_id}.[0-9].mp4")):
            path.unlink(missing_ok=True)

    async def aclose(self) -> None:
        """Stop renders in flight without cancelling their tasks: a later process resumes them."""
        self._closed = True
        jobs = list(self._jobs.values())
        for job in jobs:
            job.stop.set()
        tasks = [job.task for job in jobs if job.task is not None]
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

    # -- state ---------------------------------------------------------------------------------

    def _state(self, task_id: str, spec: dict[str, Any]) -> TaskState:
        now = self._clock()
        ready_at = float(spec["ready_at"])
        submitted_at = float(spec["submitted_at"])
        waiting = now < ready_at
        if spec.get("cancelled"):
            return TaskState(
                task_id=task_id, status=TaskStatus.FAILED,
                error=TaskFailedError("the task was cancelled", provider=NAME, code="cancelled"),
            )
        if spec.get("error"):
            return TaskState(
                task_id=task_id, status=TaskStatus.FAILED,
                error=TaskFailedError(str(spec["error"]), provider=NAME, code="render_failed"),
            )
        clock = 100.0 * min(1.0, (now - submitted_at) / max(1e-9, ready_at - submitted_at))
        hint = min(2.0, max(0.05, ready_at - now)) if waiting else _POLL_HINT
        if spec.get("failure"):
            if waiting:
                return TaskState(task_id=task_id, status=TaskStatus.RUNNING,
                                 progress=min(99.0, clock), retry_after=hint)
            return TaskState(task_id=task_id, status=TaskStatus.FAILED,
                             error=failure_error(str(spec["failure"])))
        video = self._video_path(task_id)
        if video.exists():
            if waiting:
                return TaskState(task_id=task_id, status=TaskStatus.RUNNING,
                                 progress=min(99.0, clock), retry_after=hint)
            request = GenerationRequest.model_validate(spec["request"])
            frame = self._frame_path(task_id)
            extra = [self._set_path(task_id, n) for n in range(2, request.results + 1)]
            result = ProviderResult(
                video_urls=[video.as_uri(), *(p.as_uri() for p in extra)],
                last_frame_url=frame.as_uri() if request.return_last_frame and frame.exists()
                else None,
                seed=int(spec["seed"]),
                cost=0.0,
            )
            return TaskState(task_id=task_id, status=TaskStatus.SUCCEEDED, progress=100.0,
                             result=result)
        job = self._jobs.get(task_id)
        if job is None or not job.started:
            return TaskState(task_id=task_id, status=TaskStatus.PENDING, progress=0.0,
                             retry_after=_POLL_HINT)
        rendered = 100.0 * job.done / max(1, job.total)
        return TaskState(task_id=task_id, status=TaskStatus.RUNNING,
                         progress=min(99.0, rendered, clock), retry_after=hint)

    # -- rendering -----------------------------------------------------------------------------

    def _ensure_render(self, task_id: str, spec: dict[str, Any]) -> None:
        """Start rendering unless it is running here, finished, failed or not wanted."""
        if self._closed or task_id in self._jobs:
            return
        if spec.get("failure") or spec.get("cancelled"):
            return
        if spec.get("error") or self._video_path(task_id).exists():
            return
        request = GenerationRequest.model_validate(spec["request"])
        job = _Job(total=request.duration * FPS * request.results)
        self._jobs[task_id] = job
        job.task = asyncio.create_task(self._run(task_id, request, int(spec["seed"]), job))

    async def _run(self, task_id: str, request: GenerationRequest, seed: int, job: _Job) -> None:
        try:
            async with self._slots:
                if not job.stop.is_set():
                    await asyncio.to_thread(self._render, task_id, request, seed, job)
        except RenderCancelled:
            pass
        except asyncio.CancelledError:
            job.stop.set()  # the thread cannot be cancelled; ask it to stop between frames
            raise
        except Exception as exc:
            log.warning("local task %s failed to render: %s", task_id, exc)
            spec = self._read_spec(task_id)
            if spec is not None and not spec.get("cancelled"):
                spec["error"] = f"the local renderer failed: {exc}"
                self._write_spec(task_id, spec)
        finally:
            if self._jobs.get(task_id) is job:
                del self._jobs[task_id]

    def _render(self, task_id: str, request: GenerationRequest, seed: int, job: _Job) -> None:
        """Worker thread: render to temporary names, then rename (the PNG first, the MP4 last)."""
        self._dir.mkdir(parents=True, exist_ok=True)
        token = f"{os.getpid()}.{secrets.token_hex(4)}.part"
        tmp_video = self._dir / f"{task_id}.mp4.{token}"
        tmp_frame = self._dir / f"{task_id}.last.png.{token}"
        job.started = True
        began = time.monotonic()

        frames = request.duration * FPS
        # The set's other videos first (each its own seed, as each gateway result has), the
        # first one last: its file appearing is what says the task is done.
        for n in range(2, request.results + 1):
            dest = self._set_path(task_id, n)
            if not dest.exists():
                part = self._dir / f"{task_id}.{n}.mp4.{token}"
                base = (n - 2) * frames

                def each(done: int, total: int, base: int = base) -> None:
                    job.done = base + done

                try:
                    render_video(request, part, seed=(seed + n - 1) % 2**32, on_frame=each,
                                 should_stop=job.stop.is_set)
                    os.replace(part, dest)
                finally:
                    part.unlink(missing_ok=True)
        before = (request.results - 1) * frames

        def progress(done: int, total: int) -> None:
            job.done = before + done

        try:
            render_video(
                request, tmp_video, seed=seed,
                last_frame_dest=tmp_frame if request.return_last_frame else None,
                on_frame=progress, should_stop=job.stop.is_set,
            )
            if request.return_last_frame:
                os.replace(tmp_frame, self._frame_path(task_id))
            os.replace(tmp_video, self._video_path(task_id))
        finally:
            for tmp in (tmp_video, tmp_frame):
                with contextlib.suppress(FileNotFoundError):
                    tmp.unlink()
        log.info("local task %s rendered in %.1fs", task_id, time.monotonic() - began)


def build(
    settings: Settings,
    *,
    client: httpx.AsyncClient | None = None,
    sleep: Sleep = asyncio.sleep,
) -> LocalProvider:
    """The factory `create_provider` calls; `client` is unused (nothing goes over the network)."""
    return LocalProvider(settings, sleep=sleep)
