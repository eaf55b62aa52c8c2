"""The embedded Hub's job table and job logs on disk, under ``<root>/jobs/<id>/``.

``job.json`` is the job's record (spec, stage, times, the outer process id and its start time;
never a secret value), rewritten atomically at each stage change, so a restarted Hub still
answers for its jobs. ``log`` holds the output, one ``TIMESTAMP\\tLINE`` a line: a line is cut at
``MAX_LINE_BYTES`` (marked), a job's log at ``MAX_LOG_BYTES`` (marked); the Hub never holds more
than one line of a job's output in memory.

Example::

    store = JobStore(Path("/tmp/hub/jobs"))
    store.save({"id": "0" * 24, "namespace": "alice", ...}); store.load("0" * 24)["namespace"]
"""
from __future__ import annotations

import datetime as dt
import json
import logging
import os
import re
import shutil
from pathlib import Path

log = logging.getLogger(__name__)
MAX_LINE_BYTES = 16_384            # one log line is cut beyond this
MAX_LOG_BYTES = 64 * 1024 ** 2     # a job's whole log is cut beyond this
LINE_CUT = " [... line truncated by the Hub]"
LOG_CUT = "[log truncated by the Hub: it reached {} bytes]"
_ID = re.compile(r"[0-9a-f]{24}")


class JobStore:
    """Records and logs of jobs, one dir per job id."""

    def __init__(self, root: Path):
        self.root = Path(root)                       # created with the first job

    def dir(self, job_id: str) -> Path:
        if not _ID.fullmatch(job_id):
            raise ValueError(f"bad job id {job_id[:40]!r}")
        return self.root / job_id

    def log_path(self, job_id: str) -> Path:
        return self.dir(job_id) / "log"

    def save(self, record: dict) -> None:
        """Write ``job.json`` atomically (temp file, fsync, rename)."""
        d = self.dir(record["id"])
        d.mkdir(parents=True, exist_ok=True)
        tmp = d / "job.json.tmp"
        with open(tmp, "w") as f:
            json.dump(record, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, d / "job.json")

    def load(self, job_id: str) -> dict | None:
        try:
            with open(self.dir(job_id) / "job.json") as f:
                record = json.load(f)
        except (OSError, ValueError):
            return None
        return record if isinstance(record, dict) and record.get("id") == job_id else None

    def load_all(self) -> list[dict]:
        out = []
        for d in self.root.iterdir() if self.root.is_dir() else ():
            if _ID.fullmatch(d.name) and (record := self.load(d.name)) is not None:
                out.append(record)
            elif _ID.fullmatch(d.name):
                log.warning("job dir %s has no readable job.json: ignored", d)
        return out

    def delete(self, job_id: str) -> None:
        shutil.rmtree(self.dir(job_id), ignore_errors=True)


def pump(stream, path: Path, mask, on_lines) -> None:
    """Copy ``stream``'s lines to the log at ``path`` (bounded, see module docstring); ``mask(str)``
    hides secrets; ``on_lines(n)`` after each write. Reads at most one line's bound at a time."""
    written, cut = 0, False
    with open(path, "ab") as out:
        while True:
            raw = stream.readline(MAX_LINE_BYTES)
            if not raw:
                break
            line = raw.decode("utf-8", "replace")
            if not raw.endswith(b"\n") and len(raw) >= MAX_LINE_BYTES:
                line += LINE_CUT
                while (rest := stream.readline(MAX_LINE_BYTES)) and not rest.endswith(b"\n"):
                    pass                                     # drop the rest of the long line
            if cut:
                continue                                     # keep draining: the job must not block
            data = stamp(mask(line.rstrip("\r\n")))
            if written + len(data) > MAX_LOG_BYTES:
                data, cut = stamp(LOG_CUT.format(MAX_LOG_BYTES)), True
            out.write(data)
            out.flush()
            written += len(data)
            on_lines(1)


def now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def stamp(line: str, ts: str | None = None) -> bytes:
    return f"{ts or now()}\t{line}\n".encode("utf-8", "backslashreplace")


def split(raw: bytes) -> tuple[str, str]:
    """(timestamp, line) of one log record (without its newline)."""
    ts, _, line = raw.decode("utf-8", "replace").partition("\t")
    return ts, line


def tail_offset(path: Path, n: int) -> int:
    """Byte offset of the last ``n`` lines of the log (reads backwards, a block at a time)."""
    try:
        with open(path, "rb") as f:
            pos = max(0, f.seek(0, os.SEEK_END) - 1)        # the final newline ends the last line
            seen = 0
            while pos > 0:
                start = max(0, pos - 65_536)
                f.seek(start)
                block, end = f.read(pos - start), pos - start
                while (i := block.rfind(b"\n", 0, end)) >= 0:
                    seen, end = seen + 1, i
                    if seen == n:
                        return start + i + 1
                pos = start
    except OSError:
        pass
    return 0
