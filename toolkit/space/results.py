"""What a study published beside the experiment, read once at the results repo's newest tag: the
``default`` rows (one per SLM × variant × seed × benchmark, ``toolkit.schema.RESULTS``), the
``details`` config (every evaluated sample, at most :data:`MAX_DETAILS`) and ``report.md``.

Example:
    >>> got = published(HfApi(endpoint=url), "alice/qup-mawps-results")         # doctest: +SKIP
    >>> len(got.results), got.revision, got.report.splitlines()[0]             # doctest: +SKIP
    (18, 'v2', '# Study cpu-study')
"""
from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass, field

from ..schema import REPORT_FILES
from .discovery import hub_file, newest_revision

log = logging.getLogger(__name__)
MAX_DETAILS = 20_000     # detail rows read from a results dataset
MAX_REPORT = 100_000     # characters of the study's report shown


@dataclass
class Published:
    results: list[dict] = field(default_factory=list)
    details: list[dict] = field(default_factory=list)
    report: str = ""
    revision: str = ""
    error: str = ""          # why the repo could not be read ("" when it could, or there is none)


def published(api, repo: str) -> Published:
    """The results repo ``repo`` at its newest tag; empty when ``repo`` is "" or unreadable (logged)."""
    if not repo:
        return Published()
    try:
        revision = newest_revision(api, repo, "dataset")
        return Published(parquet_rows(api, repo, "data/", revision),
                         parquet_rows(api, repo, "details/", revision, MAX_DETAILS),
                         report(api, repo, revision), revision)
    except Exception as e:  # noqa: BLE001 - an unreadable results dataset: the tabs say so
        log.warning("results of %s unreadable (%s)", repo, e)
        return Published(error=str(e)[:200] or type(e).__name__)


def parquet_rows(api, repo: str, prefix: str, revision: str, limit: int | None = None) -> list[dict]:
    """The rows of the repo's ``<prefix>*.parquet`` files at ``revision`` (at most ``limit``), via ``datasets``."""
    from datasets import load_dataset
    files = [f for f in api.list_repo_files(repo, repo_type="dataset", revision=revision)
             if f.startswith(prefix) and f.endswith(".parquet")]
    if not files:
        return []
    with tempfile.TemporaryDirectory() as tmp:
        local = [api.hf_hub_download(repo, f, repo_type="dataset", revision=revision, cache_dir=tmp)
                 for f in files]
        ds = load_dataset("parquet", data_files=local, split="train", cache_dir=f"{tmp}/ds")
        return (ds if limit is None else ds.select(range(min(len(ds), limit)))).to_list()


def report(api, repo: str, revision: str) -> str:
    """The study's ``report.md`` (findings, the paradox table per benchmark, paired comparisons,
    Spearman per criterion, compute), else "". Its image lines go (the tab draws its own plot); a
    report over :data:`MAX_REPORT` characters is cut, saying so."""
    raw = hub_file(api, repo, REPORT_FILES[0], revision, "dataset", limit=4 * MAX_REPORT + 4)
    if raw is None:
        return ""
    text = raw.decode("utf-8", errors="replace")
    lines = [line for line in text[:MAX_REPORT].splitlines() if not line.startswith("![")]
    return "\n".join(lines) + ("\n\n*(report cut: longer than this page shows)*" if len(text) > MAX_REPORT else "")
