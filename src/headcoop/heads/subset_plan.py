"""Which sets of heads `analyze` measures, decided before the long pass from the sizes of the
model and the task alone, and said in its summary.

For two classes all 65,536 sets of 16 heads take seconds. With many classes both halves grow:
s-acc fits a separator per class, and ROC AUC ranks the examples once per class. `SetSizes`
estimates the pass over all sets from the sizes that drive it, at fixed rates measured once on
two CPU cores, so the same inputs give the same plan, and the same files, on any machine at
any load. Where every set's l-acc and ROC AUC would exceed the budget, sets are sampled
(`SAMPLED_PER_SIZE` of each size); where s-acc would, it is measured on single heads and pairs
only. One line gives the decision and its reason; summary.json keeps both.
"""

import logging
import math
from dataclasses import dataclass
from typing import Any

import torch
from jaxtyping import Bool

from headcoop.config import SUBSET_MODES, SUBSETS_BUDGET
from headcoop.errors import HeadcoopError
from headcoop.metrics.subsets import all_subsets, check_masks, sampled_subsets

MAX_ALL_SUBSETS = 16
"""The most heads whose every set is measured (65,536 sets); above, sets are sampled."""
SAMPLED_PER_SIZE = 200
"""Sets per size drawn where all sets are too many or would take too long."""

S_ACC_SECONDS = 1e-8
"""Seconds per (separator x training example x feature) of one set's s-acc fit (the Newton
solver's few steps included), measured on two cores over five tasks (4e-9 to 1.3e-8)."""
READOUT_SECONDS = 1.5e-8
"""Seconds per (test example x candidate x definition) of one set's l-acc and ROC AUC."""
FLOP_SECONDS = 1e-10
"""Seconds per floating-point operation of the ablation engine's forward passes and tails."""

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SetSizes:
    """What the pass over sets of heads costs, per set, from sizes alone (no clock).

    Attributes:
        n_heads: heads of the model, every layer's.
        last_layer_heads: heads of its last layer (the sets sharing their earlier heads share
            the ablation engine's forward pass).
        d_head: each head's output dimension (s-acc's features).
        n_train, n_test: examples of the two splits.
        n_separators: s-acc's separators per set (1 for two classes, else one per class).
        n_candidates: the decision's candidates.
        n_definitions: how many definitions each set is read out under.
        pass_flops: one forward pass of the test split (0 where sets are read by algebra).
        tail_flops: one set's computation after its last layer's heads, on the test split.
    """

    n_heads: int
    last_layer_heads: int
    d_head: int
    n_train: int
    n_test: int
    n_separators: int
    n_candidates: int
    n_definitions: int
    pass_flops: float = 0.0
    tail_flops: float = 0.0

    def s_acc_seconds(self) -> float:
        """Estimated seconds of one set's s-acc (a set holds half the heads on average)."""
        features = 1 + self.n_heads * self.d_head / 2
        return S_ACC_SECONDS * self.n_separators * self.n_train * features

    def logit_seconds(self) -> float:
        """Estimated seconds of one set's l-acc and ROC AUC under every definition."""
        readout = READOUT_SECONDS * self.n_test * self.n_candidates * self.n_definitions
        passes = 2 * self.pass_flops / 2**self.last_layer_heads  # direct and mean ablation
        return readout + FLOP_SECONDS * (passes + 2 * self.tail_flops)


@dataclass(frozen=True)
class SubsetPlan:
    """The sets to measure, whether s-acc is among their metrics, whether they are every set
    (their metrics are then whole games), and what was decided and why, for summary.json."""

    masks: Bool[torch.Tensor, "subset head_index"] | None
    s_acc: bool
    every_set: bool
    about: dict[str, Any]


def plan_subsets(
    subsets: bool | str | torch.Tensor,
    sizes: SetSizes,
    budget: float | None = SUBSETS_BUDGET,
) -> SubsetPlan:
    """The plan for ``subsets`` (`analyze`'s argument: True or 'auto' for the cost model's
    choice, 'all' or 'sampled' to force one, False or 'none' for none, or masks), given the
    sizes and the budget in estimated seconds (None: no limit)."""
    if isinstance(subsets, torch.Tensor):
        masks = check_masks(subsets, sizes.n_heads)
        return SubsetPlan(masks, True, False, {"measured": "given", "sets": len(masks)})
    mode = {True: "auto", False: "none"}.get(subsets, subsets)
    if mode not in SUBSET_MODES:
        raise HeadcoopError(f"subsets must be one of {', '.join(SUBSET_MODES)}, got {subsets!r}")
    if mode == "none":
        return SubsetPlan(None, False, False, {"measured": "none", "reason": "asked for none"})
    if mode == "sampled":
        return _sampled(sizes, "asked for sampled sets (--subsets sampled)", None)
    if mode == "all":
        return _every_set(sizes, None, "asked for every set (--subsets all)")
    if sizes.n_heads > MAX_ALL_SUBSETS:
        why = f"{sizes.n_heads} heads have 2^{sizes.n_heads} sets, over the 2^{MAX_ALL_SUBSETS}"
        return _sampled(sizes, why + " measured whole", budget)
    logits = sizes.logit_seconds() * 2**sizes.n_heads
    if budget is not None and logits > budget:
        why = f"l-acc and ROC AUC of all {2**sizes.n_heads:,} sets: estimated {_duration(logits)}"
        return _sampled(sizes, f"{why}, over the budget of {_duration(budget)}", budget)
    return _every_set(sizes, budget, "within the budget")


def _every_set(sizes: SetSizes, budget: float | None, reason: str) -> SubsetPlan:
    masks = all_subsets(sizes.n_heads)
    logits, s_acc = (len(masks) * f() for f in (sizes.logit_seconds, sizes.s_acc_seconds))
    about = {"measured": "all", "sets": len(masks), "estimate_seconds": round(logits + s_acc, 1)}
    about |= {"budget_seconds": budget, "s_acc": budget is None or logits + s_acc <= budget}
    if not about["s_acc"]:
        reason = (
            f"s-acc of every set estimated {_duration(s_acc)}, over the budget of "
            f"{_duration(budget)} (--subsets-budget): measured on single heads and pairs"
        )
        log.warning("every set of heads measured; %s", reason)
    return SubsetPlan(masks, about["s_acc"], True, about | {"reason": reason})


def _sampled(sizes: SetSizes, why: str, budget: float | None) -> SubsetPlan:
    masks = sampled_subsets(sizes.n_heads, SAMPLED_PER_SIZE)
    s_acc = budget is None or sizes.s_acc_seconds() * len(masks) <= budget
    log.warning(
        "sets of heads sampled, %d of each size%s: %s",
        SAMPLED_PER_SIZE,
        "" if s_acc else " (s-acc on single heads and pairs only)",
        why,
    )
    about = {"measured": "sampled", "sets": len(masks), "reason": why, "s_acc": s_acc}
    return SubsetPlan(masks, s_acc, False, about | {"budget_seconds": budget})


def _duration(seconds: float) -> str:
    """'42 s', '7.5 min' or '3.2 h'."""
    if seconds < 120:
        return f"{math.ceil(seconds)} s"
    return f"{seconds / 60:.1f} min" if seconds < 7200 else f"{seconds / 3600:.1f} h"
