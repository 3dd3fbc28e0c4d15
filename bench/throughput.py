"""throughput: 1,000 jobs through the whole engine on an instant fake gateway, with a profile.

Pipeline: `Engine.enqueue` (1,000 concurrent calls, 100 users, one guild) → scheduler → submit
(real Magnific module, real httpx) → poll → download (a 3 KB MP4) → deliver (a port that only
counts). The fake Magnific (in this process) finishes every task at once; the engine (in a
child process, profiled by pyinstrument) polls immediately (PollPolicy first poll at 0 s) and
runs with EngineLimits raised to 1,000, so what is measured is the engine's own cost, not the
poll schedule or the per-guild caps. Figures: jobs/s from the first enqueue to the last
delivery, the enqueue phase alone, and the three functions of bot/ where the busy samples go
(each sample is charged to the innermost bot/ frame on its stack).
"""

from __future__ import annotations

import asyncio
import os
import tempfile
from pathlib import Path
from typing import Any

from bench.common import (
    WorkerProcess,
    bench_magnific,
    code_version,
    report,
    small_video,
    worker_main,
)

JOBS = int(os.environ.get("THROUGHPUT_JOBS", "1000"))
PROFILE = Path(tempfile.gettempdir()) / "seedance-bench-throughput.txt"


async def main() -> None:
    version = code_version()  # before the run: the worker imports what is on disk now
    limits = {"gateway_in_flight": JOBS, "guild_running": JOBS, "user_running": JOBS,
              "user_queued": JOBS}
    with tempfile.TemporaryDirectory() as tmp:
        async with bench_magnific(0.0, video=small_video()) as gw:
            worker = WorkerProcess("bench.throughput", {
                "base_url": gw.base_url, "data_dir": str(Path(tmp) / "data"), "jobs": JOBS,
                "users": 100, "create": "enqueue", "limits": limits,
                "poll_policy": {"first_fraction": 0.0, "first_min": 0.0},
                "profile": str(PROFILE),
            })
            await worker.start()
            try:
                await worker.wait("ready", 60)
                started = await worker.wait("started", 60)
                enqueued = await worker.wait("enqueued", 3600)
                done = await worker.wait("done", 3600)
            finally:
                await worker.close()
    wall = done["finished"] - started["t"]
    cpu, _ = worker.cpu_between(started["t"], done["finished"])
    details: dict[str, Any] = {
        "code": version, "jobs": JOBS, "delivered": done["delivered"],
        "failed": done["failed"], "failure_reasons": done["failure_reasons"],
        "wall_s": round(wall, 1), "jobs_per_s": round(JOBS / wall, 1),
        "enqueue_phase_s": round(enqueued["seconds"], 1),
        "after_enqueue_s": round(done["finished"] - enqueued["t"], 1),
        "cpu_s": round(cpu, 1), "peak_rss_mb": round(worker.max_rss(), 1),
        "requests_per_job": {k: round(gw.counts[k] / JOBS, 2)
                             for k in ("create", "poll", "download")},
        "profile_text": str(PROFILE), "profile_busy_s": done["profile_busy_s"],
        "profile_idle_s": done["profile_idle_s"], "outside_bot_s": done["outside_bot_s"],
        "top_costs": done["top_costs"],
    }
    top = "; ".join(f"{c['where']} {c['share_of_busy']}" for c in done["top_costs"])
    at = version[:7] + (" + uncommitted bot/" if "uncommitted" in version else "")
    rows = [
        (f"{JOBS} jobs enqueue → delivered, instant gateway (at {at})",
         f"{JOBS / wall:.1f} jobs/s ({wall:.0f} s, {done['delivered']} delivered)", "report"),
        (f"{JOBS} concurrent enqueues", f"{enqueued['seconds']:.1f} s", "report"),
        ("top 3 costs (share of busy samples)", top, "report"),
    ]
    report("throughput", rows, details)


if __name__ == "__main__":
    if not worker_main():
        asyncio.run(main())
