"""The garbage collector's settings for a long-running process (`seedance-bot run`, `worker`).

A process with thousands of jobs in flight makes cyclic garbage all the time (asyncio tasks and
futures, exceptions with their tracebacks, HTTP responses). With CPython's default thresholds
(a young collection every 700 allocations) `python -m bench.inflight` (2,000 jobs, callbacks,
SQLite) spent 1.2–1.3 CPU-s of its 12–16 in the collector: ~800 young collections, ~75 middle
ones, and 7 full ones, each walking the ~80,000 objects that importing discord.py, pydantic,
PyAV and the rest had left. Freezing what startup built (it lives as long as the process) and
collecting the young generation every 10,000 allocations took that to 0.33–0.36 CPU-s, with the
same peak RSS (bench/README.md, seventh pass).
"""

from __future__ import annotations

import gc

#: Allocations between young collections (CPython's default is 700); the older generations keep
#: their default ratios.
YOUNG_THRESHOLD = 10_000


def settle_gc() -> None:
    """Call once the process has started: what exists now is kept out of every later collection
    (the garbage among it is collected first, so none of it is kept for ever), and young
    objects are collected less often."""
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, middle, old)
