"""Which process this is under ``torchrun`` / ``accelerate launch`` (read from their env vars).

Only the main process (global rank 0) writes shared files, prints results and publishes; the
others train their part and wait. Outside a launcher this process is rank 0 of 1.

Example:
    >>> import os; os.environ.pop("RANK", None) and None
    >>> rank(), world_size(), is_main()
    (0, 1, True)
"""
from __future__ import annotations

import os


def rank() -> int:
    """Global rank (``RANK``, set by torchrun and accelerate launch); 0 without a launcher."""
    return int(os.environ.get("RANK", "0") or 0)


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1") or 1)


def is_main() -> bool:
    return rank() == 0
