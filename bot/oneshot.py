"""One job from the command line, through the same engine the bot runs.

The CLI is a delivery port like the Discord layer: the engine validates nothing new, queues,
submits, follows, downloads and calls `deliver`, which writes the file. CLI jobs live in their
own database (`cli.sqlite3` under the data dir) so a CLI run never resumes, or delivers, a
Discord job; a CLI run killed half-way is resumed by the next CLI run and still written to the
path it was asked for (kept in the job's context) — and that run says so on stderr.
"""

from __future__ import annotations

import asyncio
import getpass
import os
import shutil
import sys
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from urllib.parse import urlsplit

from bot.config import DEFAULT_BASE_URLS, Settings
from bot.engine import Engine, EventKind, JobEvent, JobResult
from bot.engine.claims import known_dead
from bot.engine.results import job_result
from bot.errors import InvalidInput, SeedanceError
from bot.httpclient import new_client
from bot.intake import MediaInput, RequestOptions
from bot.models import Ratio, nearest_ratio
from bot.providers import ProviderRegistry
from bot.service import Requester, Services
from bot.store import ACTIVE_STATES, WAITING_STATES, JobState, JobView, Store


def cli_inputs(settings: Settings) -> Path:
    """The CLI's own downloaded inputs: the bot's retention must not sweep them (it knows
    only its own database), nor the CLI's the bot's."""
    return settings.data_dir / "cli_cache"

Say = Callable[[str], None]


class JobFailed(SeedanceError):
    """The job ended without a video; the message is the gateway's reason, for a person.

    `kind` is the engine's error kind (a `GatewayError.kind`, or "delivery" when the video was
    made but could not be written), so the CLI can add the right hint (a key, the network).
    """

    def __init__(self, message: str, *, kind: str | None = None, provider: str = "") -> None:
        super().__init__(message)
        self.kind = kind
        self.provider = provider


@dataclass(frozen=True)
class Written:
    """What `run_one` wrote, for the one line the CLI prints on success."""

    out: Path
    last_frame_out: Path | None
    seed: int | None
    duration: int
    resolution: str
    ratio: str
    provider: str
    #: The other videos of a set, written beside `out` (bot/cli_paths.py `set_outputs`).
    more: tuple[Path, ...] = ()


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _os_reason(exc: BaseException) -> str:
    """"No space left on device", not "[Errno 28] No space left on device: '/x/.y.part'"."""
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


