"""The embedded Hub's stand-in for a job's container image: ``uv`` and ``uvx`` shims.

On the real Hub, ``uv run --with DEP SCRIPT ARGS`` installs the script's inline (PEP 723)
dependencies in the image and runs it; ``uvx --from PKG TOOL ARGS`` runs a tool of a package.
On the embedded Hub the server's Python environment already holds them, so ``uv run`` runs the
script (or ``python ...``) with that Python and ``uvx`` runs the tool from its ``bin`` dir. Any
other use is an error that says so. Only the options below are understood.

Example:
    >>> translate(["uv", "run", "--with", "x==1", "job.py", "--a"], "/venv/bin/python")
    ['/venv/bin/python', 'job.py', '--a']
    >>> translate(["uv", "run", "--with", "x==1", "python", "-c", "print(1)"], "/venv/bin/python")
    ['/venv/bin/python', '-c', 'print(1)']
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

_WITH_VALUE = {"--with", "--python", "-p", "--with-requirements", "--from", "--index-url",
               "--extra-index-url", "--env-file"}


def _strip_options(args: list[str]) -> list[str]:
    """Drop uv's leading options (``--with X``, ``--python=X``, ``--no-project``, ...)."""
    i = 0
    while i < len(args) and args[i].startswith("-"):
        i += 1 if "=" in args[i] or args[i] not in _WITH_VALUE else 2
    return args[i:]


def translate(argv: list[str], python: str) -> list[str]:
    """The command the emulated image runs for ``uv ...`` / ``uvx ...``."""
    tool, args = argv[0], argv[1:]
    if tool == "uv":
        if not args or args[0] != "run":
            raise SystemExit(f"embedded Hub image: only `uv run` is emulated, got `uv {' '.join(args[:1])}`")
        rest = _strip_options(args[1:])
        if not rest:
            raise SystemExit("embedded Hub image: `uv run` needs a script or command")
        if rest[0] in ("python", "python3"):
            return [python, *rest[1:]]
        if rest[0].endswith(".py"):
            return [python, *rest]
        return [str(Path(python).parent / rest[0]), *rest[1:]]
    rest = _strip_options(args)
    if not rest:
        raise SystemExit("embedded Hub image: `uvx` needs a tool")
    exe = Path(python).parent / rest[0]
    if not exe.is_file():
        raise SystemExit(f"embedded Hub image: tool {rest[0]!r} is not installed in {exe.parent}")
    return [str(exe), *rest[1:]]


def main(argv: list[str]) -> None:
    cmd = translate(argv, sys.executable)
    os.execv(cmd[0], cmd)


if __name__ == "__main__":
    main(sys.argv[1:])
