"""Every Python example of docs/testing-bounds.md runs as written and prints what the page says."""
import contextlib
import io
import pathlib
import re

import pytest

PAGE = pathlib.Path(__file__).resolve().parents[1] / "docs" / "testing-bounds.md"
EXAMPLES = re.findall(r"```python\n(.*?)```", PAGE.read_text(), flags=re.S)

#: What each example must print (a failing check found, or the claim held).
EXPECTED = [
    ["lipschitz_bound_wrong_dual is unsound", "delta=", "W=[["],
    ["the claim held on every example"],
    ["test_per_unit_bound_is_exact(\n    problem=Problem(", "per-unit bound", "Problem(net=TwoLayerNet(W=[["],  # the shrunk example, whatever its label
]


def test_the_page_has_the_three_examples():
    assert len(EXAMPLES) == len(EXPECTED) == 3


@pytest.mark.parametrize("index", range(len(EXPECTED)), ids=["soundness", "dense-mixture", "lemma"])
def test_docs_example_runs(index, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # hypothesis' example database goes here, not into the checkout
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(EXAMPLES[index], f"{PAGE.name}[example {index + 1}]", "exec"), {"__name__": "__docs__"})
    for text in EXPECTED[index]:
        assert text in out.getvalue()
