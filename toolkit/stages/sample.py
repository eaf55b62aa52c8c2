"""``sample``: the SLM writes k traces per problem (the ``self`` variant).

Every row records its provenance: problem id, sample index, seed, model id and revision, prompt
template id, sampling params, rendered prompt, token counts and finish reason. Work is done in
chunks of ``shard_size`` problems, each decoded together and written once finished, so a killed
run resumes without redoing finished problems; ``--shard i/N`` splits the work by chunk.

Example:
    >>> cfg = SampleConfig(slm=RoleConfig("tiny-random"), problems=SourceConfig(source="svamp", limit=4),
    ...                    k=2, out="runs/x/samples")
    >>> sample_command(cfg)                                                  # doctest: +SKIP
"""
from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from pathlib import Path

from datasets import Dataset, concatenate_datasets

from ..config import ConfigError, keyed, volatile
from ..generation import Generator, Request, SamplingParams, engine_of
from ..generation.roles import RoleConfig
from ..prompts import load_prompt
from ..resume import generator_identity, unit
from ..schema import TRACE, empty_trace
from ..sharding import Shard, check_out, take
from ..sources import SourceConfig, load_problems
from ..io import empty, save

log = logging.getLogger(__name__)


def _h(text: str) -> dict:
    return {"help": text}


@dataclass
class SampleConfig:
    slm: RoleConfig = field(default_factory=lambda: RoleConfig("tiny-random"), metadata=_h(
        "the SLM that samples (flags --model, --backend, --dtype, --transformers-*, --vllm-*, --endpoint-*)"))
    problems: SourceConfig = field(default_factory=SourceConfig, metadata=_h("problems to sample"))
    k: int = field(default=4, metadata=_h("traces per problem"))
    temperature: float = 0.8
    top_p: float = 0.95
    top_k: int = 0
    max_new_tokens: int = 256
    stop: list[str] = field(default_factory=list)
    seed: int = field(default=0, metadata=_h("base seed; each trace's seed derives from it"))
    prompt: str = field(default="math_cot", metadata=_h("prompt template name or .txt path"))
    shard_size: int = field(default=32, metadata=_h(
        "problems per chunk (decoded together, resumable; --shard splits by chunk)"))
    out: str = volatile("", "output dataset dir (save_to_disk)")

    # the SLM's flat keys before it was one role
    __moved__ = {"model": "slm.model", "dtype": "slm.dtype", "backend": "slm.backend",
                 "vllm": "slm.vllm", "batch_size": "slm.transformers.batch_size",
                 **{k: f"slm.{v}" for k, v in RoleConfig.__moved__.items() if k != "batch_size"}}

    def __post_init__(self):
        if isinstance(self.slm, str):
            self.slm = RoleConfig(self.slm)
        if not self.slm.enabled or self.slm.backend == "reference":
            raise ConfigError(f"sample: slm must be a model, got {self.slm.model!r}")
        if self.k < 1:
            raise ConfigError(f"k must be >= 1, got {self.k}")
        if self.shard_size < 1:
            raise ConfigError(f"shard_size must be >= 1, got {self.shard_size}")
        self.params(0)  # validates sampling params early

    def params(self, seed: int) -> SamplingParams:
        try:
            return SamplingParams(max_new_tokens=self.max_new_tokens, temperature=self.temperature,
                                  top_p=self.top_p, top_k=self.top_k, do_sample=self.temperature > 0,
                                  stop=list(self.stop), seed=seed)
        except ValueError as e:
            raise ConfigError(str(e)) from None

    def generator(self) -> Generator:
        """The SLM's Generator (its role's one builder)."""
        return self.slm.generator()


def trace_seed(base: int, problem_id: str, index: int) -> int:
    """A stable per-trace seed: the same (base, problem, index) gives the same seed anywhere."""
    return int(hashlib.sha256(f"{base}:{problem_id}:{index}".encode()).hexdigest()[:15], 16)


