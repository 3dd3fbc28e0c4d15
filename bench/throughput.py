"""throughput: 1,000 jobs through the whole engine on an instant fake gateway, by 1 and by 2
engine processes sharing one queue, on SQLite or PostgreSQL, with a profile of one process.

Pipeline: `Engine.enqueue` (1,000 concurrent calls, 100 users, one guild) → scheduler → submit
(real Magnific module, real httpx) → poll → download (a 3 KB MP4) → deliver (a port that only
counts). The fake Magnific (in this process) finishes every task at once; each engine (a child
process) polls immediately (PollPolicy first poll at 0 s) and runs with EngineLimits raised to
1,000, so what is measured is the engine's own cost, not the poll schedule or the caps.

How the work is shared, and why. With N processes every worker opens the same database (this
process migrates it first) and the same fake gateway, waits until all are ready, and on "go"
starts its engine and makes its own 1,000/N of the enqueues at once, as N bot processes each
take the interactions of their own shards. Enqueueing from inside the workers keeps the 1- and
2-process runs the same workload (1,000 `Engine.enqueue` calls, then the pipeline) and lets the
schedulers split the queue as they do in production: each scheduling pass
(`Store.schedule`) starts whatever is queued, including the other process's jobs, and claims it
for the process that ran the pass. Writing the rows before the start instead would measure
nothing about sharing: with the caps raised to 1,000 the first pass of whichever process came
first would claim all of them (`THROUGHPUT_CREATE=store` runs that, for comparison).

Completion: each worker prints a line per delivery; this process sums them and the run ends at
the last delivery of the 1,000th job, whichever worker made it (then it tells the workers to
stop). Figures, per backend and process count: jobs/s from "go" to that last delivery, the
speed-up of 2 processes over 1, the engines' CPU per job, how busy the whole machine was (the
fake gateway and PostgreSQL share the same 2 cores), and how the deliveries split. These runs
are not profiled; a third, 1-process run under pyinstrument (as the earlier rows were measured)
gives the three bot/ functions where the busy samples go (each sample charged to the innermost
bot/ frame on its stack) and the share spent in the many-process machinery (bot/engine/claims.py,
bot/store/claims.py). pyinstrument sees only the event loop's thread: SQLite's own work runs on
aiosqlite's thread (reported as `thread_cpu.other_threads`), PostgreSQL's in the server.

    python -m bench.throughput [--backend sqlite|postgres|both] [--processes 1|2|both]
"""

from __future__ import annotations

import asyncio
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil

from bench.common import (
    Backend,
    WorkerProcess,
    backend_args,
    bench_magnific,
    code_version,
    limits_override,
    machine_busy,
    report,
    run_folder,
    small_video,
    worker_main,
)

JOBS = int(os.environ.get("THROUGHPUT_JOBS", "1000"))
#: "enqueue" (default, see the docstring) or "store": rows written by this process before start.
CREATE = os.environ.get("THROUGHPUT_CREATE", "enqueue")
#: THROUGHPUT_PROFILE=0 skips the profiled 1-process run.
PROFILE_RUN = os.environ.get("THROUGHPUT_PROFILE", "1") != "0"
#: Runs per process count (in turns); the rows give the median run and list them all. Runs of
#: the same code minutes apart differ by up to a fifth here (bench/README.md, eighth pass).
RUNS = max(1, int(os.environ.get("THROUGHPUT_RUNS", "3")))
PROFILE = Path(tempfile.gettempdir()) / "seedance-bench-throughput-{backend}.txt"
LIMITS = {"gateway_in_flight": JOBS, "guild_running": JOBS, "user_running": JOBS,
          "user_queued": JOBS, **limits_override()}


async def write_rows(database: str) -> None:
    """THROUGHPUT_CREATE=store: the 1,000 queued rows, written before any engine starts."""
    import uuid

    from bench.common import bench_request
    from bot.store import JobState, NewJob, Store

    store = await Store.open(database)
    for i in range(JOBS):
        await store.create_job(NewJob(
            id=str(uuid.uuid4()), guild_id="g1", channel_id="c1", user_id=f"u{i % 100}",
            role_ids=(), request=bench_request(i), provider="magnific", model=None,
            state=JobState.QUEUED, credits_estimate=5,
        ), [], now=time.time())
    await store.close()


