"""Inside a job: pull the run-state repo, run a recipe or one stage, push each finished step.

``toolkit/jobs/qup_job.py`` calls :func:`main`. With ``--state-repo`` (a private dataset repo, created
if missing) the job first downloads the repo's ``run/`` into ``<workdir>/run``, so a re-submitted
job finds every finished step there (the step cache skips it) and an interrupted step's shards
(it resumes). Each step that finishes is uploaded at once (a :data:`toolkit.steps.ON_DONE` hook,
one commit per step, mirroring the step's dir); when the job ends, in success or failure, the
whole run dir is uploaded, so a stage killed by an error keeps its finished shards. A hard kill
(timeout, preemption) loses only the work since the last finished step. Without
``--state-repo`` nothing is synced (a plain local run).

A recipe job publishes to the Hub it runs against (``hub.url``: ``HF_ENDPOINT`` or
huggingface.co), never to an embedded Hub on the job's disk. A stage job runs
``qup STAGE ARGS`` with the run dir as working directory (``--out samples`` lands in ``run/``).

Example (locally, same as in a job)::

    HF_TOKEN=... python toolkit/jobs/qup_job.py --state-repo me/qup-run-smoke recipe smoke
    python toolkit/jobs/qup_job.py --workdir /tmp/w stage sample --config code:files/sample.yaml
"""
from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import sys
from pathlib import Path


from .. import steps

log = logging.getLogger("qup.job")
IGNORE = ["hub/**", "**/__pycache__/**", ".cache/**"]   # an embedded Hub's storage, caches


class StateRepo:
    """The run-state dataset repo of a job: ``run/`` mirrors the run dir."""

    def __init__(self, repo_id: str, run_dir: Path):
        from huggingface_hub import HfApi
        self.api, self.repo_id, self.run_dir = HfApi(), repo_id, Path(run_dir)

    def pull(self) -> int:
        """Create the repo if missing; download its ``run/`` into the run dir; return the file count."""
        from huggingface_hub import snapshot_download
        self.api.create_repo(self.repo_id, repo_type="dataset", private=True, exist_ok=True)
        files = [f for f in self.api.list_repo_files(self.repo_id, repo_type="dataset") if f.startswith("run/")]
        if files:
            snapshot_download(self.repo_id, repo_type="dataset", allow_patterns=["run/**"],
                              local_dir=self.run_dir.parent)
        log.info("pulled %d file(s) of run/ from %s", len(files), self.repo_id)
        return len(files)

    def push_step(self, step: steps.Step, result: dict) -> None:
        """Upload a finished step's dir (a hook of :data:`toolkit.steps.ON_DONE`)."""
        out = Path(step.out).resolve()
        try:
            rel = out.relative_to(self.run_dir.resolve())
        except ValueError:
            log.warning("step %s writes outside the run dir (%s): not synced", step.name, out)
            return
        self.api.upload_folder(repo_id=self.repo_id, repo_type="dataset", folder_path=out,
                               path_in_repo=f"run/{rel.as_posix()}", delete_patterns=["*"],
                               ignore_patterns=IGNORE, commit_message=f"qup job: step {step.name} done")
        log.info("pushed step %s to %s/run/%s", step.name, self.repo_id, rel.as_posix())

    def push_all(self, why: str) -> None:
        if not self.run_dir.is_dir() or not any(self.run_dir.iterdir()):
            return
        self.api.upload_folder(repo_id=self.repo_id, repo_type="dataset", folder_path=self.run_dir,
                               path_in_repo="run", ignore_patterns=IGNORE, commit_message=f"qup job: {why}")
        log.info("pushed the run dir to %s (%s)", self.repo_id, why)


