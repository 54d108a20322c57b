"""Pattern interventions: s-acc of every head when its attention at the decision is fixed.

The paper's Figures 8 and 9: each head's attention row at the decision position is set from
per-token weights that realise chosen values of the task's attention ratios (Count01: w01 with
no attention on '2', then w02 with w01 = 1), and the s-acc of every head is measured again.
"""

from typing import Any

import torch
from jaxtyping import Float

from headcoop.compat import Model
from headcoop.engine.fixed_attention import fixed_attention_outputs
from headcoop.errors import HeadcoopError
from headcoop.metrics.single_heads import S_ACC_SPLITS, single_head_s_acc
from headcoop.tasks.base import Task

RATIO_GRID = tuple(10 ** (k / 4) for k in range(-12, 13))
"""Attention ratios from 1e-3 to 1e3, four per decade."""


def attention_sweep(
    model: Model,
    task: Task,
    settings: list[dict[str, float]],
    progress: bool = False,
    mode: str = "auto",
) -> Float[torch.Tensor, "setting head_index"]:
    """s-acc of each head when its attention at the decision position is fixed by ratios.

    Each setting names values of the task's attention ratios, which must share a numerator
    token: the numerator gets weight 1, each named ratio's denominator 1/value, and every
    other token 0. For Count01, ``{"w01": r}`` is the paper's Figure 8 (no attention to '2')
    and ``{"w01": 1, "w02": r}`` its Figure 9. The head outputs come from
    `headcoop.engine.fixed_attention.fixed_attention_outputs` (every setting at once on bags).
    """
    weights = torch.stack([ratio_weights(task, s) for s in settings])  # [setting d_vocab]
    z, targets = [], []
    for split in S_ACC_SPLITS:
        examples = task.split(split)
        outputs = fixed_attention_outputs(model, task, examples, weights, mode)
        z.append(outputs.transpose(1, 2).flatten(0, 1))  # [setting*head example d_head]
        targets.append(task.targets(examples))
    s_acc = single_head_s_acc(task, z[0], targets[0], z[1], targets[1], progress=progress)
    return s_acc.reshape(len(settings), model.cfg.n_heads)


def intervention_curves(
    model: Model,
    task: Task,
    ratios: tuple[float, ...] = RATIO_GRID,
    progress: bool = False,
) -> Any:
    """Mean and standard deviation over heads of s-acc under fixed attention (Figures 8, 9).

    The first two of the task's attention ratios (Count01: w01, w02) are swept in turn: the
    first alone (the second ratio's token gets no attention), then the second with the first
    held at 1. Returns a DataFrame with columns sweep, ratio, mean, std.
    """
    import pandas as pd

    if len(task.attention_ratios) < 2:
        raise HeadcoopError("intervention_curves needs a task with two attention ratios")
    first, second = list(task.attention_ratios)[:2]
    rows = []
    for name, settings in (
        (first, [{first: r} for r in ratios]),
        (second, [{first: 1.0, second: r} for r in ratios]),
    ):
        s_acc = attention_sweep(model, task, settings, progress=progress)
        for r, per_head in zip(ratios, s_acc, strict=True):
            rows.append(
                {
                    "sweep": name,
                    "ratio": r,
                    "mean": per_head.mean().item(),
                    "std": per_head.std().item(),
                }
            )
    return pd.DataFrame(rows)


def ratio_weights(task: Task, setting: dict[str, float]) -> Float[torch.Tensor, " d_vocab"]:
    """Per-token attention weights that realise the named ratio values (see `attention_sweep`)."""
    weights = torch.zeros(len(task.vocab))
    numerators = {task.attention_ratios[name][1] for name in setting}
    if len(numerators) != 1:
        raise HeadcoopError(f"ratios {sorted(setting)} do not share a numerator token")
    weights[task.vocab.index(numerators.pop())] = 1.0
    for name, value in setting.items():
        if not value > 0:
            raise HeadcoopError(f"ratio {name} must be positive, got {value}")
        weights[task.vocab.index(task.attention_ratios[name][2])] = 1.0 / value
    return weights
