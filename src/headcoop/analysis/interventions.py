"""Pattern interventions: s-acc of every head when its attention at the decision is fixed.

The paper's Figures 8 and 9: each head's attention row at the decision position is set from
per-token weights that realise chosen values of the task's attention ratios (Count01: w01 with
no attention on '2', then w02 with w01 = 1), and the s-acc of every head is measured again.
"""

from typing import Any

import torch
from jaxtyping import Float, Int
from tqdm.auto import tqdm

from headcoop.analysis.heads import SetMeasure
from headcoop.compat import Model
from headcoop.device import device_of
from headcoop.engine.bags import use_bags
from headcoop.engine.stack import PairCounts
from headcoop.errors import HeadcoopError
from headcoop.metrics.attention import fixed_attention_hook
from headcoop.metrics.cache import collect
from headcoop.metrics.classes import labels
from headcoop.metrics.separation import separation_accuracy_each
from headcoop.tasks.base import Batch, Task

SPLITS = ("train", "test")
"""s-acc fits each head's separator on the train split and scores it on the test split."""
V_HOOK = "blocks.0.attn.hook_v"
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
    and ``{"w01": 1, "w02": r}`` its Figure 9.

    Where bags are exact (``mode='auto'``), every setting's head outputs come at once from the
    per-token value vectors (`fixed_attention_outputs`); otherwise each setting reruns the
    model with a pattern hook. The two agree to float rounding (tested).
    """
    weights = torch.stack([ratio_weights(task, s) for s in settings])  # [setting d_vocab]
    n_heads = model.cfg.n_heads
    if use_bags(model, task, mode):
        splits = [fixed_attention_outputs(model, task, task.split(s), weights) for s in SPLITS]
        train_x, test_x = (z.transpose(1, 2).flatten(0, 1) for z in splits)  # [setting*head ...]
        train_y, test_y = (labels(task, task.targets(task.split(s))) for s in SPLITS)
        s_acc = separation_accuracy_each(train_x, train_y, test_x, test_y, progress=progress)
        return s_acc.reshape(len(settings), n_heads)
    rows = []
    for setting_weights in tqdm(weights, desc="sweep", disable=not progress):

        def intervene(batch: Batch, weights: torch.Tensor = setting_weights) -> list:
            return [fixed_attention_hook(batch, task.decision, weights)]

        train, test = (
            collect(model, task, task.split(s), mode, intervention=intervene) for s in SPLITS
        )
        rows.append(SetMeasure(task, train, test, None).s_acc(torch.eye(n_heads, dtype=torch.bool)))
    return torch.stack(rows)


@torch.no_grad()
def fixed_attention_outputs(
    model: Model,
    task: Task,
    examples: Int[torch.Tensor, "example ..."],
    token_weights: Float[torch.Tensor, "setting d_vocab"],
) -> Float[torch.Tensor, "setting example head_index d_head"]:
    """Every head's output at the decision position when its attention there is set by
    ``token_weights`` (as `headcoop.metrics.attention.fixed_attention_hook` sets it), for a
    bag-exact model: with no positions a key's value depends on its token alone, so the output
    is sum_v C_v w_v value_v / sum_v C_v w_v over the key tokens v the position sees C_v times.
    A row whose visible tokens all have weight 0 outputs zeros, as under the hook.
    """
    device = device_of(model)
    pairs = PairCounts.of(task.bags(examples).to(device), len(task.vocab))
    counts = pairs.key_counts(task.decision)  # [example d_vocab]
    _, cache = model.run_with_cache(
        torch.arange(len(task.vocab), device=device)[:, None], names_filter=V_HOOK
    )
    values = cache[V_HOOK][:, 0]  # [d_vocab head_index d_head]: each token alone
    weighted = counts[None] * token_weights.to(device)[:, None]  # [setting example d_vocab]
    total = weighted.sum(-1)[..., None, None]
    z = torch.einsum("sxv,vhe->sxhe", weighted, values)
    return torch.where(total > 0, z / total.clamp(min=1e-30), 0.0)


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
