"""Shared plumbing for the benchmark scripts: how a figure is reported and recorded.

A benchmark reports; it never fails. Each script prints one JSON object and appends one row per
figure to bench/RESULTS.md, so the history of a number stays next to the code that made it.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
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
    """Print the JSON for `bench` and append (figure, value, target) rows to RESULTS.md."""
    print(json.dumps({"bench": bench, "machine": machine(),
                      "figures": [{"figure": f, "value": v, "target": t} for f, v, t in rows],
                      **details}, indent=2, default=str, ensure_ascii=False))
    if not RESULTS.exists():
        RESULTS.write_text(HEADER)
    date = datetime.now(UTC).strftime("%Y-%m-%d %H:%M")
    with RESULTS.open("a") as out:
        for figure, value, target in rows:
            out.write(f"| {date} | {machine()} | {bench}: {figure} | {value} | {target} |\n")