async def run(backend: Backend, processes: int, *, profile: Path | None) -> dict[str, Any]:
    from bot.store import Store

    with run_folder() as tmp:
        database = backend.database(tmp)
        if CREATE == "store":
            await write_rows(database)
        else:
            await (await Store.open(database)).close()  # migrated once, before the workers
        async with bench_magnific(0.0, video=small_video()) as gw:
            workers = []
            for k in range(processes):
                first = k * JOBS // processes
                count = (k + 1) * JOBS // processes - first
                workers.append(WorkerProcess("bench.throughput", {
                    "base_url": gw.base_url, "data_dir": str(Path(tmp) / f"data-{k}"),
                    "database": database, "jobs": JOBS, "share": [first, count],
                    "users": 100, "create": "store" if CREATE == "store" else "enqueue",
                    "limits": LIMITS, "poll_policy": {"first_fraction": 0.0, "first_min": 0.0},
                    "profile": str(profile) if profile else None, "shared": True,
                }))
                if CREATE == "store":
                    workers[-1].cfg["share"] = [0, 0]  # the rows are there already
            me = psutil.Process()
            try:
                for w in workers:
                    await w.start()
                for w in workers:
                    await w.wait("ready", 120)
                busy0, _ = machine_busy()
                own0, server0 = sum(me.cpu_times()[:2]), backend.server_cpu()
                go = time.monotonic()
                for w in workers:
                    await w.send("go")
                while True:
                    lines = [w.events.get("progress", {}) for w in workers]
                    if sum(p.get("delivered", 0) + p.get("failed", 0) for p in lines) >= JOBS:
                        break
                    for w in workers:
                        if "exit" in w.events:
                            await w.wait("done", 1)  # raises with the worker's stderr
                    if time.monotonic() - go > 3600:
                        raise TimeoutError("throughput run took over an hour")
                    await asyncio.sleep(0.02)
                finish = max(p["t"] for p in lines if p)
                busy1, now1 = machine_busy()
                own1, server1 = sum(me.cpu_times()[:2]), backend.server_cpu()
                for w in workers:
                    await w.send("stop")
                done = [await w.wait("done", 120) for w in workers]
                enqueued = [w.events.get("enqueued", {}) for w in workers]
            finally:
                for w in workers:
                    await w.close()
    wall = finish - go
    cpu = [w.cpu_between(go, finish)[0] for w in workers]
    result: dict[str, Any] = {
        "backend": backend.name, "processes": processes, "jobs": JOBS, "create": CREATE,
        "profiled": profile is not None,
        "delivered": sum(d["delivered"] for d in done), "failed": sum(d["failed"] for d in done),
        "failure_reasons": sorted({r for d in done for r in d["failure_reasons"]})[:5],
        "delivered_by_process": [d["delivered"] for d in done],
        "wall_s": round(wall, 2), "jobs_per_s": round(JOBS / wall, 1),
        "enqueue_phase_s": max((e.get("seconds") or 0.0 for e in enqueued), default=None),
        "engine_cpu_s": [round(c, 2) for c in cpu],
        "engine_cpu_ms_per_job": round(1000 * sum(cpu) / JOBS, 2),
        "engine_thread_cpu_s": [d.get("thread_cpu") for d in done],
        "gateway_cpu_s": round(own1 - own0, 2),
        "postgres_cpu_s": round(server1 - server0, 2),
        "machine_busy_share":
            f"{100 * (busy1 - busy0) / ((now1 - go) * (os.cpu_count() or 1)):.0f} %",
        "peak_rss_mb": [round(w.max_rss(), 1) for w in workers],
        "requests_per_job": {k: round(gw.counts[k] / JOBS, 2)
                             for k in ("create", "poll", "download")},
    }
    if profile is not None:
        d = done[0]
        result.update({k: d[k] for k in ("profile_busy_s", "profile_idle_s", "outside_bot_s",
                                          "top_costs", "claims_s", "claims_share_of_busy",
                                          "claims_by_function")},
                      profile_text=str(profile))
    return result


