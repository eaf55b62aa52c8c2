"""The ``qup`` command: a registry of commands, each one parser derived from its typed config
dataclasses (TRL's ``HfArgumentParser`` way) and one library function it calls.

A stage command takes ``--config FILE.yaml`` plus one ``--flag`` per config field (flags override
the file); a nested config adds its fields (``--source``, ``--split``) and a model role its own
(``--model``, ``--backend``, ``--vllm-max-model-len``; score's ``--judge-model``, ...). Errors
that are the user's (bad input, bad config) print one ``qup: error:`` line, before any work.

Example:
    >>> parser = build_parser()
    >>> parser.parse_args(["sample", "--model", "tiny-random", "--k", "2"]).command.name
    'sample'
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from dataclasses import dataclass
from typing import Callable

from . import commands as K
from . import config as C
from .errors import QupError


class UserError(QupError):
    """A bad command-line argument; printed as one line, exit code 2 (as every QupError)."""


def _print_json(result) -> None:
    if result is not None:
        print(json.dumps(result, default=str))


def _print_run(summary: dict) -> None:
    from .run import print_table
    _print_json(summary)
    sys.stdout.flush()
    print_table(summary)      # the last thing a user sees: the variant table (stderr)


def _print_study(summary: dict) -> None:
    _print_json({k: v for k, v in summary.items() if k != "analyses"})
    sys.stdout.flush()
    print(summary["findings_md"], file=sys.stderr)


def _print_lines(rows) -> None:
    for row in rows:
        print(row if isinstance(row, str) else json.dumps(row, default=str), flush=True)


@dataclass(frozen=True)
class Command:
    name: str                         # "sample", "hub serve"
    fn: Callable                      # the library function, called with one instance per config
    configs: tuple[type, ...]         # its typed arguments; --config FILE.yaml fills the first
    help: str
    example: str
    positional: tuple[str, ...] = ()  # fields given without a flag
    config_file: bool = False         # whether it takes --config
    show: Callable = _print_json      # how its result is printed


GROUPS = {"data": "inspect problem sources", "models": "prepare offline models",
          "hub": "local Hub-compatible server", "publish": "publish datasets / adapters to the Hub (token: HF_TOKEN)",
          "jobs": "run recipes and stages as Hugging Face Jobs (resumable from the Hub)",
          "space": "the public Gradio Space (spaces/)"}


def _variant_commands() -> list[Command]:
    """``qup <variant>`` for every registered variant built from another (self is `qup verify`)."""
    from .variants import REGISTRY
    from .variants.command import variant_args, variant_command
    out = []
    for v in (v for v in REGISTRY.values() if v.name != "self" and not v.scored):
        roles = "".join(f" --{r}-model {'qwen2.5-coder-0.5b-instruct' if r == 'oracle' else 'smollm2-135m-instruct'}"
                        for r in v.needs)
        configs = ((v.config,) if v.config else ()) + (variant_args(v),)
        out.append(Command(v.name, lambda *c, v=v: variant_command(v.name, c[-1], c[0] if v.config else None),
                           configs, f"Build the `{v.name}` variant: {v.doc}",
                           f"qup {v.name} --traces runs/x/variants/{v.parent} --out runs/x/variants/{v.name}{roles}",
                           config_file=v.config is not None))
    return out


def _stage_commands() -> list[Command]:
    from .sources import SourceConfig, check
    from .stages.evaluate import EvaluateConfig, evaluate_command
    from .stages.sample import SampleConfig, sample_command
    from .stages.score import ScoreConfig, score_command
    from .stages.train import TrainConfig
    from .stages.verify import VerifyConfig, verify_command
    from .variants.command import SelectArgs, select_command
    from .variants.selected import SelectConfig
    return [
        Command("data check", check, (SourceConfig,), "Load a problem source and verify its gold solutions",
                "qup data check ../shared/data/gsm8k --split test", ("source",), True),
        Command("models prepare", K.prepare, (K.PrepareArgs,), "Build a preset model into a plain HF model dir",
                "qup models prepare smollm2-135m-instruct --out models/smollm2", ("name",)),
        Command("sample", lambda c, s: sample_command(c, shard=s.shard or None), (SampleConfig, K.ShardArgs),
                "Sample k traces per problem from the SLM (resumable)",
                "qup sample --model tiny-random --source svamp --limit 8 --k 4 --out runs/x/samples", (), True),
        Command("verify", verify_command, (VerifyConfig,), "Extract and verify each trace's answer (math-verify)",
                "qup verify --traces runs/x/samples --out runs/x/variants/self", (), True),
        *_variant_commands(),
        Command("score", lambda c, s: score_command(c, shard=s.shard or None), (ScoreConfig, K.ShardArgs),
                "Reward (judge or RM), adaptation cost (learner NLL) and drift of every row (resumable)",
                "qup score --data runs/x/variants/rft --reference runs/x/variants/self --learner-model "
                "smollm2-135m-instruct --judge-model qwen2.5-coder-0.5b-instruct --out runs/x/scores/rft", (), True),
        Command("merge", K.merge, (K.MergeArgs,), "Merge the N shard outputs of one stage (--shard i/N) into one "
                "dataset: all shards present once, same config, nothing missing or duplicated",
                "qup merge runs/s0/samples runs/s1/samples --out runs/x/samples", ("dirs",)),
        Command("select", select_command, (SelectConfig, SelectArgs), "Compatibility-aware selection from "
                "scored variants (the `selected` variant)", "qup select --data rft=runs/x/scores/rft --data "
                "oracle_refine=runs/x/scores/oracle_refine --lam 0.5 --out runs/x/variants/selected", (), True),
        Command("train", K.train, (TrainConfig,), "LoRA SFT of the SLM on a trace dataset (TRL + PEFT)",
                "qup train --model tiny-random --data runs/x/variants/rft --out runs/x/adapter --max-steps 20",
                (), True),
        Command("evaluate", evaluate_command, (EvaluateConfig,), "pass@1 of a model (+ adapter) on held-out "
                "problems", "qup evaluate --model tiny-random --adapter runs/x/adapter --source svamp --limit 20 "
                "--out runs/x/eval", (), True),
    ]


def _commands() -> list[Command]:
    """Every command: the stages, then runs, servers, publishing, jobs and the Space."""
    from .jobs.spec import JobConfig
    return [
        *_stage_commands(),
        Command("run", K.run, (K.RecipeArgs,), "Run a whole recipe (sample → variants → publish → train → "
                "evaluate → report)", "qup run smoke --run-dir runs/smoke --set sample.k=2", ("recipe",),
                show=_print_run),
        Command("study", K.study, (K.RecipeArgs,), "Train every variant with several seeds, compare them "
                "paired, predict utility from pre-training diagnostics, publish a results dataset",
                "qup study cpu-paradox --run-dir runs/cpu-paradox --set study.seeds=[0,1]", ("recipe",),
                show=_print_study),
        Command("serve", K.serve, (K.ServeArgs,), "Serve a model (+ LoRA adapters) over TGI's HTTP API",
                "qup serve --model smollm2-135m-instruct --adapter math=runs/x/adapter --port 8080"),
        Command("hub serve", K.hub_serve, (K.HubServeArgs,), "Serve a Hub-compatible API (HF_ENDPOINT) from a "
                "folder; no --token = open server, anyone may write",
                "qup hub serve --root hub-data --port 8080 --tokens-file hub-tokens.txt"),
        Command("publish dataset", K.publish_dataset, (K.PublishDatasetArgs,), "Publish trace variants as "
                "configs of one Hub dataset repo, with a card; one commit + tag per publish",
                "qup publish dataset --repo me/qup-svamp-smollm2 --variant self=runs/x/self --variant rft=runs/x/rft"),
        Command("publish adapter", K.publish_adapter, (K.PublishAdapterArgs,), "Publish a LoRA adapter dir "
                "(with qup_train.json) as a Hub model repo with a model card",
                "qup publish adapter --repo me/smollm2-135m-qup-rft --adapter runs/x/adapter --eval "
                "runs/x/eval/metrics.json"),
        Command("jobs submit", K.jobs_submit, (JobConfig, K.JobSubmitArgs), "Submit a recipe (or one stage) as "
                "an HF Job; its run dir lives in a private run-state repo, so a re-submitted job resumes",
                "qup jobs submit paper-qwen2.5-1.5b --flavor a100-large --timeout 12h --secrets HF_TOKEN "
                "--dry-run", ("target", "args"), True),
        Command("jobs status", K.jobs_status, (JobConfig, K.JobStatusArgs), "Status of a job, or of every job "
                "of the namespace", "qup jobs status 6650d6b4f1a2c3d4e5f60718", ("job_id",), True, _print_lines),
        Command("jobs logs", K.jobs_logs, (JobConfig, K.JobLogsArgs), "Print a job's logs (--follow: until "
                "it ends)", "qup jobs logs 6650d6b4f1a2c3d4e5f60718", ("job_id",), True, _print_lines),
        Command("jobs cancel", K.jobs_cancel, (JobConfig, K.JobIdArgs), "Cancel a job (its process group is "
                "killed)", "qup jobs cancel 6650d6b4f1a2c3d4e5f60718", ("job_id",), True),
        Command("space run", K.space_run, (K.SpaceRunArgs,), "Serve the Space locally against a run's "
                "embedded Hub (or any Hub)", "qup space run --run-dir runs/cpu-demo --port 7860"),
        Command("space deploy", K.space_deploy, (K.SpaceDeployArgs,), "Push spaces/ (+ the toolkit package) "
                "as a Space repo, one commit", "HF_TOKEN=hf_... qup space deploy --repo me/qup-arena"),
    ]


def build_parser() -> argparse.ArgumentParser:
    """One sub-parser per :class:`Command`, its flags derived from its config dataclasses."""
    parser = argparse.ArgumentParser(
        prog="qup", description="QUP toolkit: distil math reasoning into small LMs without the "
        "Quality-Utility Paradox (sample → verify → variants → publish → train → evaluate).")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    top = parser.add_subparsers(dest="name", required=True)
    groups: dict[str, argparse._SubParsersAction] = {}
    for cmd in _commands():
        *group, name = cmd.name.split()
        if group and group[0] not in groups:
            groups[group[0]] = top.add_parser(group[0], help=GROUPS[group[0]]).add_subparsers(
                dest="sub", required=True)
        p = (groups[group[0]] if group else top).add_parser(
            name, help=cmd.help, description=f"{cmd.help}\n\nExample:\n  {cmd.example}",
            formatter_class=argparse.RawDescriptionHelpFormatter)
        if cmd.config_file:
            p.add_argument("--config", help="YAML file with this command's config")
        for i, cls in enumerate(cmd.configs):
            C.add_dataclass_args(p, cls, f"c{i}", cmd.positional)
        p.set_defaults(command=cmd)
    return parser


def run_command(cmd: Command, args: argparse.Namespace):
    """Each config of ``cmd`` from ``--config`` and the flags (validated), then ``cmd.fn``."""
    where = f"qup {cmd.name}"
    configs = [C.load_config(cls, getattr(args, "config", None) if i == 0 else None,
                             C.overrides_from_args(args, f"c{i}"), where=where)
               for i, cls in enumerate(cmd.configs)]
    return cmd.fn(*configs)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    for noisy in ("httpx", "httpx2", "huggingface_hub"):  # one line per HTTP request otherwise
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        args.command.show(run_command(args.command, args))
    except QupError as e:
        print(f"qup: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
