"""Engines die with the process that started them.

vLLM runs its engine core (and its workers) in child processes that outlive a front end killed by
``kill -9`` or a plain SIGTERM, each holding the model and its KV cache (GiBs): a stopped and
restarted study would pile them up until memory runs out. :func:`reap_with_us` starts one watchdog
process that notes, once a second, the processes this one started since; when this process is gone
(however it ended, even mid-way through an engine's start-up) it kills them.

Example:
    >>> reap_with_us()       # doctest: +SKIP
"""
from __future__ import annotations

import os
import subprocess
import sys

WATCH = """
import os, signal, sys, time
import psutil
parent, started = int(sys.argv[1]), float(sys.argv[2])
before = {int(p) for p in sys.argv[3:]}           # the parent's children before it asked
me = os.getpid()
def tree():
    try:
        p = psutil.Process(parent)
        if p.create_time() != started or p.status() == psutil.STATUS_ZOMBIE:
            return None
        return {c.pid for c in p.children(recursive=True)} - {me}
    except psutil.Error:
        return None
seen = set()
while (now := tree()) is not None:
    seen = now - before
    time.sleep(1)
for pid in seen:
    try:
        os.kill(pid, signal.SIGKILL)
    except OSError:
        pass
"""
_WATCHING: list[int] = []     # the pid this process's watchdog guards


def reap_with_us() -> None:
    """Kill, when this process ends, the processes it starts from now on (one watchdog per
    process; forked children get their own)."""
    import psutil
    if _WATCHING == [os.getpid()]:
        return
    me = psutil.Process()
    before = [str(c.pid) for c in me.children(recursive=True)]
    subprocess.Popen([sys.executable, "-c", WATCH, str(me.pid), repr(me.create_time()), *before],
                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                     start_new_session=True)
    _WATCHING[:] = [os.getpid()]
