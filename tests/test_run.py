"""The one door: `choose_engine` picks the engine, and `run` gives the same head outputs and
logits whichever engine runs them, equal to the model's own hooked forward."""

import pytest
import torch

from headcoop.config import ModelConfig
from headcoop.engine.cache import collect
from headcoop.engine.run import choose_engine, run
from headcoop.engine.stack import Stack
from headcoop.errors import HeadcoopError
from headcoop.model import build_model
from headcoop.tasks import Induction

TOL = 1e-4


def test_the_engine_follows_the_model_and_the_task(task):
    plain = build_model(ModelConfig(n_heads=3), len(task.vocab), seed=0)
    positional = build_model(ModelConfig(n_heads=3, positional=True), len(task.vocab), seed=0)
    assert choose_engine([plain], task) == "stack"
    assert choose_engine([plain], task, mode="full") == "full"
    assert choose_engine([positional], task) == "full"
    assert choose_engine([plain, positional], task) == "full"  # one model decides for all
    induction = Induction()
    assert choose_engine([build_model(ModelConfig(), len(induction.vocab), seed=0)], induction) == (
        "full"
    )
    with pytest.raises(HeadcoopError, match="not exact"):
        choose_engine([positional], task, mode="bag")


def test_run_on_a_stack_equals_each_model_hooked_forward(task, trained):
    other = build_model(ModelConfig(n_heads=3, d_model=8), len(task.vocab), seed=4)
    examples = task.split("test")[:50]
    stacked = run([trained, other], task, examples)
    for k, model in enumerate((trained, other)):
        cache = collect(model, task, examples, mode="full")  # the model's own forward
        assert stacked.z[k].shape == (50, model.cfg.n_heads, model.cfg.d_head)
        assert (stacked.z[k] - cache.z[:, task.decision]).abs().max() < TOL
        assert (stacked.logits[k] - cache.logits).abs().max() < TOL
    heads = stacked.heads()
    assert heads.shape == (trained.cfg.n_heads + 3, 50, 2)
    assert torch.equal(heads[trained.cfg.n_heads], stacked.z[1][:, 0])


def test_run_without_a_stack_gives_the_same_outputs(task, trained):
    examples = task.split("test")[:40]
    full = run([trained], task, examples, mode="full")
    stacked = run([trained], task, examples)
    assert (full.z[0] - stacked.z[0]).abs().max() < TOL
    assert (full.logits[0] - stacked.logits[0]).abs().max() < TOL
    assert torch.equal(full.targets.cpu(), stacked.targets.cpu())


def test_run_takes_a_ready_stack_and_can_leave_the_logits_out(task, trained):
    examples = task.split("test")[:30]
    outputs = run(Stack.of([trained, trained]), task, examples, logits=False)
    assert outputs.logits == [] and len(outputs.z) == 2
    assert torch.equal(outputs.z[0], outputs.z[1])