def _median(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The run with the median jobs/s (the lower of the middle two for an even count)."""
    return sorted(runs, key=lambda r: float(r["jobs_per_s"]))[(len(runs) - 1) // 2]


def _summary(r: dict[str, Any]) -> str:
    split = "/".join(map(str, r["delivered_by_process"]))
    return (f"{r['jobs_per_s']:.1f} jobs/s ({r['wall_s']:.1f} s, {r['delivered']} delivered"
            + (f", split {split}" if r["processes"] > 1 else "")
            + f"; engine CPU {r['engine_cpu_ms_per_job']:.1f} ms/job;"
            f" machine {r['machine_busy_share']} busy)")


async def main() -> None:
    args = backend_args(__doc__, extra=lambda p: p.add_argument(
        "--processes", choices=["1", "2", "both"], default="both",
        help="engine processes sharing the queue: 1, 2, or both runs (1 then 2)"))
    counts = [1, 2] if args.processes == "both" else [int(args.processes)]
    version = code_version()  # before the runs: the workers import what is on disk now
    at = version[:7] + (" + uncommitted bot/" if "uncommitted" in version else "")
    rows: list[tuple[str, str, str]] = []
    details: dict[str, Any] = {"code": version, "runs": []}
    for name in args.backends:
        with Backend(name) as backend:
            tag = f"[{name}] " + ("" if CREATE == "enqueue" else "rows written before start, ")
            if limits_override():
                tag += f"limits {json.dumps(limits_override())}, "
            every: dict[int, list[dict[str, Any]]] = {n: [] for n in counts}
            for _ in range(RUNS):  # in turns, 1 then 2 processes, so both see the same minutes
                for n in counts:
                    every[n].append(await run(backend, n, profile=None))
            results = {n: _median(every[n]) for n in counts}
            profiled = None
            if PROFILE_RUN and 1 in counts:
                profiled = await run(backend, 1, profile=Path(str(PROFILE).format(backend=name)))
            details["runs"] += [*(r for n in counts for r in every[n]),
                                *([profiled] if profiled else [])]
            details.setdefault("servers", {})[name] = backend.version()
        for n, r in results.items():
            runs = ("" if RUNS == 1 else f" (median of {RUNS} runs: "
                    + ", ".join(f"{x['jobs_per_s']:.1f}" for x in every[n]) + ")")
            rows.append((f"{tag}{n} process{'es' if n > 1 else ''}: {JOBS} jobs enqueue →"
                         f" delivered, instant gateway (at {at})", _summary(r) + runs,
                         "≥ 100 jobs/s" if n == 1 else "≥ 1.8× 1 process"))
        if 1 in results and 2 in results:
            rows.append((f"{tag}speed-up of 2 processes over 1",
                         f"{results[2]['jobs_per_s'] / results[1]['jobs_per_s']:.2f}×",
                         "≥ 1.8×"))
        if profiled is not None:
            top = "; ".join(f"{c['where']} {c['share_of_busy']}" for c in profiled["top_costs"])
            claims = ", ".join(f"{c['where'].split(' ')[0]} {c['seconds']:.2f} s"
                               for c in profiled["claims_by_function"][:4])
            rows += [
                (f"{tag}1 process under pyinstrument (as the earlier rows were measured)",
                 f"{profiled['jobs_per_s']:.1f} jobs/s ({profiled['wall_s']:.1f} s)", "report"),
                (f"{tag}top 3 costs (share of busy samples)", top, "report"),
                (f"{tag}claims, leases, schedule pass (share of busy samples)",
                 f"{profiled['claims_share_of_busy']} ({claims})", "report"),
            ]
    report("throughput", rows, details)


if __name__ == "__main__":
    if not worker_main():
        asyncio.run(main())