def parse_sets(items: list[str]) -> dict:
    """``["sample.k=8", "hub.org=me"]`` → ``{"sample": {"k": 8}, "hub": {"org": "me"}}``; ``$VAR``
    in a value is the job's environment variable (e.g. ``$HF_NETWORK_GROUP_PREFIX`` of HF Jobs).

    >>> parse_sets(["sample.k=8", "hub.org=me"])
    {'sample': {'k': 8}, 'hub': {'org': 'me'}}
    """
    from ..config import ConfigError, parse_sets as parse
    try:
        return parse(items, expand_env=True)
    except ConfigError as e:
        raise SystemExit(f"qup job: {e}") from None


def _code_path(arg: str, code_root: Path) -> str:
    """``code:files/x.yaml`` (a file uploaded with the job) → its path in the job."""
    return str(code_root / arg[5:]) if arg.startswith("code:") else arg


def run_recipe_job(recipe: str, sets: list[str], run_dir: Path) -> dict:
    from huggingface_hub import constants

    from ..run import load_recipe, print_table, run_recipe
    overrides = parse_sets(sets)
    cfg = load_recipe(recipe, overrides)
    if cfg.hub.publish and not cfg.hub.url:     # publish where the job runs, not on its own disk
        overrides.setdefault("hub", {})["url"] = constants.ENDPOINT
    summary = run_recipe(recipe, overrides, run_dir=str(run_dir))
    print_table(summary)
    return summary


def run_stage_job(stage: str, args: list[str], run_dir: Path) -> int:
    from ..cli import main as qup
    run_dir.mkdir(parents=True, exist_ok=True)
    cwd = os.getcwd()
    os.chdir(run_dir)
    try:
        return qup([stage, *args])
    finally:
        os.chdir(cwd)


@contextlib.contextmanager
def _sigterm_as_exit():
    """A cancelled or timed-out job gets SIGTERM: unwind (and push) instead of dying at once."""
    def handler(signum, frame):
        raise SystemExit(128 + signum)
    old = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


def main(argv: list[str] | None = None, code_root: Path | None = None) -> int:
    p = argparse.ArgumentParser(prog="qup_job.py", description="Run a qup recipe or stage, synced with a "
                                "run-state repo on the Hub (HF_TOKEN, HF_ENDPOINT from the environment)")
    p.add_argument("--state-repo", help="private dataset repo holding run/ (created if missing); "
                   "omit for a local run without sync")
    p.add_argument("--workdir", default="qup-job", help="local dir: run/ goes here (default: qup-job; keep "
                   "it relative: the step cache keys hold its paths, so a resumed job must use the same)")
    sub = p.add_subparsers(dest="kind", required=True)
    r = sub.add_parser("recipe", help="run a whole recipe (qup run)")
    r.add_argument("recipe", help="packaged recipe name or YAML path (code:files/NAME.yaml)")
    r.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    s = sub.add_parser("stage", help="run one stage command (qup STAGE ...) in the run dir")
    s.add_argument("stage")
    s.add_argument("args", nargs=argparse.REMAINDER)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    for noisy in ("httpx", "httpx2", "huggingface_hub"):   # one line per HTTP request otherwise
        logging.getLogger(noisy).setLevel(logging.WARNING)
    code_root = code_root or Path(__file__).resolve().parents[2]
    run_dir = Path(args.workdir) / "run"   # as given: step keys hold paths, and must match across jobs
    run_dir.mkdir(parents=True, exist_ok=True)
    state = StateRepo(args.state_repo, run_dir) if args.state_repo else None
    if state:
        state.pull()
        steps.ON_DONE.append(state.push_step)
    ok = False
    try:
        with _sigterm_as_exit():
            if args.kind == "recipe":
                run_recipe_job(_code_path(args.recipe, code_root), args.set, run_dir)
                code = 0
            else:
                code = run_stage_job(args.stage, [_code_path(a, code_root) for a in args.args], run_dir)
        ok = code == 0
        return code
    finally:
        if state:
            steps.ON_DONE.remove(state.push_step)
            state.push_all("finished" if ok else "stopped (partial results kept for resume)")


if __name__ == "__main__":
    sys.exit(main())
