"""A second task (examples/custom_task.py) runs through the unchanged model, engine, trainer
and checkpoints."""

import importlib.util
from pathlib import Path

import pytest

from headcoop import ModelConfig, TrainConfig, evaluate, load_checkpoint, predict, train
from headcoop.tasks import Task, task_from_config

EXAMPLE = Path(__file__).parents[1] / "examples" / "custom_task.py"


@pytest.fixture(scope="module")
def plurality():
    spec = importlib.util.spec_from_file_location("custom_task", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.Plurality(size=300)


def test_the_example_task_satisfies_the_protocol(plurality):
    assert isinstance(plurality, Task)


def test_the_example_task_trains_checkpoints_and_compresses_exactly(plurality, tmp_path):
    cfg = ModelConfig(d_model=16, n_heads=4, d_head=4)
    model = train(plurality, cfg, TrainConfig(epochs=8, lr=1e-2), out=tmp_path)
    assert evaluate(model, plurality, plurality.split("val"))["eos"] == 1.0
    assert evaluate(model, plurality, plurality.split("val"))["answer"] > 0.6  # chance: ~1/3

    test = plurality.split("test")[:40]
    bag, full = predict(model, plurality, test, "bag"), predict(model, plurality, test, "full")
    assert (bag - full).abs().max() < 1e-4

    loaded, config = load_checkpoint(tmp_path)
    assert task_from_config(config["task"]) == plurality
    assert (predict(loaded, plurality, test) - bag).abs().max() == 0
