"""Which sets of heads `analyze` measures, decided before the long pass and said in its
summary: all of them where that finishes in minutes, otherwise what does.

For two classes all 65,536 sets of 16 heads take seconds. With many classes both halves grow:
s-acc fits a separator per class, and ROC AUC ranks the examples once per class. Timing both
on every set of the first few heads estimates the pass over all sets. Where every set's l-acc
and ROC AUC would exceed the budget, sets are sampled (`SAMPLED_PER_SIZE` of each size); where
s-acc would, it is measured on single heads and pairs only. A warning line gives the estimate.
"""

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from jaxtyping import Bool

from headcoop.config import SUBSETS_BUDGET
from headcoop.metrics.subsets import all_subsets, check_masks, sampled_subsets

MAX_ALL_SUBSETS = 16
"""The most heads whose every set is measured (65,536 sets); above, sets are sampled."""
SAMPLED_PER_SIZE = 200
"""Sets per size drawn where all sets are too many or would take too long."""

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SubsetPlan:
    """The sets to measure, whether s-acc is among their metrics, whether they are every set
    (their metrics are then whole games), and what was decided, for summary.json."""

    masks: Bool[torch.Tensor, "subset head_index"] | None
    s_acc: bool
    every_set: bool
    about: dict[str, Any]


def plan_subsets(
    subsets: bool | torch.Tensor,
    n_heads: int,
    seconds_per_set: Callable[[int], tuple[float, float]],
    budget: float | None = SUBSETS_BUDGET,
) -> SubsetPlan:
    """The plan for ``subsets`` (`analyze`'s argument: True for all sets, False for none, or
    masks), given how to measure the seconds per set of s-acc and of the logit metrics (called
    only where a budget applies) and the budget in seconds (None: no limit)."""
    if subsets is False:
        return SubsetPlan(None, False, False, {"measured": "none"})
    if subsets is not True:
        masks = check_masks(subsets, n_heads)
        return SubsetPlan(masks, True, False, {"measured": "given", "sets": len(masks)})
    if n_heads > MAX_ALL_SUBSETS:
        why = f"{n_heads} heads have 2^{n_heads} sets, over the 2^{MAX_ALL_SUBSETS} measured whole"
        return _sampled(n_heads, why, seconds_per_set(n_heads)[0], budget)
    masks = all_subsets(n_heads)
    if budget is None:
        return SubsetPlan(masks, True, True, {"measured": "all", "sets": len(masks), "s_acc": True})
    s_acc_per_set, logits_per_set = seconds_per_set(n_heads)
    logits = logits_per_set * len(masks)
    if logits > budget:
        why = f"l-acc and ROC AUC of all {len(masks):,} sets: estimated {_duration(logits)}"
        return _sampled(n_heads, why, s_acc_per_set, budget)
    s_acc = s_acc_per_set * len(masks)
    about = {"measured": "all", "sets": len(masks), "estimate_seconds": round(logits + s_acc, 1)}
    about |= {"budget_seconds": budget, "s_acc": logits + s_acc <= budget}
    if not about["s_acc"]:
        log.warning(
            "s-acc over %s sets of heads skipped: estimated %s on this machine, over the "
            "budget of %s (--subsets-budget); measured on single heads and pairs",
            f"{len(masks):,}",
            _duration(s_acc),
            _duration(budget),
        )
    return SubsetPlan(masks, about["s_acc"], True, about)


def _sampled(n_heads: int, why: str, s_acc_per_set: float, budget: float | None) -> SubsetPlan:
    masks = sampled_subsets(n_heads, SAMPLED_PER_SIZE)
    s_acc = budget is None or s_acc_per_set * len(masks) <= budget
    log.warning(
        "sets of heads sampled, %d of each size%s: %s",
        SAMPLED_PER_SIZE,
        "" if s_acc else " (s-acc on single heads and pairs only)",
        why,
    )
    about = {"measured": "sampled", "sets": len(masks), "why": why, "s_acc": s_acc}
    return SubsetPlan(masks, s_acc, False, about | {"budget_seconds": budget})


def _duration(seconds: float) -> str:
    """'42 s', '7.5 min' or '3.2 h'."""
    if seconds < 120:
        return f"{math.ceil(seconds)} s"
    return f"{seconds / 60:.1f} min" if seconds < 7200 else f"{seconds / 3600:.1f} h"