def _rows(problems: Dataset, cfg: SampleConfig, gen: Generator) -> list[dict]:
    template = load_prompt(cfg.prompt)
    requests, meta = [], []
    for p in problems:
        prompt = gen.render_chat(template.messages(p["question"]))
        for i in range(cfg.k):
            params = cfg.params(trace_seed(cfg.seed, p["id"], i))
            requests.append(Request(prompt, params))
            meta.append((p, i, params))
    rows = []
    for (p, i, params), c in zip(meta, gen.generate(requests)):
        row = empty_trace()
        row.update({k: p[k] for k in ("id", "question", "gold_answer", "gold_solution", "source", "split")})
        row.update(problem_id=p["id"], trace_id=f"{p['id']}#{i}", sample_index=i, seed=params.seed,
                   model_id=gen.model_id, model_revision=gen.model_revision, prompt_id=template.id,
                   params=params.to_json(), prompt=requests[len(rows)].prompt, completion=c.text,
                   prompt_tokens=c.prompt_tokens, completion_tokens=c.completion_tokens,
                   finish_reason=c.finish_reason, variant="self")
        rows.append(row)
    return rows


def sample(problems: Dataset, cfg: SampleConfig, generator: Generator,
           shard_dir: str | Path | None = None, chunks: dict[str, int] | None = None) -> Dataset:
    """k traces per problem as a TRACE dataset, decoded chunk by chunk: chunk c holds the problems
    at positions ``c * shard_size ...`` of the input (``chunks``: each problem's chunk in the whole
    input, when ``problems`` is one ``--shard`` of it). A chunk's traces decode together and apart
    from other chunks, so a shard's texts equal the unsharded run's. With ``shard_dir``, a finished
    chunk is reused only by the same settings, model and problems (:mod:`toolkit.resume`)."""
    ids = problems["id"]
    chunk_of = chunks if chunks is not None else {pid: i // cfg.shard_size for i, pid in enumerate(ids)}
    members: dict[int, list[int]] = {}
    for i, pid in enumerate(ids):
        members.setdefault(chunk_of[pid], []).append(i)
    model = generator_identity(generator)
    settings = {**setup(cfg, model["engine"]), **model}
    parts = []
    for n, (c, rows) in enumerate(sorted(members.items())):
        part = problems.select(rows)
        path = Path(shard_dir) / f"shard-{c:05d}.parquet" if shard_dir is not None else None

        def make(part=part, c=c, n=n):
            log.info("chunk %d (%d/%d): sampling %d problems x %d", c, n + 1, len(members), len(part), cfg.k)
            return _rows(part, cfg, generator)
        parts.append(Dataset.from_list(unit(path, settings, part, make, TRACE, f"sample chunk {c}"),
                                       features=TRACE))
    return concatenate_datasets(parts) if parts else empty(TRACE)


def setup(cfg: SampleConfig, engine: str) -> dict:
    """What decides a chunk's traces besides its problems: the result-changing settings
    (:func:`~toolkit.config.keyed`, minus the problem slice) and the engine."""
    return {**{k: v for k, v in keyed(cfg).items() if k != "problems"}, "engine": engine}


def sample_command(cfg: SampleConfig, shard: str | Shard | None = None) -> dict:
    """Load problems, sample (resumably), save the ``self`` variant to ``cfg.out``.

    ``shard`` (``"i/N"``): sample only the chunks of ``shard_size`` problems that go to shard i of
    N (chunk c to shard c mod N, see :mod:`toolkit.sharding`), and record
    it in ``cfg.out/qup_shard.json`` for ``qup merge`` (see :mod:`toolkit.sharding`)."""
    if not cfg.out:
        raise ConfigError("sample: 'out' is required (e.g. --out runs/x/samples)")
    if not cfg.problems.source:
        raise ConfigError("sample: 'source' is required (e.g. --source svamp)")
    shard = Shard.parse(shard)
    check_out(cfg.out, shard, "sample")
    problems, cut = take(load_problems(cfg.problems), shard, column="id",
                         digest_columns=("id", "question", "gold_answer"), chunk=cfg.shard_size)
    gen = cfg.generator()
    ds = sample(problems, cfg, gen, shard_dir=Path(cfg.out) / "shards", chunks=cut.chunks if cut else None)
    save(ds, cfg.out)
    if cut:
        cut.record(cfg.out, "sample", {**keyed(cfg), "engine": engine_of(gen), "model_id": gen.model_id, "model_revision":
                                       gen.model_revision, "dtype": getattr(gen, "dtype", "")}, len(ds))
    return {"out": cfg.out, "problems": len(problems), "traces": len(ds), "dtype": getattr(gen, "dtype", ""),
            "engine": engine_of(gen),
            "completion_tokens": int(sum(ds["completion_tokens"])),
            **({"shard": str(shard)} if shard else {})}
