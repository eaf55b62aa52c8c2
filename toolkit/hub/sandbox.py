"""Where an embedded-Hub job runs: a bubblewrap sandbox, or (only when the operator asks) unisolated.

``sandbox`` (the default) runs each job under ``bwrap`` (Debian package ``bubblewrap``) as an
unprivileged uid (65534, in a new user namespace, no capabilities) with its own PID, IPC and UTS
namespaces and a private mount namespace that holds only: a read-only toolchain (``/usr``, the
Python prefix and venv, the ``toolkit`` package, a few ``/etc`` files), read-only data paths the
operator lists (by default the qup model cache and the shared data dir), an empty ``/tmp`` and the
job's own work dir (read-write, outside ``--root``). It sees no other process (``/proc`` is its
own), so not the Hub's environment or command line, nor other jobs; ``--root`` is not mounted.
The network is shared: the job reaches the Hub (``HF_ENDPOINT``) on loopback like any client,
with the token it was given. When the job's first process ends, the kernel kills every process
left in its PID namespace (``setsid cmd &`` included); ``--die-with-parent`` kills it with the Hub.

``unsafe-shared`` runs jobs as plain subprocesses of the Hub's user (they can read ``--root``):
only for a Hub whose tokens all belong to one user. ``off``: no jobs.

Example::

    reason = unavailable()        # None when bwrap works here
    argv = wrap(["python", "-c", "print(1)"], Path("/tmp/w"), ro_paths=[], hidden=[Path("/hub")])
"""
from __future__ import annotations

import functools
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

MODES = ("sandbox", "unsafe-shared", "off")
NOBODY = 65534
ETC = ("passwd", "group", "hosts", "resolv.conf", "nsswitch.conf", "host.conf", "gai.conf", "localtime",
       "ld.so.cache", "ld.so.conf", "ld.so.conf.d", "ssl", "ca-certificates", "ca-certificates.conf",
       "alternatives", "mime.types", "protocols", "services", "os-release")
TOP_LINKS = ("bin", "sbin", "lib", "lib32", "lib64", "libx32")
INSTALL_HINT = "install bubblewrap (apt-get install bubblewrap) or start the Hub with --jobs unsafe-shared"


def toolchain() -> list[Path]:
    """Read-only paths every job needs: the Python install, the venv and the toolkit package."""
    import toolkit
    paths = {Path(sys.base_prefix), Path(sys.prefix), Path(sys.exec_prefix), Path(toolkit.__file__).parent}
    return sorted(p.resolve() for p in paths if p.exists())


def default_data_paths() -> list[Path]:
    """Read-only data a job may use: the qup model cache and the shared data dir, where present."""
    from ..weights import cache_dir
    env = os.environ.get("QUP_SHARED_DATA")
    found = [cache_dir() / "models", cache_dir() / "gguf",
             Path(env) if env else Path(__file__).resolve().parents[2].parent / "shared" / "data"]
    return [p.resolve() for p in found if p.is_dir()]


def _base_args() -> list[str]:
    args = ["bwrap", "--unshare-user", "--uid", str(NOBODY), "--gid", str(NOBODY), "--unshare-pid",
            "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try", "--die-with-parent", "--cap-drop", "ALL",
            "--hostname", "job", "--ro-bind", "/usr", "/usr", "--proc", "/proc", "--dev", "/dev",
            "--tmpfs", "/dev/shm", "--ro-bind-try", "/sys", "/sys", "--tmpfs", "/tmp"]
    for name in TOP_LINKS:                      # merged /usr: /bin -> usr/bin; else a read-only bind
        top = Path("/") / name
        if top.is_symlink():
            args += ["--symlink", os.readlink(top), str(top)]
        elif top.is_dir():
            args += ["--ro-bind", str(top), str(top)]
    for name in ETC:
        args += ["--ro-bind-try", f"/etc/{name}", f"/etc/{name}"]
    return args


