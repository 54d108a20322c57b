"""Sweeps: stacked training that resumes, cached results, and measurements that agree with
the HookedTransformer path."""

import json

import pytest
import torch

import headcoop.training.sweep as sweep
from headcoop.analysis.heads import SetMeasure
from headcoop.compat import parameters
from headcoop.config import ModelConfig, TrainConfig
from headcoop.engine.bags import evaluate
from headcoop.errors import HeadcoopError
from headcoop.metrics.cache import collect
from headcoop.model import build_model
from headcoop.training.checkpoint import load_stack, save_stack
from headcoop.training.sweep import Experiment, measure_models, run_sweep, train_stack

EXPERIMENTS = [
    Experiment(ModelConfig(d_model=8, n_heads=2), 0),
    Experiment(ModelConfig(d_model=4, n_heads=3), 1),
]


def test_an_interrupted_stack_resumes_to_the_same_weights(task, tmp_path, monkeypatch):
    cfg = TrainConfig(epochs=3)
    whole = train_stack(task, EXPERIMENTS, cfg, tmp_path / "whole.safetensors")

    real_save = sweep.save_stack

    def save_then_stop(path, models, meta, optimizer):
        real_save(path, models, meta, optimizer)
        if meta["epoch"] == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(sweep, "save_stack", save_then_stop)
    with pytest.raises(KeyboardInterrupt):
        train_stack(task, EXPERIMENTS, cfg, tmp_path / "cut.safetensors", save_every=1)
    monkeypatch.setattr(sweep, "save_stack", real_save)
    resumed = train_stack(task, EXPERIMENTS, cfg, tmp_path / "cut.safetensors", save_every=1)
    for a, b in zip(whole, resumed, strict=True):
        for (name, p), q in zip(parameters(a).items(), parameters(b).values(), strict=True):
            assert torch.equal(p, q), name


def test_a_stack_file_reloads_as_the_trained_models(task, tmp_path):
    models = train_stack(task, EXPERIMENTS, TrainConfig(epochs=1), tmp_path / "s.safetensors")
    reloaded = sweep.load_stack_models(tmp_path / "s.safetensors")
    assert [m.cfg.n_heads for m in reloaded] == [2, 3]
    for a, b in zip(models, reloaded, strict=True):
        assert evaluate(a, task, task.split("test")) == evaluate(b, task, task.split("test"))


def test_a_corrupt_stack_file_is_named(tmp_path):
    path = tmp_path / "s.safetensors"
    path.write_bytes(b"not a safetensors file")
    with pytest.raises(HeadcoopError, match=r"s\.safetensors is corrupt"):
        load_stack(path)


def test_stack_files_round_trip_optimizer_state(tmp_path):
    model = build_model(ModelConfig(n_heads=2), 8, 0)
    optimizer = torch.optim.AdamW(model.parameters())
    model(torch.tensor([[0, 1, 4]])).sum().backward()
    optimizer.step()
    save_stack(tmp_path / "s.safetensors", [model], {"epoch": 1}, optimizer.state_dict())
    states, meta, state = load_stack(tmp_path / "s.safetensors")
    assert meta == {"epoch": 1} and torch.equal(states[0]["embed.W_E"], model.embed.W_E)
    torch.optim.AdamW(model.parameters()).load_state_dict(state)  # loads without complaint


def test_measured_s_acc_matches_the_hooked_transformer_path(trained, task):
    other = build_model(ModelConfig(d_model=8, n_heads=3), len(task.vocab), 5)
    results = measure_models(task, [trained, other])
    for model, result in zip([trained, other], results, strict=True):
        train, test = (
            collect(model, task, task.split("train")),
            collect(model, task, task.split("test")),
        )
        expected = SetMeasure(task, train, test, None).s_acc(
            torch.eye(model.cfg.n_heads, dtype=torch.bool)
        )
        assert torch.allclose(torch.tensor(result["s_acc"]), expected, atol=2 / len(test))
        assert result["test_accuracy"] == pytest.approx(
            evaluate(model, task, task.split("test"))["answer"]
        )


def test_a_sweep_caches_results_by_configuration(task, tmp_path, monkeypatch):
    cfg = TrainConfig(epochs=1)
    first = run_sweep(task, [EXPERIMENTS], cfg, tmp_path)
    assert [r["n_heads"] for r in first] == [2, 3] and all(
        len(r["s_acc"]) == r["n_heads"] for r in first
    )

    def no_training(*args, **kwargs):
        raise AssertionError("a cached experiment was trained again")

    monkeypatch.setattr(sweep, "train_stack", no_training)
    assert run_sweep(task, [EXPERIMENTS[::-1]], cfg, tmp_path) == first[::-1]
    with pytest.raises(AssertionError, match="trained again"):  # another setting is not cached
        run_sweep(task, [EXPERIMENTS], TrainConfig(epochs=2), tmp_path)
    assert len(json.loads((tmp_path / "results.json").read_text())) == 2


def test_a_corrupt_results_file_is_named(task, tmp_path):
    (tmp_path / "results.json").write_text("{broken")
    with pytest.raises(HeadcoopError, match=r"results\.json is corrupt"):
        run_sweep(task, [EXPERIMENTS], TrainConfig(epochs=1), tmp_path)
