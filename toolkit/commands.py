"""The arguments of the ``qup`` commands that are not a stage's config, one dataclass each, and the
library function each command calls (the CLI derives its flags from these, TRL's way).

Example:
    >>> merge(MergeArgs(dirs=["runs/s0/samples", "runs/s1/samples"], out="runs/x/samples"))  # doctest: +SKIP
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Literal

from .config import ConfigError, parse_sets
from .generation.roles import RoleConfig


def _h(text: str, **more) -> dict:
    return {"help": text, **more}


def _hub_url():
    return field(default="", metadata=_h("Hub endpoint (default: HF_ENDPOINT or https://huggingface.co)"))


SHARD = ("do shard I of N (0 <= I < N): the problems whose id hashes to I (sample: the chunks of "
         "--shard-size problems numbered I mod N); join the N outputs with `qup merge`")


@dataclass
class ShardArgs:
    shard: str = field(default="", metadata=_h(SHARD))


@dataclass
class PrepareArgs:
    name: str = field(metadata=_h("smollm2-135m-instruct | tiny-random | ..."))
    out: str = field(metadata=_h("output directory"))


def prepare(args: PrepareArgs) -> dict:
    from .models import prepare as build
    return {"model": args.name, "path": str(build(args.name, args.out))}


@dataclass
class MergeArgs:
    dirs: list[str] = field(metadata=_h("the shard output dirs"))
    out: str = field(metadata=_h("output dir of the union"))
    publish: str = field(default="", metadata=_h("also publish the union as one commit to this dataset "
                                                 "repo (token: HF_TOKEN)"))
    name: str = field(default="", metadata=_h("config name when publishing (default: the rows' variant)"))
    hub_url: str = _hub_url()
    private: bool = field(default=False, metadata=_h("create the repo private"))
    tag: str = field(default="", metadata=_h("tag name for this publish (default: next vN)"))


def merge(args: MergeArgs) -> dict:
    """``qup merge``: the shards' union, then optionally one publish commit of it."""
    from .stages.merge import merge_command
    result = merge_command(args.dirs, args.out)
    if args.publish:   # the union as one commit (stages do not import publishing)
        from .publishing.publish import publish_dataset
        name = args.name or result["name"]
        pub = publish_dataset(args.publish, {name: args.out}, endpoint=args.hub_url or None,
                              private=args.private, tag=args.tag or None,
                              provenance={"merged_shards": result["shards"], "stage": result["stage"]})
        result["published"] = {"repo": args.publish, "config": name, **pub.__dict__}
    return result


@dataclass
class RecipeArgs:
    recipe: str = field(metadata=_h("a packaged recipe name (smoke, cpu-demo, cpu-paradox) or a YAML path"))
    run_dir: str = field(default="", metadata=_h("where outputs go (default: runs/<recipe name>)"))
    set: list[str] = field(default_factory=list, metadata=_h(
        "override a recipe key, e.g. --set sample.k=8, --set oracle.backend=vllm"))


def run(args: RecipeArgs) -> dict:
    from .ranks import world_size
    from .run import run_recipe
    if world_size() > 1:   # every rank would sample, build, publish: only `train` is rank-aware
        raise ConfigError("qup run is not rank-aware: run it as one process and launch only "
                          "`qup train` under torchrun / accelerate launch (see jobs/README.md)")
    return run_recipe(args.recipe, parse_sets(args.set), run_dir=args.run_dir or None)


def study(args: RecipeArgs) -> dict:
    from .study import run_study
    return run_study(args.recipe, parse_sets(args.set), run_dir=args.run_dir or None)


def train(cfg) -> dict | None:
    """``qup train``; under torchrun / accelerate launch every rank trains and rank 0 reports."""
    from .ranks import is_main
    from .stages.train import train_command
    summary = train_command(cfg)
    return summary if is_main() else None


def _pairs(items: list[str], flag: str, example: str) -> dict[str, str]:
    out = {}
    for item in items:
        name, eq, value = item.partition("=")
        if not eq or not name or not value:
            raise ConfigError(f"{flag} expects NAME=VALUE (e.g. {example}), got {item[:200]!r}")
        out[name] = value
    return out


