"""The ``qup`` command: a thin layer that parses arguments and calls one library function.

Config-driven commands take ``--config FILE.yaml`` plus one ``--flag`` per config field
(flags override the file). Errors that are the user's (bad input, bad config) print one line.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from typing import Callable

from . import config as C


class UserError(Exception):
    """Raised for errors the user can fix; printed as one line, exit code 2."""


def _add(sub, name: str, fn: Callable, help: str, example: str, cfg_cls=None):
    p = sub.add_parser(name, help=help, description=f"{help}\n\nExample:\n  {example}",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    if cfg_cls is not None:
        p.add_argument("--config", help="YAML file with this command's config")
        C.add_dataclass_args(p, cfg_cls)
    p.set_defaults(fn=fn, cfg_cls=cfg_cls)
    return p


def _cfg(args):
    return C.load_config(args.cfg_cls, args.config, C.overrides_from_args(args))


def _print_json(obj) -> None:
    print(json.dumps(obj, default=str))


# ---------------------------------------------------------------------------- issue 2 commands
def cmd_data_check(args):
    from .sources import SourceConfig, check
    cfg = C.load_config(SourceConfig, args.config, {"source": args.source, **C.overrides_from_args(args)})
    _print_json(check(cfg))


def cmd_models_prepare(args):
    from .models import prepare
    path = prepare(args.name, args.out)
    _print_json({"model": args.name, "path": str(path)})


def cmd_sample(args):
    from .stages.sample import SampleConfig, sample_command
    _print_json(sample_command(_cfg(args)))


def cmd_verify(args):
    from .stages.verify import verify_command
    _print_json(verify_command(_cfg(args)))


def cmd_rft(args):
    from .stages.rft import RftConfig, rft_command
    _print_json(rft_command(_cfg(args)))


def cmd_train(args):
    from .stages.train import TrainConfig, train_command
    _print_json(train_command(_cfg(args)))


def cmd_evaluate(args):
    from .stages.evaluate import EvaluateConfig, evaluate_command
    _print_json(evaluate_command(_cfg(args)))


def cmd_run(args):
    from .run import run_recipe
    overrides = {}
    for item in args.set or []:
        key, _, value = item.partition("=")
        if not _ or not key:
            raise UserError(f"--set expects KEY=VALUE (e.g. sample.k=8), got {item!r}")
        node = overrides
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = C.yaml.safe_load(value)
    _print_json(run_recipe(args.recipe, overrides, run_dir=args.run_dir))


def cmd_hub_serve(args):
    from .hub.server import parse_tokens, serve
    try:
        tokens = parse_tokens(args.token)
    except ValueError as e:
        raise UserError(str(e)) from None
    serve(args.root, host=args.host, port=args.port, tokens=tokens)


def build_parser() -> argparse.ArgumentParser:
    from .run import RunConfig
    from .sources import SourceConfig
    from .stages.evaluate import EvaluateConfig
    from .stages.rft import RftConfig
    from .stages.sample import SampleConfig
    from .stages.train import TrainConfig
    from .stages.verify import VerifyConfig

    parser = argparse.ArgumentParser(prog="qup", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    data = sub.add_parser("data", help="inspect problem sources").add_subparsers(dest="sub", required=True)
    p = _add(data, "check", cmd_data_check, "Load a problem source and verify its gold solutions",
             "qup data check ../shared/data/gsm8k --split test", SourceConfig)
    p.add_argument("source", help="shared-data folder, local .jsonl/.json/.parquet, or Hub dataset id")

    models = sub.add_parser("models", help="prepare offline models").add_subparsers(dest="sub", required=True)
    p = _add(models, "prepare", cmd_models_prepare, "Build a preset model into a plain HF model dir",
             "qup models prepare smollm2-135m-instruct --out models/smollm2")
    p.add_argument("name", help="smollm2-135m-instruct | tiny-random")
    p.add_argument("--out", required=True, help="output directory")

    _add(sub, "sample", cmd_sample, "Sample k traces per problem from the SLM (resumable)",
         "qup sample --model tiny-random --source svamp --limit 8 --k 4 --out runs/x/samples",
         SampleConfig)
    _add(sub, "verify", cmd_verify, "Extract and verify each trace's answer (math-verify)",
         "qup verify --traces runs/x/samples --out runs/x/self", VerifyConfig)
    _add(sub, "rft", cmd_rft, "Verify traces and keep correct, de-duplicated ones (rejection sampling)",
         "qup rft --traces runs/x/self --out runs/x/rft --max-per-problem 4", RftConfig)
    _add(sub, "train", cmd_train, "LoRA SFT of the SLM on a trace dataset (TRL + PEFT)",
         "qup train --model tiny-random --data runs/x/rft --out runs/x/adapter --max-steps 20", TrainConfig)
    _add(sub, "evaluate", cmd_evaluate, "Greedy pass@1 of a model (+ adapter) on held-out problems",
         "qup evaluate --model tiny-random --adapter runs/x/adapter --source ../shared/data/svamp "
         "--limit 20 --out runs/x/eval", EvaluateConfig)
    p = _add(sub, "run", cmd_run, "Run a whole recipe (sample → rft → train → evaluate → report)",
             "qup run smoke --run-dir runs/smoke --set sample.k=2")
    p.add_argument("recipe", help="a packaged recipe name (smoke, cpu-demo) or a YAML path")
    p.add_argument("--run-dir", help="where outputs go (default: runs/<recipe name>)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="override a recipe key, e.g. --set sample.k=8 (repeatable)")
    # Commands of later issues register below (serve, hub, publish).
    hub = sub.add_parser("hub", help="local Hub-compatible server").add_subparsers(dest="sub", required=True)
    p = _add(hub, "serve", cmd_hub_serve, "Serve a Hub-compatible API (HF_ENDPOINT) from a folder; "
             "no --token = open server, anyone may write",
             "qup hub serve --root hub-data --port 8080 --token alice=hf_xxx:write")
    p.add_argument("--root", required=True, help="storage folder (git repos + LFS objects)")
    p.add_argument("--host", default="127.0.0.1", help="bind address (default: loopback)")
    p.add_argument("--port", type=int, default=8080)
    p.add_argument("--token", action="append", metavar="NAME=TOKEN:read|write",
                   help="an accepted token (repeatable); NAME is the user/namespace")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from .answers import AnswerError
    from .models import ModelError
    from .sources import SourceError
    try:
        args.fn(args)
    except (UserError, C.ConfigError, ModelError, SourceError, AnswerError, FileNotFoundError) as e:
        print(f"qup: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
