"""Engine processes die with the process that started them, even under kill -9."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import psutil

FRONT = """
import multiprocessing as mp, sys, time
from toolkit.generation.reaper import reap_with_us

def engine():          # stands for vLLM's engine core: a child that never ends by itself
    time.sleep(1000)

if __name__ == "__main__":
    reap_with_us()
    child = mp.get_context("spawn").Process(target=engine)
    child.start()
    print(child.pid, flush=True)
    time.sleep(1000)
"""


def _gone(pid: int, within: float) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        time.sleep(0.2)
    return False


def test_a_killed_front_end_takes_its_engine_down(tmp_path):
    script = tmp_path / "front.py"
    script.write_text(FRONT)
    front = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    engine = int(front.stdout.readline())
    assert not _gone(engine, 2.5)                 # alive while its front end lives
    os.kill(front.pid, signal.SIGKILL)
    front.wait()
    assert _gone(engine, 10)                      # the watchdog killed it