@dataclass
class ServeArgs:
    model: RoleConfig = field(default_factory=RoleConfig, metadata=_h(
        "the served model, in-process (flags --model, --backend auto|vllm|transformers, --dtype, --vllm-*)"))
    adapter: list[str] = field(default_factory=list, metadata=_h(
        "a LoRA adapter as NAME=PATH, chosen per request by adapter_id=NAME"))
    host: str = field(default="127.0.0.1", metadata=_h("bind address (default: loopback)"))
    port: int = 8080
    max_batch_size: int = field(default=16, metadata=_h("requests per shared forward pass"))
    max_input_tokens: int | None = field(default=None, metadata=_h("longest prompt in tokens (default: positions - 1)"))
    max_total_tokens: int | None = field(default=None, metadata=_h(
        "prompt + new tokens per request (default: the model's positions)"))
    max_concurrent_requests: int = field(default=128, metadata=_h("requests queued or running at once; beyond: HTTP 429"))
    payload_limit: int = field(default=2_000_000, metadata=_h("largest request body in bytes; beyond: HTTP 413"))


def serve(args: ServeArgs) -> None:
    from .serve import serve as run_server
    if not args.model.enabled:
        raise ConfigError("qup serve: --model is required")
    run_server(args.model, _pairs(args.adapter, "--adapter", "math=runs/x/adapter") or None, host=args.host,
               port=args.port, max_batch_size=args.max_batch_size,
               max_input_tokens=args.max_input_tokens, max_total_tokens=args.max_total_tokens,
               max_concurrent_requests=args.max_concurrent_requests, payload_limit=args.payload_limit)


@dataclass
class HubServeArgs:
    root: str = field(metadata=_h("storage folder (git repos + LFS objects)"))
    host: str = field(default="127.0.0.1", metadata=_h("bind address (default: loopback)"))
    port: int = 8080
    token: list[str] = field(default_factory=list, metadata=_h(
        "an accepted token NAME=TOKEN:read|write[:ORG,...]; NAME is the user/namespace, ORGs the "
        "organisations it may also write to (prefer --tokens-file: argv is visible in ps)"))
    tokens_file: str = field(default="", metadata=_h(
        "file of token specs, one NAME=TOKEN:ROLE[:ORG,...] a line (# comments); also read: "
        "$QUP_HUB_TOKENS (specs separated by whitespace)"))
    max_body_bytes: int | None = field(default=None, metadata=_h(
        "largest API request body (commits with inline files); beyond: HTTP 413 (default: 256 MiB)"))
    max_lfs_bytes: int | None = field(default=None, metadata=_h(
        "largest LFS object the batch API accepts (default: 50 GiB)"))
    allowed_host: list[str] = field(default_factory=list, metadata=_h(
        "a host name clients use to reach this Hub (e.g. its public name behind a proxy; * accepts "
        "any). Its bound address and, on loopback, localhost always work"))
    jobs: Literal["sandbox", "unsafe-shared", "off"] = field(default="sandbox", metadata=_h(
        "the Jobs API: sandbox (each job in a bubblewrap sandbox, off when bwrap is missing), "
        "unsafe-shared (jobs run unisolated: only with one user's tokens), off"))
    job_path: list[str] | None = field(default=None, metadata=_h(
        "a path jobs may read (default: the qup model cache and shared data)"))


def hub_serve(args: HubServeArgs) -> None:
    from .hub.auth import load_tokens
    from .hub.server import serve as run_hub
    try:
        tokens = load_tokens(args.token or None, args.tokens_file or None)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    os.environ.pop("QUP_HUB_TOKENS", None)       # read once; not inherited by anything it starts
    limits = {k: v for k, v in (("max_body_bytes", args.max_body_bytes), ("max_lfs_bytes", args.max_lfs_bytes),
                                ("job_paths", args.job_path)) if v is not None}
    run_hub(args.root, host=args.host, port=args.port, tokens=tokens, allowed_hosts=args.allowed_host,
            jobs=args.jobs, **limits)


@dataclass
class PublishArgs:
    repo: str = field(metadata=_h("target repo id ORG/NAME"))
    hub_url: str = _hub_url()
    private: bool = field(default=False, metadata=_h("create the repo private"))
    tag: str = field(default="", metadata=_h("tag name for this publish (default: next vN)"))


@dataclass
class PublishDatasetArgs(PublishArgs):
    variant: list[str] = field(default_factory=list, metadata=_h(
        "a variant (config) name and its save_to_disk dir as NAME=DIR"))
    provenance: str = field(default="", metadata=_h("JSON file or string: slm, oracle, engine, filters, ..."))
    source_info: str = field(default="", metadata=_h("JSON file or string: dataset (Hub id), revision, license"))


@dataclass
class PublishAdapterArgs(PublishArgs):
    adapter: str = field(default="", metadata=_h("adapter dir written by qup train"))
    eval: list[str] = field(default_factory=list, metadata=_h(
        "evaluation result: metrics.json of qup evaluate, or JSON"))


