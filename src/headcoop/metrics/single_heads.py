"""Heads one at a time, over many models: each head's s-acc, and each model's accuracy.

A head's s-acc has one definition here: its output at the task's decision on the train split,
a separator fitted there (`headcoop.metrics.separation.separation_accuracy_each`), scored on
the test split's outputs. Sweeps, training trajectories, random heads and pattern
interventions all measure it through `single_head_s_acc`.
"""

from collections.abc import Sequence
from typing import Any

import torch
from jaxtyping import Float, Int

from headcoop.compat import Model
from headcoop.engine.loss import accuracies_each
from headcoop.engine.run import run
from headcoop.metrics.classes import labels
from headcoop.metrics.separation import liblinear_s_acc_each, separation_accuracy_each
from headcoop.tasks.base import Task, read_names

S_ACC_SPLITS = ("train", "test")
"""s-acc fits each separator on the first split and scores it on the second."""


def single_head_s_acc(
    task: Task,
    train_z: Float[torch.Tensor, "head example d_head"],
    train_targets: Int[torch.Tensor, "example read"],
    test_z: Float[torch.Tensor, "head test_example d_head"],
    test_targets: Int[torch.Tensor, "test_example read"],
    progress: bool = False,
) -> Float[torch.Tensor, " head"]:
    """s-acc of each head whose decision outputs on the train and test splits are the rows of
    ``train_z`` and ``test_z`` (`headcoop.engine.run.Outputs.heads`, or outputs under an
    intervention); the classes come from the targets at the decision."""
    train_y, test_y = labels(task, train_targets), labels(task, test_targets)
    return separation_accuracy_each(train_z, train_y, test_z, test_y, progress=progress)


def measure_models(
    task: Task, models: Sequence[Model], liblinear: bool = False
) -> list[dict[str, Any]]:
    """Test metrics of each model and the s-acc of each of its heads (one batched solve for
    all heads of all models).

    Returns one dict per model: ``test_accuracy`` (of the decision readout), ``test_metrics``
    (every readout's accuracy and the loss), ``s_acc`` (a list, one value per head) and, with
    ``liblinear``, ``s_acc_liblinear`` (LinearSVC with scikit-learn's defaults, per head).
    """
    fit, score = S_ACC_SPLITS
    train = run(models, task, task.split(fit), logits=False)
    test = run(models, task, task.split(score))
    s_acc = single_head_s_acc(task, train.heads(), train.targets, test.heads(), test.targets)
    if liblinear:
        train_y, test_y = labels(task, train.targets), labels(task, test.targets)
        s_acc_liblinear = liblinear_s_acc_each(train.heads(), train_y, test.heads(), test_y)
    metrics = accuracies_each(task, torch.stack(test.logits), test.targets)
    decision = read_names(task)[task.decision]
    out, head = [], 0
    for model, result in zip(models, metrics, strict=True):
        n = model.cfg.n_layers * model.cfg.n_heads  # every layer's heads, layer-major
        out.append(
            {
                "test_accuracy": result[decision],
                "test_metrics": result,
                "s_acc": s_acc[head : head + n].tolist(),
            }
        )
        if liblinear:
            out[-1]["s_acc_liblinear"] = s_acc_liblinear[head : head + n].tolist()
        head += n
    return out


def measure_models_liblinear(task: Task, models: Sequence[Model]) -> list[dict[str, Any]]:
    """`measure_models` with each head's s-acc under LinearSVC's defaults too (Table 1)."""
    return measure_models(task, models, liblinear=True)