def wrap(argv: list[str], workdir: Path, ro_paths: list[Path], hidden: list[Path]) -> list[str]:
    """``argv`` run under bwrap: ``ro_paths`` read-only, ``workdir`` read-write (its cwd), ``hidden``
    (the Hub's root) covered by an empty tmpfs wherever a bound path holds it."""
    args = _base_args()
    for p in ro_paths:
        args += ["--ro-bind", str(p), str(p)]
    args += ["--bind", str(workdir), str(workdir)]
    bound = [*ro_paths, workdir]
    for h in hidden:
        if any(h == b or b in h.parents for b in bound):
            args += ["--tmpfs", str(h)]
    return [*args, "--chdir", str(workdir), "--", *argv]


@functools.lru_cache(maxsize=1)
def unavailable() -> str | None:
    """None when bwrap can build a job's sandbox here; else why not (one line)."""
    if shutil.which("bwrap") is None:
        return f"bubblewrap (bwrap) is not installed: {INSTALL_HINT}"
    probe = wrap(["/bin/sh", "-c", "exit 0"], Path("/tmp"), [], [])
    try:
        done = subprocess.run(probe, capture_output=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"bwrap could not be run ({e}): {INSTALL_HINT}"
    if done.returncode != 0:
        err = done.stderr.decode("utf-8", "replace").strip().splitlines()[-1:] or ["no message"]
        return f"bwrap cannot create a sandbox here ({err[0][:200]}; user namespaces off?): {INSTALL_HINT}"
    return None


def unisolated(argv: list[str]) -> list[str]:
    """``argv`` killed with its parent (``setpriv --pdeathsig``) where setpriv has that option."""
    return ["setpriv", "--pdeathsig", "KILL", "--", *argv] if _setpriv_pdeathsig() else argv


@functools.lru_cache(maxsize=1)
def _setpriv_pdeathsig() -> bool:
    try:
        return b"--pdeathsig" in subprocess.run(["setpriv", "--help"], capture_output=True, timeout=10).stdout
    except (OSError, subprocess.TimeoutExpired):
        return False


# ---------------------------------------------------------------------- processes
def start_time(pid: int) -> int | None:
    """The process's start time (clock ticks since boot; tells a recycled pid apart), None if gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return int(f.read().rsplit(")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return None


def _children(pid: int) -> list[int]:
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    if int(f.read().rsplit(")", 1)[1].split()[1]) == pid:
                        out.append(int(entry))
            except (OSError, IndexError, ValueError):
                continue
    return out


def job_pids(pid: int) -> list[int]:
    """Every process of the job whose outer process is ``pid``: its whole PID namespace when
    sandboxed (``setsid`` does not leave it), else its descendants."""
    kids = _children(pid)
    try:
        ns = {os.readlink(f"/proc/{k}/ns/pid") for k in kids} - {os.readlink("/proc/self/ns/pid")}
    except OSError:
        ns = set()
    if ns:
        out = []
        for entry in os.listdir("/proc"):
            try:
                if entry.isdigit() and os.readlink(f"/proc/{entry}/ns/pid") in ns:
                    out.append(int(entry))
            except OSError:
                continue
        return out
    seen, todo = [], kids
    while todo:
        seen += todo
        todo = [c for k in todo for c in _children(k)]
    return seen


def signal_job(pid: int, sig: int) -> None:
    """Send ``sig`` to the job's processes (:func:`job_pids`). SIGKILL also hits the outer process and
    its group; a gentler signal spares a sandbox's outer ``bwrap`` (its death would SIGKILL the job)."""
    targets = job_pids(pid)
    calls = [lambda p=p: os.kill(p, sig) for p in targets]
    if sig == signal.SIGKILL or not _sandboxed(pid, targets):
        calls += [lambda: os.kill(pid, sig), lambda: os.killpg(pid, sig)]
    for call in calls:
        try:
            call()
        except (ProcessLookupError, PermissionError):
            pass


def _sandboxed(pid: int, targets: list[int]) -> bool:
    try:
        own = os.readlink(f"/proc/{pid}/ns/pid")
        return any(os.readlink(f"/proc/{t}/ns/pid") != own for t in targets)
    except OSError:
        return False


def reap(pid: int, started: int | None) -> bool:
    """Kill a job left by a previous Hub process if ``pid`` is still that process; True if it was."""
    if pid <= 1 or started is None or start_time(pid) != started:
        return False
    signal_job(pid, signal.SIGKILL)
    for _ in range(50):
        if start_time(pid) != started:
            break
        time.sleep(0.02)
    return True
