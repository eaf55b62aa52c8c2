"""Engines die with the process that started them.

vLLM runs its engine core (and its workers) in child processes that outlive a front end killed by
``kill -9`` or a plain SIGTERM, each holding the model and its KV cache (GiBs): a stopped and
restarted study would pile them up until memory runs out. :func:`reap_with_us` starts a small
watchdog process per engine that kills the engine's processes once ours is gone.

Example:
    >>> before = child_pids()
    >>> reap_with_us(before)        # no new children: no watchdog
"""
from __future__ import annotations

import os
import subprocess
import sys

WATCH = """
import os, signal, sys, time
import psutil
parent, started, pids = int(sys.argv[1]), float(sys.argv[2]), [int(p) for p in sys.argv[3:]]
def alive():
    try:
        p = psutil.Process(parent)
        return p.create_time() == started and p.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False
while alive():
    time.sleep(1)
for pid in pids:
    try:
        os.kill(pid, signal.SIGKILL)
    except OSError:
        pass
"""


def child_pids() -> set[int]:
    """This process's descendants now."""
    import psutil
    return {p.pid for p in psutil.Process().children(recursive=True)}


def reap_with_us(before: set[int]) -> None:
    """Kill the descendants started since ``before`` (:func:`child_pids`) when this process ends,
    however it ends (a watchdog process polls it once a second)."""
    import psutil
    new = sorted(child_pids() - before)
    if not new:
        return
    me = psutil.Process()
    subprocess.Popen([sys.executable, "-c", WATCH, str(me.pid), repr(me.create_time()), *map(str, new)],
                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                     start_new_session=True, env={**os.environ, "PYTHONPATH": ""})
