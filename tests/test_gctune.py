"""bot/gctune.py: the collector's settings a long-running process takes once started.

Run in a child interpreter, because they are process-wide and would change this test run's own
collector."""

from __future__ import annotations

import json
import subprocess
import sys

from bot.gctune import YOUNG_THRESHOLD

CHILD = r"""
import gc, json, weakref
from bot.gctune import settle_gc

class Node:
    pass

kept = [Node() for _ in range(1000)]           # startup's objects, alive for good
a, b = Node(), Node()
a.other, b.other = b, a                        # garbage in a cycle, not yet collected
dead = weakref.ref(a)
del a, b
gc.disable()                                   # no collection may run before settle_gc's
before = gc.get_freeze_count()
threshold = gc.get_threshold()
gc.enable()
settle_gc()
young = Node()
tracked = {id(o) for o in gc.get_objects()}   # frozen objects are in no generation
print(json.dumps({
    "before": before, "frozen": gc.get_freeze_count(), "threshold": gc.get_threshold(),
    "default": threshold, "cycle_collected": dead() is None,
    "startup_left_out": id(kept) not in tracked and id(kept[0]) not in tracked,
    "later_collected": id(young) in tracked,
}))
"""


def test_settling_freezes_startup_and_collects_young_objects_less_often() -> None:
    out = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True,
                         check=True, timeout=60)
    facts = json.loads(out.stdout)
    assert facts["before"] == 0
    # Everything startup built is out of every later collection...
    assert facts["frozen"] > 1000
    assert facts["startup_left_out"] is True
    assert facts["later_collected"] is True
    # ...but the garbage among it was collected first, not frozen for ever.
    assert facts["cycle_collected"] is True
    # The young generation waits longer; the older ones keep their ratios.
    assert facts["threshold"] == [YOUNG_THRESHOLD, *facts["default"][1:]]
