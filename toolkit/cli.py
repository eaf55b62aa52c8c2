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
from .errors import QupError


SHARD_HELP = ("do shard I of N (0 <= I < N): the problems whose id hashes to I (sample: the chunks of "
              "--shard-size problems numbered I mod N); join the N outputs with `qup merge`")


class UserError(QupError):
    """A bad command-line argument; printed as one line, exit code 2 (as every QupError)."""


def _add(sub, name: str, fn: Callable, help: str, example: str, cfg_cls=None):
    p = sub.add_parser(name, help=help, description=f"{help}\n\nExample:\n  {example}",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    if cfg_cls is not None:
        p.add_argument("--config", help="YAML file with this command's config")
        C.add_dataclass_args(p, cfg_cls)
    elif fn is cmd_variant:
        p.add_argument("--config", help="YAML file with this variant's options")
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
    from .stages.sample import sample_command
    _print_json(sample_command(_cfg(args), shard=args.shard))


def cmd_verify(args):
    from .stages.verify import verify_command
    _print_json(verify_command(_cfg(args)))


def cmd_variant(args):
    """``qup <variant> --traces PARENT --out DIR [--oracle M] [--slm M] [options]``: build one variant."""
    from pathlib import Path

    from .generation.roles import RoleConfig
    from .io import load, save
    from .stages.verify import summary
    from .variants import BuildContext, get
    v = get(args.variant)
    if not args.traces or not args.out:
        raise UserError(f"{v.name}: --traces (the {v.parent} dir) and --out are required")
    options = v.options(C.merge(C.read_yaml(args.config) if args.config else {},
                                C.overrides_from_args(args)), v.name)
    roles = {}
    for role in v.needs:
        model, urls = getattr(args, role), getattr(args, f"{role}_endpoint") or []
        if model:
            spec = RoleConfig(model=model, backend="endpoint" if urls else "local", endpoints=urls)
            roles[role] = spec.generator
    tokenize = None
    if getattr(args, "slm", None):
        from .models import load_tokenizer
        tok = load_tokenizer(args.slm)
        tokenize = lambda text: tok(text, add_special_tokens=False)["input_ids"]  # noqa: E731
    ctx = BuildContext(roles=roles, workdir=Path(args.out), tokenize=tokenize)
    from dataclasses import asdict

    from .sharding import Shard, check_out, take
    shard = Shard.parse(args.shard)
    check_out(args.out, shard, v.name)
    parent, cut = take(load(args.traces), shard)
    ds = v.build(parent, options, ctx)
    save(ds, args.out)
    if cut:   # what every shard of this build must share (the models, not where they ran)
        cut.record(args.out, v.name, {"options": asdict(options) if options is not None else None,
                                      "roles": {r: getattr(args, r) for r in v.needs}}, len(ds))
    _print_json({"out": args.out, "variant": v.name, "parent": summary(parent), **summary(ds),
                 "counts": dict(ctx.counts)})


def cmd_score(args):
    from .stages.score import score_command
    _print_json(score_command(_cfg(args), shard=args.shard))


def cmd_merge(args):
    from .stages.merge import merge_command
    result = merge_command(args.dirs, args.out)
    if args.publish:   # the union as one commit (stages do not import publishing)
        from .publishing.publish import publish_dataset
        name = args.name or result["name"]
        pub = publish_dataset(args.publish, {name: args.out}, endpoint=args.hub_url, private=args.private,
                              tag=args.tag, provenance={"merged_shards": result["shards"],
                                                        "stage": result["stage"]})
        result["published"] = {"repo": args.publish, "config": name, **pub.__dict__}
    _print_json(result)


def cmd_select(args):
    """``qup select --data rft=DIR --data oracle_refine=DIR --lam 0.5 --out DIR``."""
    from collections import Counter

    from .io import load, save
    from .stages.verify import summary
    from .variants.selected import SelectConfig, select
    pool = {}
    for item in args.data or []:
        name, _, path = item.rpartition("=")
        ds = load(path)
        if not name and "variant" in ds.column_names and len(set(ds["variant"])) == 1:
            name = ds["variant"][0]    # a plain DIR names itself by its variant column
        if not name or name in pool:
            raise UserError(f"--data {item!r}: give each pool member as NAME=DIR with a distinct NAME")
        pool[name] = ds
    if not pool or not args.out:
        raise UserError("select: --data NAME=DIR (repeatable, scored variant dirs) and --out are required")
    overrides = C.overrides_from_args(args)
    if "pool" in overrides:
        raise UserError("select: the pool is the --data NAME=DIR list; do not pass --pool")
    cfg = C.load_config(SelectConfig, args.config, {**overrides, "pool": list(pool)})
    counts = Counter()
    ds = select(pool, cfg, counts)
    save(ds, args.out)
    _print_json({"out": args.out, "variant": "selected", "lam": cfg.lam, "pool": list(pool),
                 **summary(ds), "counts": dict(counts)})


def cmd_train(args):
    from .ranks import is_main
    from .stages.train import train_command
    summary = train_command(_cfg(args))
    if is_main():   # under torchrun / accelerate launch every rank trains; rank 0 reports
        _print_json(summary)


def cmd_evaluate(args):
    from .stages.evaluate import evaluate_command
    _print_json(evaluate_command(_cfg(args)))


def _recipe_overrides(args) -> dict:
    """``--set a.b=VALUE`` (YAML values) as a nested mapping."""
    return C.parse_sets(args.set or [])


def cmd_run(args):
    from .ranks import world_size
    from .run import print_table, run_recipe
    if world_size() > 1:   # every rank would sample, build, publish: only `train` is rank-aware
        raise UserError("qup run is not rank-aware: run it as one process and launch only "
                        "`qup train` under torchrun / accelerate launch (see jobs/README.md)")
    summary = run_recipe(args.recipe, _recipe_overrides(args), run_dir=args.run_dir)
    _print_json(summary)
    sys.stdout.flush()
    print_table(summary)      # the last thing a user sees: the variant table (stderr)


def cmd_study(args):
    from .study import run_study
    summary = run_study(args.recipe, _recipe_overrides(args), run_dir=args.run_dir)
    _print_json({k: v for k, v in summary.items() if k != "analyses"})
    sys.stdout.flush()
    print(summary["findings_md"], file=sys.stderr)


def cmd_serve(args):
    from .serve import serve
    adapters = {}
    for item in args.adapter or []:
        name, _, path = item.partition("=")
        if not _ or not name or not path:
            raise UserError(f"--adapter expects NAME=PATH, got {item!r}")
        adapters[name] = path
    serve(args.model, adapters or None, host=args.host, port=args.port, max_batch_size=args.max_batch_size,
          dtype=args.dtype, max_input_tokens=args.max_input_tokens, max_total_tokens=args.max_total_tokens,
          max_concurrent_requests=args.max_concurrent_requests, payload_limit=args.payload_limit)


def cmd_hub_serve(args):
    from .hub.auth import load_tokens
    from .hub.server import serve
    try:
        tokens = load_tokens(args.token, args.tokens_file)
    except ValueError as e:
        raise UserError(str(e)) from None
    os.environ.pop("QUP_HUB_TOKENS", None)       # read once; not inherited by anything it starts
    limits = {k: v for k, v in (("max_body_bytes", args.max_body_bytes), ("max_lfs_bytes", args.max_lfs_bytes))
              if v is not None}
    if args.job_path is not None:
        limits["job_paths"] = args.job_path
    serve(args.root, host=args.host, port=args.port, tokens=tokens, allowed_hosts=args.allowed_host or (),
          jobs=args.jobs, **limits)



def _json_arg(value: str | None, what: str):
    """``value`` as JSON: a path to a .json file or an inline JSON string (None stays None)."""
    if value is None:
        return None
    try:
        return json.loads(open(value).read() if os.path.isfile(value) else value)
    except (ValueError, OSError) as e:
        raise UserError(f"{what}: not a JSON file or JSON string: {value!r} ({e})") from None


def cmd_publish_dataset(args):
    from .publishing.publish import publish_dataset
    variants = {}
    for item in args.variant:
        name, _, path = item.partition("=")
        if not _ or not name or not path:
            raise UserError(f"--variant expects NAME=DIR (e.g. rft=runs/x/rft), got {item!r}")
        variants[name] = path
    result = publish_dataset(args.repo, variants, endpoint=args.hub_url, private=args.private,
                             provenance=_json_arg(args.provenance, "--provenance"),
                             source_info=_json_arg(args.source_info, "--source-info"), tag=args.tag)
    _print_json(result.__dict__)


def cmd_publish_adapter(args):
    from .publishing.publish import publish_adapter
    evals = []
    for item in args.eval or []:
        data = _json_arg(item, "--eval")
        evals.extend(data if isinstance(data, list) else [data])
    result = publish_adapter(args.repo, args.adapter, endpoint=args.hub_url, private=args.private,
                             eval_results=evals, tag=args.tag)
    _print_json(result.__dict__)

# ---------------------------------------------------------------------------- qup jobs (HF Jobs)
def _job_cfg(args):
    from .jobs.spec import JobConfig
    return C.load_config(JobConfig, args.config, C.overrides_from_args(args))


def cmd_jobs_submit(args):
    from .jobs.client import submit
    _print_json(submit(args.target, _job_cfg(args), args.set or [], args.args, dry_run=args.dry_run))


def cmd_jobs_status(args):
    from .jobs.client import status
    for row in status(args.job_id, _job_cfg(args)):
        _print_json(row)


def cmd_jobs_logs(args):
    from .jobs.client import logs
    for line in logs(args.job_id, _job_cfg(args), follow=args.follow, tail=args.tail):
        print(line, flush=True)


def cmd_jobs_cancel(args):
    from .jobs.client import cancel
    _print_json(cancel(args.job_id, _job_cfg(args)))


def cmd_space_run(args):
    from .space.launch import run
    run(args.run_dir, hub_url=args.hub_url, backend=args.backend, host=args.host, port=args.port,
        experiment=args.experiment or "")


def cmd_space_deploy(args):
    from .space.launch import deploy
    _print_json({"repo": args.repo, "commit_url": deploy(args.repo, endpoint=args.hub_url, private=args.private,
                                                          experiment=args.experiment or "")})


def build_parser() -> argparse.ArgumentParser:
    from .sources import SourceConfig
    from .stages.evaluate import EvaluateConfig
    from .variants import REGISTRY
    from .stages.sample import SampleConfig
    from .stages.train import TrainConfig
    from .stages.verify import VerifyConfig

    parser = argparse.ArgumentParser(
        prog="qup", description="QUP toolkit: distil math reasoning into small LMs without the "
        "Quality-Utility Paradox (sample → verify → variants → publish → train → evaluate).")
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

    p = _add(sub, "sample", cmd_sample, "Sample k traces per problem from the SLM (resumable)",
         "qup sample --model tiny-random --source svamp --limit 8 --k 4 --out runs/x/samples",
         SampleConfig)
    p.add_argument("--shard", metavar="I/N", help=SHARD_HELP)
    _add(sub, "verify", cmd_verify, "Extract and verify each trace's answer (math-verify)",
         "qup verify --traces runs/x/samples --out runs/x/variants/self", VerifyConfig)
    for v in REGISTRY.values():  # one command per variant built from another (self is `qup verify`)
        if v.name != "self" and not v.scored:
            roles = "".join(f" --{r} {'qwen2.5-coder-0.5b-instruct' if r == 'oracle' else 'smollm2-135m-instruct'}"
                            for r in v.needs)
            p = _add(sub, v.name, cmd_variant, f"Build the `{v.name}` variant: {v.doc}",
                     f"qup {v.name} --traces runs/x/variants/{v.parent} --out runs/x/variants/{v.name}{roles}")
            p.add_argument("--traces", help=f"the `{v.parent}` variant dir")
            p.add_argument("--out", help="output dataset dir")
            for role in v.needs:
                p.add_argument(f"--{role}", help=f"the {role} model: preset, dir or Hub id"
                               + (", or `reference`" if role == "oracle" else ""))
                p.add_argument(f"--{role}-endpoint", action="append", metavar="URL",
                               help=f"serve the {role} from these TGI endpoints (repeatable)")
            if v.config is not None:
                C.add_dataclass_args(p, v.config)
            p.add_argument("--shard", metavar="I/N", help=SHARD_HELP)
            p.set_defaults(variant=v.name)
    from .stages.score import ScoreConfig
    from .variants.selected import SelectConfig
    p = _add(sub, "score", cmd_score, "Reward (judge or RM), adaptation cost (learner NLL) and drift of "
             "every row (resumable)", "qup score --data runs/x/variants/rft --reference runs/x/variants/self "
             "--learner smollm2-135m-instruct --judge qwen2.5-coder-0.5b-instruct --out runs/x/scores/rft",
             ScoreConfig)
    p.add_argument("--shard", metavar="I/N", help=SHARD_HELP)
    p = _add(sub, "merge", cmd_merge, "Merge the N shard outputs of one stage (--shard i/N) into one "
             "dataset: all shards present once, same config, nothing missing or duplicated",
             "qup merge runs/s0/samples runs/s1/samples --out runs/x/samples "
             "[--publish me/qup-samples --hub-url URL]")
    p.add_argument("dirs", nargs="+", metavar="DIR", help="the shard output dirs")
    p.add_argument("--out", required=True, help="output dir of the union")
    p.add_argument("--publish", metavar="REPO", help="also publish the union as one commit to this "
                   "dataset repo (token: HF_TOKEN)")
    p.add_argument("--name", help="config name when publishing (default: the rows' variant)")
    p.add_argument("--hub-url", help="Hub endpoint (default: HF_ENDPOINT or https://huggingface.co)")
    p.add_argument("--private", action="store_true", help="create the repo private")
    p.add_argument("--tag", help="tag name for this publish (default: next vN)")
    p = _add(sub, "select", cmd_select, "Compatibility-aware selection: keep the pool's rows with the "
             "best z(reward) − λ·z(NLL) (the `selected` variant)",
             "qup select --data rft=runs/x/scores/rft --data oracle_refine=runs/x/scores/oracle_refine "
             "--lam 0.5 --out runs/x/variants/selected", SelectConfig)
    p.add_argument("--data", action="append", metavar="NAME=DIR", help="a scored variant (repeatable)")
    p.add_argument("--out", help="output dataset dir")
    _add(sub, "train", cmd_train, "LoRA SFT of the SLM on a trace dataset (TRL + PEFT)",
         "qup train --model tiny-random --data runs/x/variants/rft --out runs/x/adapter --max-steps 20",
         TrainConfig)
    _add(sub, "evaluate", cmd_evaluate, "Greedy pass@1 of a model (+ adapter) on held-out problems",
         "qup evaluate --model tiny-random --adapter runs/x/adapter --source ../shared/data/svamp "
         "--limit 20 --out runs/x/eval", EvaluateConfig)
    p = _add(sub, "run", cmd_run, "Run a whole recipe (sample → variants → publish → train → evaluate → report)",
             "qup run smoke --run-dir runs/smoke --set sample.k=2")
    p.add_argument("recipe", help="a packaged recipe name (smoke, cpu-demo) or a YAML path")
    p.add_argument("--run-dir", help="where outputs go (default: runs/<recipe name>)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="override a recipe key, e.g. --set sample.k=8 (repeatable)")
    p = _add(sub, "study", cmd_study, "Train every variant with several seeds, compare them paired, "
             "predict utility from pre-training diagnostics, publish a results dataset",
             "qup study cpu-paradox --run-dir runs/cpu-paradox --set study.seeds=[0,1]")
    p.add_argument("recipe", help="a packaged recipe name or a YAML path (its `study:` section)")
    p.add_argument("--run-dir", help="where outputs go (default: runs/<recipe name>)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="override a recipe key, e.g. --set study.seeds=[0,1] (repeatable)")
    # Commands of later issues register below (serve, hub, publish).
    p = _add(sub, "serve", cmd_serve, "Serve a model (+ LoRA adapters) over TGI's HTTP API",
             "qup serve --model smollm2-135m-instruct --adapter math=runs/x/adapter --port 8080")
    p.add_argument("--model", required=True, help="preset, model dir or Hub id")
    p.add_argument("--adapter", action="append", metavar="NAME=PATH",
                   help="a LoRA adapter, chosen per request by adapter_id=NAME (repeatable)")
    p.add_argument("--host", default="127.0.0.1", help="bind address (default: loopback)")
    p.add_argument("--port", type=int, default=8080)
    p.add_argument("--max-batch-size", type=int, default=16, help="requests per shared forward pass")
    p.add_argument("--max-input-tokens", type=int, help="longest prompt in tokens (default: positions - 1)")
    p.add_argument("--max-total-tokens", type=int,
                   help="prompt + new tokens per request (default: the model's positions)")
    p.add_argument("--max-concurrent-requests", type=int, default=128,
                   help="requests queued or running at once; beyond: HTTP 429 (default: 128)")
    p.add_argument("--payload-limit", type=int, default=2_000_000,
                   help="largest request body in bytes; beyond: HTTP 413 (default: 2000000)")
    p.add_argument("--dtype", default="auto", help="auto (bf16 where native) | float32 | bfloat16 | float16")
    hub = sub.add_parser("hub", help="local Hub-compatible server").add_subparsers(dest="sub", required=True)
    p = _add(hub, "serve", cmd_hub_serve, "Serve a Hub-compatible API (HF_ENDPOINT) from a folder; "
             "no --token = open server, anyone may write",
             "qup hub serve --root hub-data --port 8080 --tokens-file hub-tokens.txt")
    p.add_argument("--root", required=True, help="storage folder (git repos + LFS objects)")
    p.add_argument("--host", default="127.0.0.1", help="bind address (default: loopback)")
    p.add_argument("--port", type=int, default=8080)
    p.add_argument("--token", action="append", metavar="NAME=TOKEN:read|write[:ORG,...]",
                   help="an accepted token (repeatable); NAME is the user/namespace, ORGs the "
                        "organisations it may also write to (prefer --tokens-file: argv is visible in ps)")
    p.add_argument("--tokens-file", metavar="PATH",
                   help="file of token specs, one NAME=TOKEN:ROLE[:ORG,...] a line (# comments); "
                        "also read: $QUP_HUB_TOKENS (specs separated by whitespace)")
    p.add_argument("--max-body-bytes", type=int,
                   help="largest API request body (commits with inline files); beyond: HTTP 413 "
                        "(default: 256 MiB)")
    p.add_argument("--max-lfs-bytes", type=int,
                   help="largest LFS object the batch API accepts (default: 50 GiB)")
    p.add_argument("--allowed-host", action="append", metavar="NAME",
                   help="a host name clients use to reach this Hub (repeatable; e.g. its public name behind "
                        "a proxy; * accepts any). Its bound address and, on loopback, localhost always work")
    p.add_argument("--jobs", choices=("sandbox", "unsafe-shared", "off"), default="sandbox",
                   help="the Jobs API: sandbox (default; each job in a bubblewrap sandbox, off when bwrap "
                        "is missing), unsafe-shared (jobs run unisolated: only with one user's tokens), off")
    p.add_argument("--job-path", action="append", metavar="PATH",
                   help="a path jobs may read (repeatable; default: the qup model cache and shared data)")
    pub = sub.add_parser("publish", help="publish datasets / adapters to the Hub (token: HF_TOKEN)"
                         ).add_subparsers(dest="sub", required=True)
    p = _add(pub, "dataset", cmd_publish_dataset, "Publish trace variants as configs of one Hub dataset "
             "repo, with a card; one commit + tag per publish",
             "qup publish dataset --repo me/qup-svamp-smollm2 --variant self=runs/x/self "
             "--variant rft=runs/x/rft --hub-url http://127.0.0.1:8080")
    p.add_argument("--variant", action="append", required=True, metavar="NAME=DIR",
                   help="a variant (config) name and its save_to_disk dir (repeatable)")
    p.add_argument("--provenance", help="JSON file or string: slm, oracle, engine, filters, ...")
    p.add_argument("--source-info", help="JSON file or string: dataset (Hub id), revision, license")
    p2 = _add(pub, "adapter", cmd_publish_adapter, "Publish a LoRA adapter dir (with qup_train.json) "
              "as a Hub model repo with a model card",
              "qup publish adapter --repo me/smollm2-135m-qup-rft --adapter runs/x/adapter "
              "--eval runs/x/eval/metrics.json")
    p2.add_argument("--adapter", required=True, help="adapter dir written by qup train")
    p2.add_argument("--eval", action="append", metavar="JSON",
                    help="evaluation result: metrics.json of qup evaluate, or JSON (repeatable)")
    for q in (p, p2):
        q.add_argument("--repo", required=True, help="target repo id ORG/NAME")
        q.add_argument("--hub-url", help="Hub endpoint (default: HF_ENDPOINT or https://huggingface.co)")
        q.add_argument("--private", action="store_true", help="create the repo private")
        q.add_argument("--tag", help="tag name for this publish (default: next vN)")
    from .jobs.spec import JobConfig
    jobs = sub.add_parser("jobs", help="run recipes and stages as Hugging Face Jobs (resumable from "
                          "the Hub)").add_subparsers(dest="sub", required=True)
    p = _add(jobs, "submit", cmd_jobs_submit, "Submit a recipe (or one stage) as an HF Job; its run dir "
             "lives in a private run-state repo, so a re-submitted job resumes",
             "qup jobs submit paper-qwen2.5-1.5b --flavor a100-large --timeout 12h --secrets HF_TOKEN "
             "--dry-run", JobConfig)
    p.add_argument("target", help="a recipe (packaged name or YAML path) or a stage: "
                   "sample, verify, score, select, train, evaluate, <variant>")
    p.add_argument("args", nargs="*", help="a stage's own arguments, after -- (e.g. -- --config sample.yaml)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a recipe key (repeatable)")
    p.add_argument("--dry-run", action="store_true",
                   help="print the job spec (secrets as ***) and the equivalent hf commands; submit nothing")
    for name, fn, help_ in (("status", cmd_jobs_status, "Status of a job, or of every job of the namespace"),
                            ("logs", cmd_jobs_logs, "Print a job's logs (--follow: until it ends)"),
                            ("cancel", cmd_jobs_cancel, "Cancel a job (its process group is killed)")):
        p = _add(jobs, name, fn, help_, f"qup jobs {name} 6650d6b4f1a2c3d4e5f60718", JobConfig)
        p.add_argument("job_id", nargs="?" if name == "status" else None, help="the job id")
        if name == "logs":
            p.add_argument("--follow", action="store_true", help="stream until the job ends")
            p.add_argument("--tail", type=int, help="only the last N lines")
    space = sub.add_parser("space", help="the public Gradio Space (spaces/)").add_subparsers(dest="sub", required=True)
    p = _add(space, "run", cmd_space_run, "Serve the Space locally against a run's embedded Hub (or any Hub)",
             "qup space run --run-dir runs/cpu-demo --port 7860")
    p.add_argument("--run-dir", help="a run dir whose hub/ holds a published experiment")
    p.add_argument("--hub-url", help="a running Hub instead (default: the run dir's)")
    p.add_argument("--backend", choices=("local", "tgi"), default="local",
                   help="local: transformers + PEFT in-process; tgi: start `qup serve` with the adapters")
    p.add_argument("--experiment", help="the experiment's dataset repo (default: the largest found)")
    p.add_argument("--host", default="127.0.0.1", help="bind address (default: loopback)")
    p.add_argument("--port", type=int, default=7860)
    p = _add(space, "deploy", cmd_space_deploy, "Push spaces/ (+ the toolkit package) as a Space repo, one commit",
             "HF_TOKEN=hf_... qup space deploy --repo me/qup-arena")
    p.add_argument("--repo", required=True, help="Space repo id ORG/NAME")
    p.add_argument("--hub-url", help="Hub endpoint (default: HF_ENDPOINT or https://huggingface.co)")
    p.add_argument("--experiment", help="experiment whose repos the card names (default: the largest found)")
    p.add_argument("--private", action="store_true", help="create the Space private")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    for noisy in ("httpx", "httpx2", "huggingface_hub"):  # one line per HTTP request otherwise
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        args.fn(args)
    except QupError as e:
        print(f"qup: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
