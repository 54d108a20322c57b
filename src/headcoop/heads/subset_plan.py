"""Which sets of heads `analyze` measures, decided before the long pass and said in its
summary: all of them where that finishes in minutes, otherwise what does.

Every set's l-acc and ROC AUC cost little. s-acc fits a separator per set: for two classes the
solver takes all 65,536 sets of 16 heads in seconds, but with many classes (one separator per
class, each on more examples) all sets would take hours. The time s-acc took per single head
measured on all sets of a few heads, estimates the pass over all sets; above the budget,
s-acc is measured on single heads and pairs only, and a warning line gives the estimate.
"""

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from jaxtyping import Bool

from headcoop.config import S_ACC_BUDGET
from headcoop.metrics.subsets import all_subsets, check_masks, sampled_subsets

MAX_ALL_SUBSETS = 16
"""The most heads whose every set is measured (65,536 sets); above, sets are sampled."""
SAMPLED_PER_SIZE = 200
"""Sets per size drawn where there are too many heads for all sets."""

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
    s_acc_seconds_per_set: Callable[[int], float],
    s_acc_budget: float | None = S_ACC_BUDGET,
) -> SubsetPlan:
    """The plan for ``subsets`` (`analyze`'s argument: True for all sets, False for none, or
    masks), given how to measure the s-acc time per set (called only where a budget applies)
    and the budget (None: no limit)."""
    if subsets is False:
        return SubsetPlan(None, False, False, {"measured": "none"})
    if subsets is not True:
        masks = check_masks(subsets, n_heads)
        return SubsetPlan(masks, True, False, {"measured": "given", "sets": len(masks)})
    if n_heads > MAX_ALL_SUBSETS:
        masks = sampled_subsets(n_heads, SAMPLED_PER_SIZE)
        why = f"{n_heads} heads have 2^{n_heads} sets, over the 2^{MAX_ALL_SUBSETS} measured whole"
        log.warning("sets of heads sampled, %d per size: %s", SAMPLED_PER_SIZE, why)
        plan = _with_s_acc_budget(masks, s_acc_seconds_per_set, s_acc_budget)
        about = plan.about | {"measured": "sampled", "why": why}
        return SubsetPlan(masks, plan.s_acc, False, about)
    return _with_s_acc_budget(all_subsets(n_heads), s_acc_seconds_per_set, s_acc_budget)


def _with_s_acc_budget(
    masks: torch.Tensor, seconds_per_set: Callable[[int], float], budget: float | None
) -> SubsetPlan:
    if budget is None:
        return SubsetPlan(masks, True, True, {"measured": "all", "sets": len(masks), "s_acc": True})
    estimate = seconds_per_set(masks.shape[1]) * len(masks)
    s_acc = estimate <= budget
    if not s_acc:
        log.warning(
            "s-acc over %s sets of heads skipped: estimated %s on this machine, over the "
            "budget of %s (--s-acc-budget); measured on single heads and pairs",
            f"{len(masks):,}",
            _duration(estimate),
            _duration(budget),
        )
    about = {
        "measured": "all",
        "sets": len(masks),
        "s_acc": s_acc,
        "s_acc_estimate_seconds": round(estimate, 1),
        "s_acc_budget_seconds": budget,
    }
    return SubsetPlan(masks, s_acc, True, about)


def _duration(seconds: float) -> str:
    """'42 s', '7.5 min' or '3.2 h'."""
    if seconds < 120:
        return f"{math.ceil(seconds)} s"
    return f"{seconds / 60:.1f} min" if seconds < 7200 else f"{seconds / 3600:.1f} h"
