"""Shared plumbing for the benchmark scripts: how a figure is reported and recorded.

A benchmark reports; it never fails. Each script prints one JSON object and appends one row per
figure to bench/RESULTS.md, so the history of a number stays next to the code that made it.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import statistics
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"
HEADER = (
    "# Benchmark results\n\n"
    "Appended by the scripts in this folder (`python -m bench.<name>`); newest last.\n\n"
    "| date (UTC) | machine | figure | value | target |\n"
    "|---|---|---|---|---|\n"
)


def machine() -> str:
    """Enough to compare rows: CPU count, memory, Python, OS."""
    mem = psutil.virtual_memory().total / 2**30
    return (f"{os.cpu_count()} cpu, {mem:.0f} GiB, py{platform.python_version()}, "
            f"{platform.system().lower()}")


def code_version() -> str:
    """HEAD (hash and subject) plus any uncommitted files under bot/ and cogs/: the tree is
    shared with engineers at work, so a figure belongs to what was on disk, not only a commit."""
    import subprocess

    root = Path(__file__).resolve().parents[1]

    def git(*args: str) -> str:
        return subprocess.run(["git", *args], capture_output=True, text=True,
                              cwd=root).stdout.strip()

    dirty = [line[3:] for line in git("status", "--porcelain", "bot", "cogs").splitlines()]
    head = git("log", "-1", "--format=%h %s")
    return head + (f" + uncommitted {', '.join(dirty)}" if dirty else "")


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100); the max for q=100."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[rank]


def summary_ms(seconds: list[float]) -> dict[str, float]:
    ms = [s * 1000 for s in seconds]
    return {"n": len(ms), "p50_ms": round(statistics.median(ms), 2),
            "p99_ms": round(percentile(ms, 99), 2), "max_ms": round(max(ms), 2)}


def rss_mb(pid: int | None = None) -> float:
    return psutil.Process(pid).memory_info().rss / 2**20


def report(bench: str, rows: list[tuple[str, str, str]], details: dict[str, Any]) -> None:
    """Print the JSON for `bench` and append (figure, value, target) rows to RESULTS.md.

    BENCH_NO_RECORD=1 prints only (for trying a script with small knobs)."""
    print(json.dumps({"bench": bench, "machine": machine(),
                      "figures": [{"figure": f, "value": v, "target": t} for f, v, t in rows],
                      **details}, indent=2, default=str, ensure_ascii=False))
    if os.environ.get("BENCH_NO_RECORD"):
        return
    if not RESULTS.exists():
        RESULTS.write_text(HEADER)
    date = datetime.now(UTC).strftime("%Y-%m-%d %H:%M")
    with RESULTS.open("a") as out:
        for figure, value, target in rows:
            out.write(f"| {date} | {machine()} | {bench}: {figure} | {value} | {target} |\n")


# ---- which database: --backend sqlite|postgres ----------------------------------------------
BACKENDS = ("sqlite", "postgres")


def backend_args(description: str | None, argv: list[str] | None = None,
                 extra: Any = None) -> Any:
    """The scripts' command line: `--backend sqlite|postgres|both` (default sqlite), plus what
    `extra(parser)` adds. `args.backends` is the list to run, in order."""
    import argparse

    parser = argparse.ArgumentParser(description=(description or "").split("\n")[0])
    parser.add_argument("--backend", choices=[*BACKENDS, "both"], default="sqlite",
                        help="the store's database: a SQLite file (default), a fresh database "
                             "on a throwaway PostgreSQL server (tests/pgserver.py), or both")
    if extra is not None:
        extra(parser)
    args = parser.parse_args(argv)
    args.backends = list(BACKENDS) if args.backend == "both" else [args.backend]
    return args


class Backend:
    """Where a run's store lives. `with Backend("postgres") as b:` starts a throwaway
    PostgreSQL (tests/pgserver.py: loopback, fsync and synchronous_commit off: speed over
    durability, as in the tests) and stops it on exit; `b.database(folder)` is a fresh
    database each call (a SQLite file in `folder`, or a new PostgreSQL database's URL), for
    `Store.open` or `engine_worker`'s cfg["database"]. `server_cpu()` is the server's CPU
    seconds so far (postmaster, its live backends and the ones it reaped); 0 on SQLite, whose
    work runs inside the process that opened the file."""

    def __init__(self, name: str) -> None:
        if name not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, not {name!r}")
        self.name = name
        self.server: Any = None
        self._files = 0

    def __enter__(self) -> Backend:
        if self.name == "postgres":
            from tests import pgserver

            self.server = pgserver.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None

    def database(self, folder: Path | str) -> str:
        if self.server is not None:
            return str(self.server.create_database())
        self._files += 1
        Path(folder).mkdir(parents=True, exist_ok=True)
        return str(Path(folder) / f"bench-{self._files}.sqlite3")

    def version(self) -> str:
        if self.server is None:
            import sqlite3

            return f"sqlite {sqlite3.sqlite_version}"
        import subprocess

        out = subprocess.run([str(Path(self.server.bindir) / "postgres"), "--version"],
                             capture_output=True, text=True).stdout.strip()
        return out.replace("postgres (PostgreSQL) ", "postgresql ") or "postgresql"

    def _postmaster(self) -> psutil.Process | None:
        if self.server is None or self.server.root is None:
            return None
        pid = int((Path(self.server.root) / "data" / "postmaster.pid").read_text().split()[0])
        return psutil.Process(pid)

    def server_cpu(self) -> float:
        master = self._postmaster()
        if master is None:
            return 0.0
        t = master.cpu_times()
        total = t.user + t.system + t.children_user + t.children_system
        for child in master.children(recursive=True):
            with contextlib.suppress(psutil.Error):
                c = child.cpu_times()
                total += c.user + c.system
        return total


def limits_override() -> dict[str, Any]:
    """BENCH_LIMITS='{"claim_interval": 3600}': EngineLimits fields the engine benches
    (inflight, throughput) apply over their own, to find what a setting costs (A/B)."""
    raw = os.environ.get("BENCH_LIMITS")
    return json.loads(raw) if raw else {}


def machine_busy() -> tuple[float, float]:
    """(busy CPU seconds of the whole machine, monotonic now): two readings give how much of
    all cores was used, whoever used it (the load of other work shows here too)."""
    t = psutil.cpu_times()
    return t.user + t.nice + t.system + t.irq + t.softirq + getattr(t, "steal", 0.0), \
        time.monotonic()


# ---- shared by inflight, completion and throughput ------------------------------------------
# The engine under test runs in its own process (`engine_worker`), so psutil figures are its
# alone; the fake gateway runs in the bench process and counts what reaches it.

BOT_DIR = Path(__file__).resolve().parents[1] / "bot"
BENCH_KEY = "bench-magnific-key"


def run_folder() -> Any:
    """A temporary folder for one run (`with run_folder() as tmp:`), removed when the bench
    process exits rather than when the run ends.

    The root file system of these machines is ext4 without a journal, and there the kernel
    skips, for every new file or folder, each inode freed in the last 60 s (360 s while its
    inode table block is unwritten): `recently_deleted` in fs/ext4/ialloc.c, seen with perf.
    After a run's 2,000 job folders were deleted, the next run's `mkdir` and `open` of a new
    file cost 370-470 µs of CPU each instead of 20-40 µs: up to 0.8 ms a job that says
    nothing about the engine (bench/README.md, tenth pass). Runs of one bench no longer pay
    for the ones before them; work done just before the bench (a test run) still can."""
    import atexit
    import shutil
    import tempfile

    folder = tempfile.mkdtemp(prefix="seedance-bench-")
    atexit.register(shutil.rmtree, folder, True)
    return contextlib.nullcontext(folder)


def small_video() -> bytes:
    """A real 1 s 160x96 MP4 (~3 KB): downloads exercise the pipeline, not the disk."""
    from tests.fakes.common import sample_video

    return sample_video(160, 96, 1.0, audio=False)


def bench_request(i: int) -> Any:
    """A request Magnific accepts (5 s, 480p, 16:9, no audio)."""
    from bot.models import GenerationRequest

    return GenerationRequest(prompt=f"bench job {i}", provider="magnific", resolution="480p",
                             duration=5, ratio="16:9", audio=False)


def _bench_magnific_class() -> type:
    """Built on first use so importing bench.common does not import the test fakes."""
    import asyncio
    import time
    from collections import Counter

    import aiohttp
    from aiohttp import web

    from tests.fakes.common import sample_video
    from tests.fakes.magnific import FakeMagnific, MagnificTask

    class BenchMagnific(FakeMagnific):
        """FakeMagnific whose tasks take `task_seconds` of wall time instead of N polls.

        With `callbacks`, each finished task is POSTed (twice, as gateways redeliver) to its
        `webhook_url` the moment it finishes. `succeeded_at[task_id]` is that moment
        (time.monotonic, comparable across processes on Linux); `counts` has create, poll,
        download and callback.
        """

        api_key = BENCH_KEY

        def __init__(self, task_seconds: float, *, callbacks: bool = False,
                     video: bytes | None = None) -> None:
            super().__init__()
            self.task_seconds = task_seconds
            self.callbacks = callbacks
            self.video = video
            self.created_at: dict[str, float] = {}
            self.succeeded_at: dict[str, float] = {}
            self.counts: Counter[str] = Counter()
            self.callback_statuses: Counter[int] = Counter()
            self._timers: set[asyncio.Task[None]] = set()
            self._session: aiohttp.ClientSession | None = None

        async def __aexit__(self, *exc: object) -> None:
            for timer in self._timers:
                timer.cancel()
            if self._session is not None:
                await self._session.close()
            await super().__aexit__(*exc)

        async def _create(self, request: web.Request) -> web.Response:
            self.counts["create"] += 1
            before = len(self.tasks)
            response = await super()._create(request)  # no await inside: the new task is last
            if len(self.tasks) > before:
                task = next(reversed(self.tasks.values()))
                self.created_at[task.task_id] = time.monotonic()
                if self.callbacks and task.body.get("webhook_url"):
                    timer = asyncio.create_task(self._finish_later(task))
                    self._timers.add(timer)
                    timer.add_done_callback(self._timers.discard)
            return response

        async def _get(self, request: web.Request) -> web.Response:
            self.counts["poll"] += 1
            return await super()._get(request)

        async def _serve_file(self, request: web.Request) -> web.StreamResponse:
            self.counts["download"] += 1
            return await super()._serve_file(request)

        def advance(self, task: MagnificTask) -> None:
            if task.status in ("COMPLETED", "FAILED"):
                return
            task.polls += 1
            done_at = self.created_at[task.task_id] + self.task_seconds
            if time.monotonic() >= done_at:
                self.succeeded_at.setdefault(task.task_id, done_at)  # when it turned succeeded
                self.finish(task)
            else:
                task.status = "IN_PROGRESS"

        def finish(self, task: MagnificTask) -> None:
            task.status = "COMPLETED"
            task.generated = [self.add_file(f"{task.task_id}.mp4", self.video or sample_video(),
                                            ttl=self.file_ttl)]

        async def _finish_later(self, task: MagnificTask) -> None:
            await asyncio.sleep(self.task_seconds)
            if task.status == "COMPLETED":  # a poll saw it first
                return
            self.succeeded_at[task.task_id] = time.monotonic()
            self.finish(task)
            if self._session is None:
                self._session = aiohttp.ClientSession()
            raw = json.dumps(task.obj()).encode()
            for _ in range(2):
                self.counts["callback"] += 1
                try:
                    async with self._session.post(
                        task.body["webhook_url"], data=raw,
                        headers={"Content-Type": "application/json"},
                    ) as resp:
                        self.callback_statuses[resp.status] += 1
                except aiohttp.ClientError:
                    self.callback_statuses[0] += 1

    return BenchMagnific


def bench_magnific(task_seconds: float, *, callbacks: bool = False,
                   video: bytes | None = None) -> Any:
    """A `BenchMagnific` fake gateway (see `_bench_magnific_class`); use `async with`."""
    return _bench_magnific_class()(task_seconds, callbacks=callbacks, video=video)


def emit(event: str, **fields: Any) -> None:
    """One JSON line on stdout: how the worker talks to the bench process."""
    sys.stdout.write(json.dumps({"event": event, "t": time.monotonic(), **fields},
                                default=str) + "\n")
    sys.stdout.flush()


class CountingDelivery:
    """The engine's delivery port, doing nothing heavy: counts posts and failures.

    `on_change` (if set) is called after each delivery or failure: a worker sharing the queue
    with others reports its count to the bench process, which sums them."""

    def __init__(self, expected: int) -> None:
        import asyncio

        self.expected = expected
        self.delivered: dict[str, str] = {}
        self.failed: dict[str, str] = {}
        self.done = asyncio.Event()
        self.on_change: Any = None

    async def on_event(self, job: Any, event: Any) -> None:
        if event.kind.value in ("failed", "cancelled", "rejected"):
            self.failed[job.id] = str(event.reason)
            self._check()

    async def deliver(self, job: Any, result: Any) -> str:
        ref = self.delivered.setdefault(job.id, f"msg-{len(self.delivered) + 1}")
        self._check()
        return ref

    def _check(self) -> None:
        if self.on_change is not None:
            self.on_change()
        if len(self.delivered) + len(self.failed) >= self.expected:
            self.done.set()


def thread_cpu() -> dict[str, float]:
    """This process's CPU seconds on its main thread (the event loop) and on the others
    (aiosqlite's thread, the default executor's: file writes and media probes, which the
    profilers here do not see), those also by thread name ("asyncio_0" and so on counted as
    "asyncio"); threads that have ended are not counted."""
    names = {t.native_id: t.name.rstrip("0123456789_") or t.name for t in threading.enumerate()}
    main = other = 0.0
    by_name: dict[str, float] = {}
    for t in psutil.Process().threads():
        spent = t.user_time + t.system_time
        if t.id == os.getpid():
            main += spent
        else:
            other += spent
            name = names.get(t.id, "unnamed")
            by_name[name] = by_name.get(name, 0.0) + spent
    return {"main": round(main, 2), "other_threads": round(other, 2),
            **{f"thread {k}": round(v, 2) for k, v in sorted(by_name.items())}}


async def engine_worker(cfg: dict[str, Any]) -> None:
    """Run the real engine against the fake Magnific at cfg["base_url"] until its jobs are
    delivered or failed. Prints JSON lines: ready, (created,) started, enqueued, done.

    cfg: base_url, data_dir, database (a SQLite path or a postgresql:// URL, already migrated
    when several workers share it; default: settings.database_path in data_dir), jobs (all
    jobs of the run), share ([first, count]: which of them this worker writes; default all),
    users, callbacks (bool), create ("store": rows written before start, as a restart finds
    them; "enqueue": concurrent `Engine.enqueue` calls after start), limits (EngineLimits
    fields), poll_policy (PollPolicy fields or None), profile (path for a pyinstrument text
    report, "sampler" for `StackSampler`, or None), shared (bool: other workers run the same
    queue; then the worker waits for "go" on stdin before it starts, prints a "progress" line
    after each of its deliveries, and stops when "stop" comes on stdin, since it cannot know
    when the others' jobs are done).
    """
    import asyncio
    import logging
    import uuid

    from bot.config import Settings
    from bot.engine import Engine, EngineLimits, PollPolicy
    from bot.gctune import settle_gc
    from bot.httpclient import new_client
    from bot.providers import create_provider
    from bot.store import JobState, NewJob, Store
    from bot.webhooks import CallbackReceiver

    logging.basicConfig(level=logging.WARNING)
    jobs, users = int(cfg["jobs"]), int(cfg.get("users", 100))
    first, count = cfg.get("share") or (0, jobs)
    shared = bool(cfg.get("shared"))
    settings = Settings(
        seedance_data_dir=Path(cfg["data_dir"]), magnific_api_key=BENCH_KEY,
        magnific_base_url=cfg["base_url"], seedance_user_daily_credits=10**9,
        seedance_guild_monthly_credits=10**9, seedance_private_hosts="127.0.0.1",
    )
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    store = await Store.open(cfg.get("database") or settings.database_path)
    http = new_client(timeout=60.0)  # as cogs/app.py builds it
    provider = create_provider("magnific", settings, client=http)
    delivery = CountingDelivery(jobs)
    if shared:
        delivery.on_change = lambda: emit("progress", delivered=len(delivery.delivered),
                                          failed=len(delivery.failed))
    receiver: CallbackReceiver | None = None
    engine: Engine

    async def sink(job_id: str, state: Any) -> None:
        await engine.on_callback(job_id, state)

    if cfg.get("callbacks"):
        receiver = CallbackReceiver({"magnific": provider}, sink, base_url="http://placeholder",
                                    secret="bench-secret", host="127.0.0.1", port=0)
        await receiver.start()
        receiver.base_url = f"http://127.0.0.1:{receiver.bound_port}"
    policy = cfg.get("poll_policy")
    engine = Engine(settings, store, delivery=delivery, providers={"magnific": provider},
                    http=http, limits=EngineLimits(**cfg.get("limits", {})),
                    callbacks=receiver, poll_policy=PollPolicy(**policy) if policy else None)
    profiler: Any = None
    if cfg.get("profile") == "sampler" or str(cfg.get("profile", "")).endswith(".stacks"):
        profiler = StackSampler()
    elif cfg.get("profile"):
        from pyinstrument import Profiler

        profiler = Profiler(interval=0.001, async_mode="disabled")

    async def line_from_parent() -> str:
        return (await asyncio.to_thread(sys.stdin.readline)).strip()

    emit("ready", pid=os.getpid())
    if shared:
        await line_from_parent()  # "go": every worker is ready
    if profiler is not None:
        profiler.start()
    enqueue_s = None
    cpu_at_start = thread_cpu()
    if cfg.get("create", "store") == "store":
        for i in range(first, first + count):
            await store.create_job(NewJob(
                id=str(uuid.uuid4()), guild_id="g1", channel_id="c1", user_id=f"u{i % users}",
                role_ids=(), request=bench_request(i), provider="magnific",
                model=provider.default_model, state=JobState.QUEUED, credits_estimate=5,
            ), [], now=time.time())
        emit("created")
        await engine.start()
        settle_gc()  # as the bot's setup_hook does once started (cogs/app.py)
        emit("started")
    else:
        await engine.start()
        settle_gc()  # as the bot's setup_hook does once started (cogs/app.py)
        emit("started")
        began = time.perf_counter()
        await asyncio.gather(*(
            engine.enqueue(bench_request(i), guild_id="g1", channel_id="c1",
                           user_id=f"u{i % users}")
            for i in range(first, first + count)
        ))
        enqueue_s = time.perf_counter() - began
        emit("enqueued", seconds=enqueue_s)
    if shared:
        await line_from_parent()  # "stop": every job is delivered, across the workers
    else:
        await delivery.done.wait()
    finished = time.monotonic()
    cpu_at_end = thread_cpu()
    costs: dict[str, Any] = {}
    if profiler is not None:
        profiler.stop()
        if isinstance(profiler, StackSampler):
            costs = profile_costs(profiler)
        else:
            Path(cfg["profile"]).write_text(profiler.output_text(unicode=True, color=False))
            costs = profile_costs(profiler.last_session)
    reasons = sorted(set(delivery.failed.values()))[:5]
    await engine.stop()
    if receiver is not None:
        await receiver.stop()
    await provider.aclose()
    await http.aclose()
    await store.close()
    emit("done", finished=finished, delivered=len(delivery.delivered),
         failed=len(delivery.failed), failure_reasons=reasons, enqueue_s=enqueue_s,
         thread_cpu={k: round(cpu_at_end[k] - cpu_at_start.get(k, 0.0), 2)
                     for k in cpu_at_end},
         **costs)


def worker_main() -> bool:
    """`python -m bench.<name> --worker '<json>'` runs `engine_worker`; True if it did."""
    import asyncio

    if len(sys.argv) == 3 and sys.argv[1] == "--worker":
        asyncio.run(engine_worker(json.loads(sys.argv[2])))
        return True
    return False


class WorkerProcess:
    """The engine worker as a child process, its JSON lines, and psutil samples of it."""

    def __init__(self, module: str, cfg: dict[str, Any]) -> None:
        self.module = module
        self.cfg = cfg
        self.events: dict[str, dict[str, Any]] = {}
        self.samples: list[tuple[float, float, float]] = []  # (monotonic, cpu s, rss MB)
        self.proc: Any = None
        self._changed: Any = None
        self._tasks: list[Any] = []
        self.stderr_path = Path(cfg["data_dir"]).parent / f"{Path(cfg['data_dir']).name}.stderr"

    async def start(self, interval: float = 0.5) -> None:
        import asyncio

        self._changed = asyncio.Condition()
        env = {k: v for k, v in os.environ.items() if not k.startswith(("SEEDANCE_", "MAGNIFIC_"))}
        with self.stderr_path.open("wb") as err:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", self.module, "--worker", json.dumps(self.cfg),
                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=err,
                env=env,
                cwd=str(Path(__file__).resolve().parents[1]),
            )
        self._ps = psutil.Process(self.proc.pid)
        self._tasks = [asyncio.create_task(self._read()),
                       asyncio.create_task(self._sample(interval))]

    async def send(self, line: str) -> None:
        """A line on the worker's stdin ("go", "stop" for a `shared` worker)."""
        assert self.proc is not None and self.proc.stdin is not None
        self.proc.stdin.write(line.encode() + b"\n")
        await self.proc.stdin.drain()

    def sample_now(self) -> tuple[float, float, float]:
        cpu = self._ps.cpu_times()
        sample = (time.monotonic(), cpu.user + cpu.system, self._ps.memory_info().rss / 2**20)
        self.samples.append(sample)
        return sample

    async def _sample(self, interval: float) -> None:
        import asyncio

        while True:
            try:
                self.sample_now()
            except psutil.Error:
                return
            await asyncio.sleep(interval)

    async def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        async for raw in self.proc.stdout:
            try:
                line = json.loads(raw)
            except ValueError:
                continue
            with contextlib.suppress(psutil.Error):
                line["sample"] = self.sample_now()
            async with self._changed:
                self.events[line["event"]] = line
                self._changed.notify_all()
        async with self._changed:
            self.events.setdefault("exit", {"event": "exit", "t": time.monotonic()})
            self._changed.notify_all()

    async def wait(self, event: str, timeout: float) -> dict[str, Any]:  # noqa: ASYNC109
        """The event's line; raises if the worker exits first or time runs out."""
        import asyncio

        async def until() -> dict[str, Any]:
            async with self._changed:
                await self._changed.wait_for(lambda: event in self.events or "exit" in self.events)
                if event not in self.events:
                    tail = self.stderr_path.read_text(errors="replace")[-3000:]
                    raise RuntimeError(f"worker exited before {event!r}:\n{tail}")
                return self.events[event]

        return await asyncio.wait_for(until(), timeout)

    def cpu_between(self, start: float, end: float) -> tuple[float, float]:
        """(CPU seconds, wall seconds) between the samples nearest two moments."""
        def near(t: float) -> tuple[float, float, float]:
            return min(self.samples, key=lambda s: abs(s[0] - t))

        a, b = near(start), near(end)
        return b[1] - a[1], max(b[0] - a[0], 1e-9)

    def max_rss(self, start: float = 0.0, end: float = float("inf")) -> float:
        return max((s[2] for s in self.samples if start <= s[0] <= end), default=float("nan"))

    async def close(self) -> None:
        import asyncio

        if self.proc is not None and self.proc.returncode is None:
            try:
                await asyncio.wait_for(self.proc.wait(), 30)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


class StackSampler:
    """A light sampling profiler: a thread reads the main thread's stack every `interval`.

    pyinstrument hooks every call, which slowed the 2,000-job in-flight run ~10x and changed
    what it measured; this only looks. `frame_records` has pyinstrument's shape, so
    `profile_costs` reads both.
    """

    def __init__(self, interval: float = 0.005) -> None:
        import threading

        self.interval = interval
        self.frame_records: list[tuple[list[str], float]] = []
        self._main = threading.main_thread().ident
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        last = time.perf_counter()
        while not self._stop.wait(self.interval):
            frame = sys._current_frames().get(self._main or 0)
            now = time.perf_counter()
            stack: list[str] = []
            while frame is not None:
                code = frame.f_code
                stack.append(f"{code.co_qualname}\x00{code.co_filename}\x00{code.co_firstlineno}")
                frame = frame.f_back
            stack.reverse()
            if stack:
                self.frame_records.append((stack, now - last))
            last = now


def _frame(identifier: str) -> tuple[str, str, str]:
    """(function, file, first line) of a pyinstrument frame identifier."""
    parts = identifier.split("\x01")
    func, file, line = [*parts[0].split("\x00"), "", ""][:3]
    cls = next((p[1:] for p in parts[1:] if p.startswith("c")), "")
    return (f"{cls}.{func}" if cls else func), file, line


#: The many-process machinery (claims, leases, heartbeats, the shared scheduling pass):
#: `profile_costs` charges busy samples under these files separately, to tell what it costs.
CLAIMS_FILES = ("engine/claims.py", "store/claims.py")


def profile_costs(session: Any, top: int = 3) -> dict[str, Any]:
    """Where the busy (non-idle) samples go: each is charged to the innermost frame of our
    bot/ code on its stack (what we could change), with the library it was in below that.

    `claims` charges the same busy samples to the innermost frame in bot/engine/claims.py or
    bot/store/claims.py (Keeper.pass_once, ClaimsStore.renew/orphans/schedule/...), whatever
    ran below it: what many processes on one queue cost this one."""
    from collections import Counter, defaultdict

    busy = idle = 0.0
    ours: Counter[str] = Counter()
    claims: Counter[str] = Counter()
    below: dict[str, Counter[str]] = defaultdict(Counter)
    for stack, seconds in session.frame_records:
        leaf_func, leaf_file, _ = _frame(stack[-1])
        # Waiting in the event loop: selectors.select (stack sampler) or epoll.poll, the C
        # call pyinstrument shows below it.
        if (leaf_func.endswith("select") and leaf_file.endswith("selectors.py")) or (
            leaf_func in ("epoll.poll", "poll") and not leaf_file.endswith(".py")
        ):
            idle += seconds
            continue
        busy += seconds
        owner = "(no bot/ frame: event loop, aiohttp, httpx)"
        for ident in reversed(stack):
            func, file, line = _frame(ident)
            if file.startswith(str(BOT_DIR)):
                owner = f"{func} (bot/{Path(file).relative_to(BOT_DIR)}:{line})"
                break
        for ident in reversed(stack):
            func, file, line = _frame(ident)
            # The transaction bodies are nested functions (`body`): name their method instead.
            if file.startswith(str(BOT_DIR)) and file.endswith(CLAIMS_FILES) \
                    and func.rpartition(".")[2] not in ("body", "<genexpr>", "<lambda>",
                                                      "<listcomp>", "<dictcomp>", "<setcomp>"):
                claims[f"{func} (bot/{Path(file).relative_to(BOT_DIR)}:{line})"] += seconds
                break
        ours[owner] += seconds
        lib = Path(leaf_file).parts
        where = next((p for p in reversed(lib) if p in ("site-packages", "python3.11")), None)
        library = lib[lib.index(where) + 1] if where and lib.index(where) + 1 < len(lib) else (
            "bot" if leaf_file.startswith(str(BOT_DIR)) else Path(leaf_file).name)
        below[owner][library.removesuffix(".py")] += seconds
    ranked = [
        {"where": owner, "seconds": round(s, 2), "share_of_busy": f"{100 * s / busy:.0f} %",
         "mostly_in": [lib for lib, _ in below[owner].most_common(2)]}
        for owner, s in ours.most_common(top + 1)
        if not owner.startswith("(no bot/")
    ][:top]
    claims_s = sum(claims.values())
    return {"profile_busy_s": round(busy, 2), "profile_idle_s": round(idle, 2),
            "top_costs": ranked,
            "outside_bot_s": round(ours.get("(no bot/ frame: event loop, aiohttp, httpx)", 0.0),
                                   2),
            "claims_s": round(claims_s, 2),
            "claims_share_of_busy": f"{100 * claims_s / busy:.1f} %" if busy else "n/a",
            "claims_by_function": [{"where": w, "seconds": round(v, 2)}
                                   for w, v in claims.most_common(6)]}
