"""One resumable unit of work: reused under the same key, redone (and logged) under another."""
from datasets import Features, Value

from toolkit.resume import digest, unit


def test_a_unit_is_reused_only_under_its_key(tmp_path, caplog):
    path, calls = tmp_path / "shard-00000.parquet", []

    def make(value):
        return lambda: calls.append(value) or [{"x": value}]
    assert unit(path, {"judge": "a"}, [1, 2], make(1)) == [{"x": 1}]
    assert unit(path, {"judge": "a"}, [1, 2], make(2)) == [{"x": 1}] and calls == [1]   # reused
    with caplog.at_level("WARNING", logger="toolkit.resume"):
        assert unit(path, {"judge": "b"}, [1, 2], make(3)) == [{"x": 3}]           # other settings
        assert unit(path, {"judge": "b"}, [1, 3], make(4)) == [{"x": 4}]           # other input
    assert "other settings ['judge']" in caplog.text and "other input rows" in caplog.text
    assert calls == [1, 3, 4] and not list(tmp_path.glob("*.tmp"))


def test_unkeyed_or_damaged_files_and_empty_units_are_redone_or_kept(tmp_path, caplog):
    path = tmp_path / "shard-00000.parquet"
    path.write_bytes(b"PAR1 half a file")                      # a file from before keys, or damaged
    with caplog.at_level("WARNING", logger="toolkit.resume"):
        assert unit(path, {}, [], lambda: [{"x": 1}]) == [{"x": 1}]
    assert "no key" in caplog.text
    features = Features({"x": Value("float32")})
    empty = tmp_path / "empty.parquet"
    assert unit(empty, {}, [], lambda: [], features) == []
    assert unit(empty, {}, [], lambda: [{"x": 9.0}], features) == []            # an empty unit is done too


def test_digest_is_order_sensitive_and_names_the_row_count():
    assert digest([{"a": 1}, {"a": 2}]) != digest([{"a": 2}, {"a": 1}])
    assert digest([{"a": 1}]).startswith("1:") and unit(None, {}, [], lambda: [7]) == [7]