class FileDelivery:
    """Writes each finished job to the `out` path stored in its context.

    Also the CLI's voice on stderr: retries and write failures are full lines whether or not
    stderr is a terminal (a silent minute of retrying reads as a hang); the `[stage] 40%`
    progress line only on a terminal (`progress`). Jobs not in `mine` were left by an earlier,
    interrupted run; their news is labelled with their file.
    """

    def __init__(self, *, progress: bool, say: Say | None = None,
                 hosts: dict[str, str] | None = None) -> None:
        self.progress = progress
        self._say = say or _stderr
        self.hosts = dict(hosts or {})  # gateway -> the host it is reached at, for messages
        self.mine: set[str] = set()
        #: Why the last write of each job failed ("/x/y.mp4: No space left on device").
        self.write_errors: dict[str, str] = {}
        self._line_open = 0  # length of a progress line left without its newline, if any

    def end_line(self) -> None:
        """End an open progress line, so what follows starts on a line of its own."""
        if self._line_open:
            print(file=sys.stderr, flush=True)
            self._line_open = 0

    def say(self, message: str) -> None:
        """One full line on stderr, after ending an open progress line."""
        self.end_line()
        self._say(message)

    def show(self, text: str) -> None:
        """Replace the progress line (a terminal only), blanking what is left of a longer one."""
        if self.progress:
            print(f"\r{text.ljust(self._line_open)}", end="", file=sys.stderr, flush=True)
            self._line_open = max(len(text), 1)

    def _label(self, job: JobView) -> str:
        if job.id in self.mine:
            return ""
        return f"(the earlier job for {job.context.get('out', job.id)}) "

    async def on_event(self, job: JobView, event: JobEvent) -> None:
        if event.kind is EventKind.RETRYING and event.reason:
            host = self.hosts.get(job.provider)
            where = f"{job.provider} at {host}" if host else job.provider
            self.say(f"seedance-bot: {self._label(job)}retrying {where}: {event.reason}")
            return
        if job.id not in self.mine:
            if event.kind is EventKind.DELIVERED:
                self.say(f"seedance-bot: wrote {event.reason} (the interrupted job from earlier)")
            elif event.kind is EventKind.FAILED:
                self.say(f"seedance-bot: {self._label(job)}failed: {event.reason}")
            return
        words = {
            EventKind.QUEUED: "queued", EventKind.STARTED: "starting",
            EventKind.PROGRESS: "generating", EventKind.SUCCEEDED: "downloading",
            EventKind.DELIVERED: "done",
        }
        stage = words.get(event.kind)
        if stage is None:
            return
        pct = f" {event.percent:.0f}%" if event.percent is not None else ""
        self.show(f"[{stage}]{pct}")
        if event.kind is EventKind.DELIVERED:
            self.end_line()

    def waiting_on(self, host: str) -> Callable[[float], Awaitable[None]]:
        """A gateway client's retry sleep that shows the wait on the progress line, so the
        retries inside one request (before the engine's own) are not silent either."""

        async def sleep(delay: float) -> None:
            self.show(f"[retrying] no usable answer from {host}; asking again in {delay:.0f} s")
            await asyncio.sleep(delay)

        return sleep

    async def deliver(self, job: JobView, result: JobResult) -> str:
        from bot.cli_paths import set_outputs

        out = Path(job.context["out"])
        target = out
        try:
            for src, dest in zip(result.video_paths, set_outputs(out, len(result.video_paths)),
                                 strict=True):
                target = dest
                await asyncio.to_thread(_write_atomic, src, dest)
            frame_out = job.context.get("last_frame_out")
            if frame_out:
                target = Path(frame_out)
                await asyncio.to_thread(_write_last_frame, result, target)
        except OSError as exc:
            # The engine tries again a few times; say it now, while freeing space can still help.
            self.write_errors[job.id] = f"{target}: {_os_reason(exc)}"
            self.say(f"seedance-bot: {self._label(job)}could not write {target} "
                     f"({_os_reason(exc)}); trying again")
            raise
        return str(out)


def _write_atomic(src: Path, dest: Path) -> None:
    """Copy then rename, so `dest` is either absent or whole (idempotent on a re-delivery)."""
    part = dest.with_name(f".{dest.name}.{os.getpid()}.part")
    try:
        shutil.copyfile(src, part)
        os.replace(part, dest)
    except OSError:
        part.unlink(missing_ok=True)  # a full disk must not keep a half copy
        raise


def _write_last_frame(result: JobResult, dest: Path) -> None:
    if result.last_frame_path is not None and result.last_frame_path.exists():
        _write_atomic(result.last_frame_path, dest)
        return
    from bot.media.transcode import extract_last_frame

    extract_last_frame(result.video_path, dest)


def _abandoned(job: JobView, me: str) -> bool:
    """Whether `job` was left by a generate that is gone (or by one from before processes
    were recorded)."""
    creator = job.context.get("process")
    return not isinstance(creator, str) or known_dead(creator, me)


def _shown_ratio(job: JobView, out: Path) -> str:
    """The ratio asked for; for `adaptive`, the one the written video has."""
    ratio = job.request.ratio
    if ratio is not Ratio.ADAPTIVE:
        return ratio.value
    from bot.media.probe import probe_file

    try:
        facts = probe_file(out)
    except Exception:  # the file is written; the line printed about it must not fail
        return ratio.value
    if facts.width and facts.height:
        return nearest_ratio(facts.width, facts.height).value
    return ratio.value


