"""A persistent request cache: a finished endpoint request is never sent again.

One sqlite file per cache dir; each result is committed as soon as it arrives (WAL journal), so a
run killed with SIGKILL keeps everything it had finished and a re-run only sends the rest.

Example:
    >>> cache = RequestCache("runs/x/cache")
    >>> key = cache.key("qup/tiny", "<prompt>", '{"seed": 1}', 1, None)
    >>> cache.put(key, {"text": "4"}); cache.get(key)
    {'text': '4'}
"""
from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
from pathlib import Path


class RequestCache:
    """Results keyed by (model id, rendered prompt, params JSON, seed, adapter)."""

    FILE = "requests.sqlite"

    def __init__(self, cache_dir: str | Path):
        self.path = Path(cache_dir) / self.FILE
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, timeout=60, check_same_thread=False,
                                   isolation_level=None)   # autocommit: one write, one commit
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("CREATE TABLE IF NOT EXISTS results (key TEXT PRIMARY KEY, value TEXT)")

    @staticmethod
    def key(model_id: str, prompt: str, params_json: str, seed: int | None, adapter: str | None) -> str:
        raw = json.dumps([model_id, prompt, params_json, seed, adapter], ensure_ascii=False)
        return hashlib.sha256(raw.encode()).hexdigest()

    def get(self, key: str) -> dict | None:
        with self._lock:
            row = self._db.execute("SELECT value FROM results WHERE key = ?", (key,)).fetchone()
        return json.loads(row[0]) if row else None

    def put(self, key: str, value: dict) -> None:
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO results VALUES (?, ?)", (key, json.dumps(value)))

    def __len__(self) -> int:
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM results").fetchone()[0]

    def close(self) -> None:
        self._db.close()
