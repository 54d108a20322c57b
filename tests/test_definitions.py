"""`Definition`: the one place that names the ways a set of heads is read out."""

import ast
import re
from pathlib import Path

import pytest
import torch

import headcoop
from headcoop import Count01, Definition, ModelConfig, SplitSpec, build_model
from headcoop.engine.cache import collect
from headcoop.metrics.attribution import IMPLEMENTATIONS, SetLogits

PACKAGE = Path(headcoop.__file__).parent
OWN_MODULE = PACKAGE / "metrics" / "definitions.py"


def _code_strings(path: Path) -> list[tuple[int, str]]:
    """Every string literal of ``path`` that is code, not documentation: docstrings and other
    bare string statements are left out; f-strings give their literal parts."""
    tree = ast.parse(path.read_text())
    docs = {
        id(node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)
    }
    return [
        (node.lineno, node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docs
    ]


def test_no_module_but_its_own_spells_a_definitions_suffix():
    suffixes = [d.suffix for d in Definition if d.suffix]
    pattern = re.compile("|".join(rf"{re.escape(s)}\b" for s in suffixes))
    found = [
        f"{path.relative_to(PACKAGE)}:{line}: {text!r}"
        for path in sorted(PACKAGE.rglob("*.py"))
        if path != OWN_MODULE
        for line, text in _code_strings(path)
        if pattern.search(text)
    ]
    assert found == []


def test_the_grep_would_see_a_spelled_suffix(tmp_path):
    spelled = tmp_path / "spelled.py"
    spelled.write_text('"""l_acc_direct in a docstring is fine."""\nCOLUMN = f"{x}_direct"\n')
    assert [text for _, text in _code_strings(spelled)] == ["_direct"]


def test_every_definition_has_one_implementation():
    assert set(IMPLEMENTATIONS) == set(Definition)


def test_a_column_names_its_metric_under_one_definition_only():
    for definition in Definition:
        column = definition.column("eos_l_acc")
        assert definition.plain(column) == "eos_l_acc"
        named = [d for d in Definition if d.suffix and d.plain(column) is not None]
        assert named == ([definition] if definition.suffix else [])
    assert Definition("mean") is Definition.MEAN
    assert Definition.judged_ones() == (Definition.PAPER, Definition.DIRECT)


SHORT = SplitSpec(80, n01=(0, 10), n2=(0, 10))
SHAPES = {
    "one layer": ModelConfig(d_model=16, n_heads=3, d_head=4),
    "two layers, positions": ModelConfig(
        d_model=16, n_heads=2, d_head=4, n_layers=2, positional=True, n_ctx=48
    ),
    "one layer, MLP": ModelConfig(d_model=16, n_heads=3, d_head=4, d_mlp=24),
}


@pytest.mark.parametrize("shape", SHAPES)
def test_set_logits_of_all_heads_under_each_ablation_are_the_models_logits(shape):
    """Keeping every head, both ablations are the running model; on the empty set zero and
    mean ablation differ (the means are not zero)."""
    task = Count01(splits={"train": SHORT, "val": SHORT, "test": SHORT})
    model = build_model(SHAPES[shape], len(task.vocab), seed=1)
    train, test = (
        collect(model, task, task.split("train")),
        collect(model, task, task.split("test")),
    )
    logits = SetLogits.of(model, task, train, test, task.split("test"))
    n_heads = model.cfg.n_layers * model.cfg.n_heads
    every, nothing = (
        torch.ones(1, n_heads, dtype=torch.bool),
        torch.zeros(1, n_heads, dtype=torch.bool),
    )
    tokens = torch.arange(model.cfg.d_vocab)
    for definition in (Definition.DIRECT, Definition.MEAN):
        kept = logits.set_logits(every, task.decision, tokens, definition)[0]
        assert (kept - test.logits[:, task.decision]).abs().max() < 1e-4
    zero = logits.set_logits(nothing, task.decision, tokens, Definition.DIRECT)
    mean = logits.set_logits(nothing, task.decision, tokens, Definition.MEAN)
    assert (zero - mean).abs().max() > 1e-3
