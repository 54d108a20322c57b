"""examples/walkthrough.ipynb runs top to bottom: every code cell, in order, in one namespace
(as a kernel would run them), and each figure it ends with is built."""

import json
from pathlib import Path

import plotly.graph_objects as go
import pytest

NOTEBOOK = Path(__file__).parents[1] / "examples" / "walkthrough.ipynb"


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_the_walkthrough_notebook_runs():
    cells = json.loads(NOTEBOOK.read_text())["cells"]
    code = ["".join(c["source"]) for c in cells if c["cell_type"] == "code"]
    assert len(code) >= 5
    namespace: dict = {}
    for k, source in enumerate(code):
        exec(compile(source, f"{NOTEBOOK.name} cell {k}", "exec"), namespace)
    assert 0.0 <= namespace["accuracy"]["answer"] <= 1.0
    assert len(namespace["heads"]) == 4
    assert isinstance(namespace["outputs"], go.Figure) and len(namespace["outputs"].data) == 2
    assert isinstance(namespace["attention"], go.Figure)
    assert all(not c["outputs"] for c in cells if c["cell_type"] == "code")  # stored stripped
