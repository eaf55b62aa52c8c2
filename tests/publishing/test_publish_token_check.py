"""publish_dataset refuses rows holding the Hub token: exact, over multi-chunk and sliced tables.

The check pre-filters on each chunk's raw value bytes; these cases pin that it neither misses a
token in a later chunk nor refuses data whose bytes only look like the token (a token split across
two adjacent values, or a leaky row outside the rows being published).
"""
from __future__ import annotations

import pytest
from datasets import Dataset, concatenate_datasets

from toolkit.publishing.publish import PublishError, publish_dataset
from toolkit.schema import TRACE, empty_trace

from ..conftest import ALICE


def traces(completions: list[str]) -> Dataset:
    rows = []
    for i, text in enumerate(completions):
        row = empty_trace()
        row.update(id=f"svamp/test/{i}", problem_id=f"svamp/test/{i}", trace_id=f"svamp/test/{i}#0",
                   question=f"What is {i} + 1?", gold_answer=str(i + 1), completion=text,
                   answer=str(i + 1), correct=True, verify_status="correct", variant="rft")
        rows.append(row)
    return Dataset.from_list(rows, features=TRACE)


def test_token_in_a_later_chunk_is_refused(hub):
    clean = traces([f"{i} + 1 = {i + 1}" for i in range(20)])
    leaky = traces(["fine", f"I used token {ALICE} here", "fine"])
    ds = concatenate_datasets([clean, clean, leaky])
    assert len(ds.with_format("arrow")[:]["completion"].chunks) >= 2
    with pytest.raises(PublishError, match="variant rft: column 'completion' contains the Hub token") as e:
        publish_dataset("alice/leak", {"rft": ds}, token=ALICE, endpoint=hub.url)
    assert ALICE not in str(e.value)


def test_token_look_alikes_are_published(hub):
    half = len(ALICE) // 2
    # Adjacent values whose concatenated bytes spell the token, and a leaky row sliced away.
    ds = traces([f"the prefix {ALICE[:half]}", f"{ALICE[half:]} the suffix", "ok", f"x {ALICE}"])
    published = ds.select(range(3))   # contiguous select: a slice over the same buffers
    raw = published.with_format("arrow")[:]["completion"].chunks[0].buffers()[2].to_pybytes()
    assert ALICE.encode() in raw      # the pre-filter does fire here
    result = publish_dataset("alice/lookalike", {"rft": published}, token=ALICE, endpoint=hub.url)
    assert result.created_commit and result.tag == "v1"
