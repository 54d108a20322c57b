import pandas as pd
import pytest
import torch

from headcoop.config import ModelConfig, TrainConfig
from headcoop.engine.cache import collect
from headcoop.engine.stack import Stack
from headcoop.errors import HeadcoopError
from headcoop.heads.analyze import analyze
from headcoop.heads.dynamics import (
    Trajectory,
    pearson,
    random_head_s_acc,
    trajectory,
    weighted_s_acc_correlation,
)
from headcoop.metrics.classes import labels
from headcoop.metrics.separation import separation_accuracy, separation_accuracy_each
from headcoop.model import build_model
from headcoop.training.trainer import train

SMALL = ModelConfig(d_model=8, n_heads=4, d_head=2)


def test_trajectory_matches_analyzing_each_checkpoint(task, tmp_path):
    train(task, SMALL, TrainConfig(epochs=3, lr=3e-3), out=tmp_path)
    path = trajectory(tmp_path)
    assert path.epochs.tolist() == [1, 2, 3]
    assert path.s_acc.shape == path.head_weight.shape == (3, 4)
    last = analyze(tmp_path / "epoch_0003", subsets=False)
    assert path.s_acc[-1].tolist() == pytest.approx(last.heads["s_acc"])
    assert path.head_weight[-1].tolist() == pytest.approx(last.heads["head_weight"])
    assert path.accuracy[-1].item() == pytest.approx(last.summary["accuracy"]["answer"])
    assert torch.allclose(path.weighted_s_acc, (path.s_acc * path.head_weight).sum(1))
    assert len(path.to_pandas()) == 12 and set(path.to_pandas()["run"]) == {0}
    with pytest.raises(HeadcoopError, match="no epoch checkpoints"):
        trajectory(tmp_path, epochs=[7])


def test_weighted_s_acc_correlation_pools_runs_after_the_first_epoch():
    def run(acc):
        acc = torch.tensor(acc)
        return Trajectory(
            torch.arange(1, len(acc) + 1) * 5,
            torch.ones(len(acc), 2) * acc[:, None],
            torch.full((len(acc), 2), 0.5),
            acc,
        )

    runs = pd.concat([run([0.5, 0.6, 0.9]).to_pandas(0), run([0.7, 0.8]).to_pandas(1)])
    pooled, r = weighted_s_acc_correlation(runs)
    assert pooled["accuracy"].tolist() == pytest.approx([0.6, 0.9, 0.8])  # epochs 10 and later
    assert pooled["weighted_s_acc"].to_numpy() == pytest.approx(pooled["accuracy"].to_numpy())
    assert r == pytest.approx(1.0)


def test_pearson():
    x = torch.arange(10.0)
    assert pearson(x, 3 * x + 1) == pytest.approx(1.0)
    assert pearson(x, -x) == pytest.approx(-1.0)


def test_random_params_follow_the_transformer_lens_initialisation():
    template = build_model(ModelConfig(), 8, seed=0)
    params = Stack.random(template, 400, torch.Generator().manual_seed(0)).params
    std = template.cfg.initializer_range
    assert params["blocks.0.attn.W_Q"].std().item() == pytest.approx(std, rel=0.02)
    assert (params["blocks.0.attn.b_Q"] == 0).all() and (params["blocks.0.ln1.w"] == 1).all()
    assert params["embed.W_E"].shape == (400, 8, 32)


def test_stacked_head_outputs_match_each_models_hook_z(task):
    template = build_model(ModelConfig(), 8, seed=0)
    models = [build_model(ModelConfig(), 8, seed=s) for s in range(3)]
    Stack.random(template, 3, torch.Generator().manual_seed(1)).write_back(models)
    counts = task.split("test")[:30]
    z = Stack.of(models).head_outputs(task.bags(counts))
    for i, model in enumerate(models):
        assert (z[i] - collect(model, task, counts).z).abs().max() < 1e-5


def test_per_head_solver_agrees_with_the_shared_one(trained, task):
    train_cache, test_cache = (
        collect(trained, task, task.split("train")),
        collect(trained, task, task.split("test")),
    )
    y, y_test = labels(task, train_cache.targets), labels(task, test_cache.targets)
    shared = separation_accuracy(
        train_cache.z[:, 0], y, test_cache.z[:, 0], y_test, torch.eye(16, dtype=torch.bool)
    )
    each = separation_accuracy_each(
        train_cache.z[:, 0].transpose(0, 1), y, test_cache.z[:, 0].transpose(0, 1), y_test
    )
    assert torch.allclose(shared, each)


def test_random_heads_span_a_range_of_s_acc(task):
    s_acc = random_head_s_acc(task, n_heads=40, seed=0)
    assert s_acc.shape == (40,)
    assert s_acc.min() >= 0.3 and s_acc.max() <= 1.0 and s_acc.std() > 0.01