def _json_arg(value: str, what: str):
    """``value`` as JSON: a path to a .json file or an inline JSON string ('' is None)."""
    if not value:
        return None
    try:
        return json.loads(open(value).read() if os.path.isfile(value) else value)
    except (ValueError, OSError) as e:
        raise ConfigError(f"{what}: not a JSON file or JSON string: {value[:200]!r} ({e})") from None


def publish_dataset(args: PublishDatasetArgs) -> dict:
    from .publishing.publish import publish_dataset as publish
    variants = _pairs(args.variant, "--variant", "rft=runs/x/rft")
    if not variants:
        raise ConfigError("publish dataset: give at least one --variant NAME=DIR")
    return publish(args.repo, variants, endpoint=args.hub_url or None, private=args.private,
                   provenance=_json_arg(args.provenance, "--provenance"),
                   source_info=_json_arg(args.source_info, "--source-info"), tag=args.tag or None).__dict__


def publish_adapter(args: PublishAdapterArgs) -> dict:
    from .publishing.publish import publish_adapter as publish
    if not args.adapter:
        raise ConfigError("publish adapter: --adapter DIR is required")
    evals = []
    for item in args.eval:
        data = _json_arg(item, "--eval")
        evals.extend(data if isinstance(data, list) else [data])
    return publish(args.repo, args.adapter, endpoint=args.hub_url or None, private=args.private,
                   eval_results=evals, tag=args.tag or None).__dict__


@dataclass
class JobSubmitArgs:
    target: str = field(metadata=_h("a recipe (packaged name or YAML path) or a stage: sample, verify, "
                                    "score, select, train, evaluate, <variant>"))
    args: list[str] = field(default_factory=list, metadata=_h(
        "a stage's own arguments, after -- (e.g. -- --config sample.yaml)"))
    set: list[str] = field(default_factory=list, metadata=_h("override a recipe key"))
    dry_run: bool = field(default=False, metadata=_h(
        "print the job spec (secrets as ***) and the equivalent hf commands; submit nothing"))


@dataclass
class JobStatusArgs:
    job_id: str = field(default="", metadata=_h("the job id (none: every job of the namespace)"))


@dataclass
class JobIdArgs:
    job_id: str = field(metadata=_h("the job id"))


@dataclass
class JobLogsArgs(JobIdArgs):
    follow: bool = field(default=False, metadata=_h("stream until the job ends"))
    tail: int | None = field(default=None, metadata=_h("only the last N lines"))


def jobs_submit(cfg, args: JobSubmitArgs) -> dict:
    from .jobs.client import submit
    return submit(args.target, cfg, args.set, args.args, dry_run=args.dry_run)


def jobs_status(cfg, args: JobStatusArgs) -> list[dict]:
    from .jobs.client import status
    return status(args.job_id or None, cfg)


def jobs_logs(cfg, args: JobLogsArgs):
    from .jobs.client import logs
    return logs(args.job_id, cfg, follow=args.follow, tail=args.tail)


def jobs_cancel(cfg, args: JobIdArgs) -> dict:
    from .jobs.client import cancel
    return cancel(args.job_id, cfg)


@dataclass
class SpaceRunArgs:
    run_dir: str = field(default="", metadata=_h("a run dir whose hub/ holds a published experiment"))
    hub_url: str = field(default="", metadata=_h("a running Hub instead (default: the run dir's)"))
    backend: Literal["local", "tgi"] = field(default="local", metadata=_h(
        "local: the base model + adapters in-process; tgi: start `qup serve` with the adapters"))
    experiment: str = field(default="", metadata=_h("the experiment's dataset repo (default: the largest found)"))
    host: str = field(default="127.0.0.1", metadata=_h("bind address (default: loopback)"))
    port: int = 7860


def space_run(args: SpaceRunArgs) -> None:
    from .space.launch import run as launch
    launch(args.run_dir or None, hub_url=args.hub_url or None, backend=args.backend, host=args.host,
           port=args.port, experiment=args.experiment)


@dataclass
class SpaceDeployArgs:
    repo: str = field(metadata=_h("Space repo id ORG/NAME"))
    hub_url: str = _hub_url()
    experiment: str = field(default="", metadata=_h("experiment whose repos the card names (default: the largest found)"))
    private: bool = field(default=False, metadata=_h("create the Space private"))


def space_deploy(args: SpaceDeployArgs) -> dict:
    from .space.launch import deploy
    return {"repo": args.repo, "commit_url": deploy(args.repo, endpoint=args.hub_url or None,
                                                    private=args.private, experiment=args.experiment)}
