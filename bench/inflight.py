"""inflight: 2,000 jobs running at once on a fake gateway whose tasks take 60 s.

The real engine (with the real Magnific provider module and a real httpx client, as the bot
builds them) runs in a child process; the fake Magnific runs here, so psutil on the child gives
the engine's own RSS and CPU. Jobs are written to the store before the engine starts (as a
restart finds them: `Engine.enqueue` is measured by quota and throughput), and EngineLimits are
raised so all 2,000 are in flight together. Two modes: polling (the default PollPolicy with the
gateway's typical 60 s) and callbacks (CallbackReceiver on loopback; the fake POSTs each result
twice when the task ends). Figures: peak RSS, CPU share of one core over the whole run and while
all tasks wait, and gateway requests per job (creates, polls, downloads) counted at the fake.
Targets: RSS < 300 MB, CPU < 10 %, ≤ 4 polls per job with polling, 0 with callbacks.

CPU per job: the engine child's CPU seconds from the moment its 2,000 rows are written (so
`Engine.start` with its first claims and scheduling pass counts) to the last delivery, over
the jobs, in ms (target ≤ 5 ms). On PostgreSQL the server's own CPU over the same span is
reported beside it (it runs on the same 2 cores), not added in.

Each mode runs INFLIGHT_RUNS times (default 3), the modes in turns, and the rows give the run
with the median CPU per job, with every run's figure beside it (peak RSS: the highest run). On
this shared 2-core machine runs of the same code minutes apart differ by up to 1.5 ms a job
(bench/README.md, eighth and tenth passes), more than most changes measured here.

    python -m bench.inflight [--backend sqlite|postgres|both]
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path
from typing import Any

from bench.common import (
    Backend,
    WorkerProcess,
    backend_args,
    bench_magnific,
    code_version,
    limits_override,
    report,
    run_folder,
    small_video,
    worker_main,
)

JOBS = int(os.environ.get("INFLIGHT_JOBS", "2000"))
TASK_SECONDS = float(os.environ.get("INFLIGHT_TASK_SECONDS", "60"))
#: Knobs for finding a cause: which modes to run, and INFLIGHT_PROFILE=1 to sample the worker's
#: stacks (common.StackSampler; pyinstrument's call hooks slow this run ~10x); the top costs
#: then appear in the JSON.
MODES = os.environ.get("INFLIGHT_MODES", "polling,callbacks").split(",")
PROFILE = bool(os.environ.get("INFLIGHT_PROFILE"))
#: A run not done this many seconds after its start is reported as stalled (with what it did
#: and the CPU it spent by then) instead of failing the bench: healthy runs take ~1.5× the task.
STALL_S = float(os.environ.get("INFLIGHT_STALL_S", str(TASK_SECONDS + 120)))
RUNS = max(1, int(os.environ.get("INFLIGHT_RUNS", "3")))
LIMITS = {"gateway_in_flight": JOBS, "guild_running": JOBS, "user_running": JOBS,
          "user_queued": JOBS, **limits_override()}


async def run_mode(backend: Backend, callbacks: bool) -> dict[str, Any]:
    mode = "callbacks" if callbacks else "polling"
    with run_folder() as tmp:
        database = backend.database(tmp)
        async with bench_magnific(TASK_SECONDS, callbacks=callbacks, video=small_video()) as gw:
            worker = WorkerProcess("bench.inflight", {
                "base_url": gw.base_url, "data_dir": str(Path(tmp) / "data"), "jobs": JOBS,
                "database": database,
                "users": 200, "callbacks": callbacks, "create": "store", "limits": LIMITS,
                "profile": "sampler" if PROFILE else None,
            })
            await worker.start()
            try:
                ready = await worker.wait("ready", 60)
                created = await worker.wait("created", 300)
                server0 = backend.server_cpu()
                started = await worker.wait("started", 300)
                submitted_at = None
                while submitted_at is None:  # every create answered: all tasks are waiting
                    if gw.counts["create"] >= JOBS or "done" in worker.events:
                        submitted_at = time.monotonic()
                    await asyncio.sleep(0.2)
                try:
                    done = await worker.wait("done", max(1.0, STALL_S - (time.monotonic()
                                                                        - started["t"])))
                except TimeoutError:  # stalled: what it did by now, then stop it
                    now = time.monotonic()
                    worker.sample_now()
                    done = {"finished": now, "stalled": True, "delivered": gw.counts["download"],
                            "failed": 0, "failure_reasons": []}
                    worker.proc.kill()
                server1 = backend.server_cpu()
            finally:
                await worker.close()
        first_success = min(gw.succeeded_at.values(), default=done["finished"])
        if done.get("stalled"):
            first_success = min(first_success, done["finished"])
    begin, end = started["t"], done["finished"]
    cpu_all, wall_all = worker.cpu_between(begin, end)
    cpu_wait, wall_wait = worker.cpu_between(submitted_at, first_success)
    cpu_start, wall_start = worker.cpu_between(begin, submitted_at)
    cpu_jobs, _ = worker.cpu_between(created["t"], end)
    per_job = {k: round(gw.counts[k] / JOBS, 2) for k in ("create", "poll", "download",
                                                           "callback")}
    return {
        "mode": mode, "backend": backend.name, "jobs": JOBS, "task_seconds": TASK_SECONDS,
        "stalled": bool(done.get("stalled")),
        "delivered": done["delivered"], "failed": done["failed"],
        "failure_reasons": done["failure_reasons"],
        "rss_ready_mb": round(ready["sample"][2], 1),
        "rss_peak_mb": round(worker.max_rss(begin, end + 1), 1),
        "rss_all_waiting_mb": round(worker.max_rss(submitted_at, first_success), 1),
        "cpu_share_run": round(100 * cpu_all / wall_all, 1),
        "cpu_share_waiting": round(100 * cpu_wait / wall_wait, 1),
        "cpu_s_run": round(cpu_all, 1), "wall_s_run": round(wall_all, 1),
        "cpu_s_from_created": round(cpu_jobs, 2),
        "cpu_ms_per_job": round(1000 * cpu_jobs / JOBS, 2),
        "postgres_cpu_s": round(server1 - server0, 2),
        "thread_cpu": done.get("thread_cpu"),
        "cpu_s_start_phase": round(cpu_start, 1), "wall_s_start_phase": round(wall_start, 1),
        "wall_s_waiting": round(wall_wait, 1),
        "requests_per_job": per_job,
        "callback_statuses": dict(gw.callback_statuses),
        **{k: done[k] for k in ("top_costs", "profile_busy_s", "outside_bot_s", "claims_s",
                                "claims_share_of_busy", "claims_by_function") if k in done},
    }


def medians(results: list[dict[str, Any]]) -> list[tuple[dict[str, Any], list[dict[str, Any]]]]:
    """Per backend and mode, in the order first run: the run with the median CPU per job (the
    lower of the middle two for an even count) and all the runs, in the order they ran."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in results:
        groups.setdefault((r["backend"], r["mode"]), []).append(r)
    out = []
    for runs in groups.values():
        ranked = sorted(runs, key=lambda x: float(x["cpu_ms_per_job"]))
        out.append((ranked[(len(ranked) - 1) // 2], runs))
    return out


async def main() -> None:
    args = backend_args(__doc__)
    version = code_version()
    results = []
    servers = {}
    for name in args.backends:
        with Backend(name) as backend:
            servers[name] = backend.version()
            for _ in range(RUNS):
                results += [await run_mode(backend, mode == "callbacks") for mode in MODES]
    rows = []
    for r, runs in medians(results):
        m, req = f"[{r['backend']}] {r['mode']}", r["requests_per_job"]
        if limits_override():
            m += f" (limits {json.dumps(limits_override())})"
        if PROFILE:
            m += " (stack sampler on)"
        ok = "".join(f" ({x['delivered']}/{JOBS} delivered)" for x in runs
                     if x["delivered"] != JOBS and not x["stalled"])
        ok += "".join(f" (STALLED: {x['delivered']}/{JOBS} downloaded after "
                      f"{x['wall_s_run']:.0f} s, stopped)" for x in runs if x["stalled"])
        spread = ("" if len(runs) == 1 else f"; median of {len(runs)} runs: "
                  + ", ".join(f"{x['cpu_ms_per_job']:.2f}" for x in runs) + " ms")
        pg = (f" (+ PostgreSQL server {r['postgres_cpu_s']:.1f} CPU-s)"
              if r["backend"] == "postgres" else "")
        rows += [
            (f"{m}, {JOBS} × {TASK_SECONDS:.0f} s tasks: peak RSS",
             f"{max(x['rss_peak_mb'] for x in runs):.0f} MB{ok}", "< 300 MB"),
            (f"{m}: CPU share of one core, whole run ({r['wall_s_run']:.0f} s)",
             f"{r['cpu_share_run']:.1f} %", "< 10 %"),
            (f"{m}: CPU share while all {JOBS} wait", f"{r['cpu_share_waiting']:.1f} %",
             "report"),
            (f"{m}: gateway requests per job (create / polls / downloads)",
             f"{req['create']} / {req['poll']} / {req['download']}",
             "polls ≤ 4" if r["mode"] == "polling" else "polls 0"),
            (f"{m}: engine CPU per job (whole run)",
             f"{r['cpu_ms_per_job']:.1f} ms ({r['cpu_s_from_created']:.1f} CPU-s{spread}){pg}{ok}",
             "≤ 5 ms"),
        ]
    report("inflight", rows, {"code": version, "servers": servers, "modes": results})


if __name__ == "__main__":
    if not worker_main():
        asyncio.run(main())
