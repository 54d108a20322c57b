"""Pattern interventions: s-acc of every head when its attention at the decision is fixed.

The paper's Figures 8 and 9: each head's attention row at the decision position is set from
per-token weights that realise chosen values of the task's attention ratios (Count01: w01 with
no attention on '2', then w02 with w01 = 1), and the s-acc of every head is measured again.
"""

from typing import Any

import torch
from jaxtyping import Float
from tqdm.auto import tqdm

from headcoop.analysis.heads import SetMeasure
from headcoop.compat import Model
from headcoop.errors import HeadcoopError
from headcoop.metrics.attention import fixed_attention_hook
from headcoop.metrics.cache import collect
from headcoop.tasks.base import Batch, Task

RATIO_GRID = tuple(10 ** (k / 4) for k in range(-12, 13))
"""Attention ratios from 1e-3 to 1e3, four per decade."""


def attention_sweep(
    model: Model,
    task: Task,
    settings: list[dict[str, float]],
    progress: bool = False,
) -> Float[torch.Tensor, "setting head_index"]:
    """s-acc of each head when its attention at the decision position is fixed by ratios.

    Each setting names values of the task's attention ratios, which must share a numerator
    token: the numerator gets weight 1, each named ratio's denominator 1/value, and every
    other token 0. For Count01, ``{"w01": r}`` is the paper's Figure 8 (no attention to '2')
    and ``{"w01": 1, "w02": r}`` its Figure 9.
    """
    rows = []
    for setting in tqdm(settings, desc="sweep", disable=not progress):
        weights = ratio_weights(task, setting)

        def intervene(batch: Batch, weights: torch.Tensor = weights) -> list:
            return [fixed_attention_hook(batch, task.decision, weights)]

        train = collect(model, task, task.split("train"), intervention=intervene)
        test = collect(model, task, task.split("test"), intervention=intervene)
        measure = SetMeasure(task, train, test, None)
        rows.append(measure.s_acc(torch.eye(model.cfg.n_heads, dtype=torch.bool)))
    return torch.stack(rows)


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
