"""Heads over training and at initialisation.

- `trajectory`: s-acc and head weight of every head, and model accuracy, at each saved epoch of
  a training run (the paper's Figure 14, right; Figure 10 pools several runs).
- `random_head_s_acc`: s-acc of many freshly initialised heads (Figure 14, left), computed for
  all of them at once from stacked random parameters.
"""

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from jaxtyping import Float, Int

from headcoop.config import ModelConfig
from headcoop.device import Device
from headcoop.engine.run import run
from headcoop.engine.stack import Stack
from headcoop.errors import HeadcoopError
from headcoop.loading.checkpoint import load_with_task, run_checkpoints
from headcoop.metrics.attribution import head_weights
from headcoop.metrics.single_heads import S_ACC_SPLITS, measure_models, single_head_s_acc
from headcoop.model import build_model
from headcoop.progress import progress_bar
from headcoop.tasks.base import Task, candidate_ids


@dataclass(frozen=True)
class Trajectory:
    """Per-epoch head metrics of one training run."""

    epochs: Int[torch.Tensor, " checkpoint"]
    s_acc: Float[torch.Tensor, "checkpoint head_index"]
    head_weight: Float[torch.Tensor, "checkpoint head_index"]
    accuracy: Float[torch.Tensor, " checkpoint"]

    @property
    def weighted_s_acc(self) -> Float[torch.Tensor, " checkpoint"]:
        """The head-weighted mean s-acc, sum_i hw_i s-acc_i (the paper's Figure 10)."""
        return (self.s_acc * self.head_weight).sum(-1)

    def to_pandas(self, run: Any = 0) -> Any:
        """One row per (epoch, head), labelled with ``run``."""
        import pandas as pd

        n_heads = self.s_acc.shape[1]
        return pd.DataFrame(
            {
                "run": run,
                "epoch": self.epochs.repeat_interleave(n_heads).tolist(),
                "head": list(range(n_heads)) * len(self.epochs),
                "s_acc": self.s_acc.flatten().tolist(),
                "head_weight": self.head_weight.flatten().tolist(),
                "accuracy": self.accuracy.repeat_interleave(n_heads).tolist(),
                "weighted_s_acc": self.weighted_s_acc.repeat_interleave(n_heads).tolist(),
            }
        )


def trajectory(
    run: str | Path,
    task: Task | None = None,
    epochs: list[int] | None = None,
    progress: bool = False,
    device: Device = None,
) -> Trajectory:
    """Measure every head at each saved epoch of a training run directory.

    Every checkpoint is measured by `headcoop.metrics.single_heads.measure_models`: one batched
    s-acc solve for all their heads, and one pass for all of them where they stack.

    Args:
        run: a run directory with ``epoch_NNNN`` checkpoints.
        task: the task; by default the one stored in the checkpoints.
        epochs: only these epochs (all saved ones by default).
        progress: show a progress bar over checkpoints.
        device: where the checkpoints are measured (see `headcoop.device`).
    """
    found = [(e, p) for e, p in run_checkpoints(run) if epochs is None or e in epochs]
    if not found:
        raise HeadcoopError(f"no epoch checkpoints in {run}")
    paths = progress_bar([path for _, path in found], desc="checkpoints", disable=not progress)
    loaded = [load_with_task(path, task, device) for path in paths]
    models = [model for model, _, _ in loaded]
    task = loaded[0][1]
    candidates = candidate_ids(task, task.decision)
    weights = torch.stack([head_weights(model, candidates) for model in models]).cpu()
    measured = measure_models(task, models)
    s_acc = torch.tensor([m["s_acc"] for m in measured])
    accuracy = torch.tensor([m["test_accuracy"] for m in measured])
    return Trajectory(torch.tensor([e for e, _ in found]), s_acc, weights, accuracy)


def pearson(x: torch.Tensor, y: torch.Tensor) -> float:
    """Pearson correlation of two equally long vectors.

    >>> round(pearson(torch.tensor([1.0, 2.0, 3.0]), torch.tensor([2.0, 4.0, 7.0])), 4)
    0.9934
    """
    x, y = x.double() - x.double().mean(), y.double() - y.double().mean()
    return float((x * y).sum() / (x.norm() * y.norm()))


def weighted_s_acc_correlation(trajectories: Any, first_epoch: int = 10) -> tuple[Any, float]:
    """The paper's Figure 10: checkpoints pooled over runs from ``first_epoch`` on, and the
    Pearson correlation of their head-weighted s-acc with model accuracy.

    Args:
        trajectories: a DataFrame of `Trajectory.to_pandas` rows with a ``run`` column that
            tells the runs apart.
        first_epoch: the earliest epoch pooled.

    Returns:
        One row per (run, epoch), and Pearson r.
    """
    pooled = trajectories.drop_duplicates(["run", "epoch"])
    pooled = pooled[pooled["epoch"] >= first_epoch]
    weighted = torch.tensor(pooled["weighted_s_acc"].to_numpy())
    return pooled, pearson(weighted, torch.tensor(pooled["accuracy"].to_numpy()))


@torch.no_grad()
def random_head_s_acc(
    task: Task,
    model_cfg: ModelConfig = ModelConfig(),
    n_heads: int = 10_000,
    seed: int = 0,
    progress: bool = False,
    device: Device = None,
) -> Float[torch.Tensor, " head"]:
    """s-acc of ``n_heads`` heads of freshly initialised models (TransformerLens's
    initialisation, as `build_model` draws it), without building the models one by one."""
    if not task.supports_bags:
        raise HeadcoopError("random_head_s_acc needs a task with bags")
    template = build_model(model_cfg, len(task.vocab), seed, device)
    n_models = math.ceil(n_heads / model_cfg.n_heads)
    stack = Stack.random(template, n_models, torch.Generator().manual_seed(seed))
    fit, score = (
        run(stack, task, task.split(s), logits=False, progress=progress) for s in S_ACC_SPLITS
    )
    return single_head_s_acc(
        task,
        fit.heads()[:n_heads],
        fit.targets,
        score.heads()[:n_heads],
        score.targets,
        progress=progress,
    )
