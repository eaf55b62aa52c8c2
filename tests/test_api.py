"""The public API: lazy names, a version, and the README's notebook example (issue 22, item 5)."""
import re
import subprocess
import sys
from pathlib import Path

import toolkit

README = Path(__file__).resolve().parents[1] / "README.md"


def test_import_toolkit_loads_no_model_library_and_has_a_version():
    code = ("import sys, toolkit; assert toolkit.__version__[0].isdigit(), toolkit.__version__; "
            "heavy = {'torch', 'datasets', 'transformers', 'trl'} & set(sys.modules); "
            "assert not heavy, heavy; toolkit.SampleConfig; assert 'datasets' in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_every_public_name_resolves_and_is_listed():
    for name in toolkit.__all__:
        assert getattr(toolkit, name) is not None, name
    assert toolkit.score.__module__ == "toolkit.stages.score" and toolkit.register_column.__name__ == "register"
    assert {"run_recipe", "sample", "score", "train", "evaluate"} <= set(dir(toolkit))
    try:
        toolkit.no_such_name
    except AttributeError as e:
        assert "no attribute 'no_such_name'" in str(e)
    else:
        raise AssertionError("an unknown name must raise AttributeError")


def test_the_readme_notebook_example_runs(shared_data, tiny_model):
    block = re.search(r"<!-- api-example -->\n```python\n(.*?)```", README.read_text(), re.S).group(1)
    assert len(block.strip().splitlines()) == 5
    proc = subprocess.run([sys.executable, "-c", block], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = eval(proc.stdout.strip().splitlines()[-1])           # the printed list of dicts
    assert len(rows) == 4 and {"trace_id", "answer", "correct"} == set(rows[0])
