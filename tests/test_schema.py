"""One schema per arrow: neutral row defaults that every column type accepts."""
from datasets import Dataset, Features, Value

from toolkit.schema import TRACE, empty_row, empty_trace


def test_empty_trace_has_null_scores_and_builds_a_dataset():
    row = empty_trace()
    assert row["edit_distance"] is None and row["oracle_token_share"] is None  # not measured yet
    assert row["correct"] is False and row["seed"] == 0 and row["completion"] == ""
    ds = Dataset.from_list([row], features=TRACE)
    assert ds.features == TRACE and ds[0]["edit_distance"] is None


def test_a_new_float_column_gets_none_not_an_empty_string():
    features = Features({**TRACE, "reward": Value("float32"), "nll": Value("float64")})
    row = empty_row(features)
    assert row["reward"] is None and row["nll"] is None
    assert Dataset.from_list([row], features=features)[0]["reward"] is None
