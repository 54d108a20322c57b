"""examples/custom_task.py: a user's own task, defined in one file, trains and is analysed."""

import importlib.util
from pathlib import Path

import pandas as pd
import pytest

from headcoop import ModelConfig, TrainConfig, load_checkpoint, predict, train
from headcoop.tasks import Task, task_from_config

EXAMPLE = Path(__file__).parents[1] / "examples" / "custom_task.py"


@pytest.fixture(scope="module")
def example():
    spec = importlib.util.spec_from_file_location("custom_task", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_example_task_satisfies_the_protocol(example):
    task = example.TwiceAsMany(size=50)
    assert isinstance(task, Task)
    assert task.format(task.parse("xxxyz=Y")) == "xxxyz=Y"
    targets = task.targets(task.split("test"))
    assert 0.2 < (targets[:, 0] == task.vocab.index("Y")).float().mean() < 0.8


def test_the_example_runs_end_to_end(example, tmp_path, capsys):
    result = example.main(epochs=3, size=300, out=tmp_path)
    assert "test accuracy" in capsys.readouterr().out
    heads = pd.read_csv(tmp_path / "heads.csv")
    assert {"w_xy", "w_xz", "l_acc", "l_acc_direct", "eos_l_acc"} <= set(heads.columns)
    assert len(heads) == 4 and len(result.subsets.masks) == 16


def test_the_example_task_checkpoints_and_compresses_exactly(example, tmp_path):
    task = example.TwiceAsMany(size=200)
    model = train(task, ModelConfig(d_model=8, n_heads=2), TrainConfig(epochs=2), out=tmp_path)
    test = task.split("test")[:40]
    bag, full = predict(model, task, test, "bag"), predict(model, task, test, "full")
    assert (bag - full).abs().max() < 1e-4
    loaded, config = load_checkpoint(tmp_path)
    assert task_from_config(config["task"]) == task
    assert (predict(loaded, task, test) - bag).abs().max() == 0