async def run_one(
    settings: Settings,
    provider_name: str,
    inputs: Sequence[MediaInput],
    options: RequestOptions,
    *,
    out: Path,
    last_frame_out: Path | None = None,
    progress: bool = False,
    say: Say | None = None,
    model_subject: str = "model",
) -> Written:
    """Validate (exit 2 on problems, nothing sent), then run the job to a written file.

    `model_subject` names where the model came from (--model, SEEDANCE_MODEL) in the problem
    raised when the gateway does not run it. Raises `JobFailed` when the job ends unwritten.
    """
    hosts = {name: urlsplit(settings.base_url(name)).netloc for name in DEFAULT_BASE_URLS}
    delivery = FileDelivery(progress=progress, say=say, hosts=hosts)
    async with new_client(timeout=60.0) as http:
        def sleep_for(name: str) -> Callable[[float], Awaitable[None]]:
            if progress and name in hosts:  # reached over the network: show the waits
                return delivery.waiting_on(hosts[name])
            return asyncio.sleep

        provider_for = ProviderRegistry(settings, client=http, sleep_for=sleep_for)

        try:
            settings.data_dir.mkdir(parents=True, exist_ok=True)
            store = Store.deferred(settings.data_dir / "cli.sqlite3")
            engine = Engine(settings, store, delivery=delivery, providers=provider_for, http=http,
                            inputs_dir=cli_inputs(settings), own_jobs_only=True)
            videos = Services.build(settings, store, engine, provider_for, http).videos
            try:
                context = {"out": str(out.resolve()), "process": engine.process}
                if last_frame_out is not None:
                    context["last_frame_out"] = str(last_frame_out.resolve())
                try:
                    # The same use case as /video (the same checks and refusals); the
                    # operator's own files may come from their own network.
                    made = await videos.make(
                        Requester.operator(getpass.getuser()), inputs,
                        replace(options, provider=provider_name), context=context)
                except InvalidInput as exc:
                    raise InvalidInput([
                        replace(p, subject=model_subject) if p.subject == "model" else p
                        for p in exc.problems]) from None
                # The database is opened only now that the request is valid.
                # Jobs of an earlier run that died: finished here. Those of another generate
                # still running on this folder are its own business.
                earlier = [j for j in await store.jobs(ACTIVE_STATES | WAITING_STATES)
                           if j.id != made.job.id and _abandoned(j, engine.process)]
                engine.adopt([j.id for j in earlier])
                for old in earlier:
                    delivery.say("seedance-bot: finishing an interrupted job from earlier: "
                                 f"writing {old.context.get('out', old.id)}")
                await engine.start()
                job = made.job
                delivery.mine.add(job.id)
                job = await engine.wait(job.id)
                # The CLI has no daily loop: each run applies SEEDANCE_RETENTION_DAYS to the
                # CLI's own earlier jobs (their copies under jobs/ and cache/).
                await engine.cleanup()
                for old in earlier:
                    now = await store.get_job(old.id)
                    if now is not None and not now.terminal:
                        delivery.say(f"seedance-bot: the earlier job for "
                                     f"{old.context.get('out', old.id)} is not finished; the "
                                     "next seedance-bot generate goes on with it")
            finally:
                await engine.stop()
                await store.close()
                delivery.end_line()
        finally:
            await provider_for.aclose()
    if job.state is JobState.DELIVERED:
        from bot.cli_paths import set_outputs

        count = len(job_result(settings, job).video_paths)
        return Written(
            more=tuple(set_outputs(out, count)[1:]),
            out=out, last_frame_out=last_frame_out, seed=job.result_meta.get("seed"),
            duration=job.request.duration, resolution=job.request.resolution.value,
            ratio=await asyncio.to_thread(_shown_ratio, job, out), provider=job.provider,
        )
    if job.error_kind == "delivery":
        where = delivery.write_errors.get(job.id) or f"{out}: {job.error_message}"
        raise JobFailed(f"the video was made but could not be written to {where}; it is "
                        f"kept at {job.result_path}",
                        kind=job.error_kind, provider=job.provider)
    raise JobFailed(job.error_message or f"the job ended {job.state.value}",
                    kind=job.error_kind, provider=job.provider)
