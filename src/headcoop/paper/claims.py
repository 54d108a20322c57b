"""The paper's findings as data: each claim's statistic, the paper's value and a tolerance.

A claim is judged on one model (`Evidence`): its statistic is a number computed from that
model's analyses under the paper's definitions (`headcoop.metrics`), and it holds when the
number falls within ``[low, high]``. The bounds turn the paper's words ("around half", "near
perfect") into numbers; each claim says why they are where they are. Claims marked
``calibration`` are those whose measured values the paper reports (the calibration set):
only they may choose a training setting.
"""

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from headcoop.metrics.classes import CHANCE_MARGIN, SUCCESSFUL, class_shares
from headcoop.paper.evidence import Evidence

STRONG_L_ACC = 0.9
"""An l-acc that counts as strong (the subsets claim)."""
PERFECT = 0.999
"""An l-acc that counts as perfect: at most one test example in a thousand wrong."""
BIAS_TOLERANCE = 0.01
"""A head whose l-acc is within this of one class's share answers (almost) always that class."""


@dataclass(frozen=True)
class Claim:
    """One finding of the paper, judged on one model.

    Attributes:
        id: a short stable name, e.g. 'classes.successful'.
        section: where the paper states it.
        finding: the finding, in a sentence.
        statistic: what is measured, in words.
        paper: the paper's value, as the paper gives it.
        low, high: the statistic holds within these bounds (inclusive).
        rationale: why the bounds are where they are.
        calibration: the paper reports the measured value (so the claim may select settings).
        rests_on_l_acc: the statistic reads l-acc or ROC AUC, so it is also reported with the
            direct path kept (`Evidence.under`).
        measure: the statistic of one model's evidence (NaN where it is undefined, e.g. a
            median over no successful heads; NaN never holds).
    """

    id: str
    section: str
    finding: str
    statistic: str
    paper: str
    low: float
    high: float
    rationale: str
    calibration: bool
    rests_on_l_acc: bool
    measure: Callable[[Evidence], float]

    def value(self, evidence: Evidence, definition: str = "paper") -> float:
        return float(self.measure(evidence.under(definition)))

    def holds(self, value: float) -> bool:
        return not math.isnan(value) and self.low <= value <= self.high

    def band(self) -> str:
        """The bounds in words, e.g. '[0.3, 0.7]' or '>= 10'."""
        if math.isinf(self.high):
            return f">= {self.low:g}"
        if self.low == -math.inf:
            return f"<= {self.high:g}"
        return f"[{self.low:g}, {self.high:g}]"


def _shares(e: Evidence) -> pd.Series:
    return e.heads["class"].value_counts(normalize=True)


def _above_chance(column: pd.Series, e: Evidence) -> int:
    return int((column > e.chance + CHANCE_MARGIN).sum())


def _smallest_size(e: Evidence, column: str, level: float) -> float:
    """The smallest set size whose mean ``column`` reaches ``level``, as a share of the heads
    (NaN if none does)."""
    reached = e.subsets[e.subsets[column] >= level]["size"]
    return float(reached.min() / len(e.heads)) if len(reached) else math.nan


def _mean_at_size(e: Evidence, column: str, size: int) -> float:
    row = e.subsets[e.subsets["size"] == size][column]
    return float(row.iloc[0]) if len(row) else math.nan


def _median_successful(e: Evidence, ratio: str) -> float:
    successful = e.heads[e.heads["s_acc"] >= SUCCESSFUL]
    return float(successful[ratio].median()) if len(successful) else math.nan


def _curve(e: Evidence, sweep: str) -> pd.DataFrame:
    return e.interventions[e.interventions["sweep"] == sweep].set_index("ratio")


def _plateau(e: Evidence) -> float:
    """The lowest mean s-acc for w01 from 0.1 to 10, with no attention to '2'."""
    w01 = _curve(e, "w01")["mean"]
    return float(w01[(w01.index >= 0.1 - 1e-12) & (w01.index <= 10 + 1e-9)].min())


def _drop(e: Evidence) -> float:
    """Mean s-acc at w01 = 1 minus the mean of the sweep's two ends (w01 = 1e-3, 1e3)."""
    w01 = _curve(e, "w01")["mean"]
    return float(w01[np.isclose(w01.index, 1.0)].iloc[0] - (w01.iloc[0] + w01.iloc[-1]) / 2)


def _w02_gain(e: Evidence, column: str) -> float:
    """The change of ``column`` from the smallest w02 of the sweep to the largest."""
    w02 = _curve(e, "w02")[column]
    return float(w02.iloc[-1] - w02.iloc[0])


def _one_class_share(e: Evidence) -> float:
    one_class = np.zeros(len(e.heads), dtype=bool)
    for share in e.class_shares:
        one_class |= (e.heads["l_acc"] - share).abs().to_numpy() < BIAS_TOLERANCE
    return float(one_class.mean())


def _pairs_below_stronger(e: Evidence) -> float:
    s_acc = e.heads["s_acc"].to_numpy()
    heads = [tuple(map(int, str(h).split())) for h in e.pairs["heads"]]
    stronger = np.array([max(s_acc[i], s_acc[j]) for i, j in heads])
    return float((e.pairs["s_acc"].to_numpy() < stronger - 1e-9).mean())


def _snapshot_mixed(e: Evidence) -> float:
    if e.snapshot_s_acc is None:
        return math.nan
    return class_shares(torch.tensor(e.snapshot_s_acc, dtype=torch.float64), e.chance)["mixed"]


HEADS_16 = "16 heads: one head is 0.0625"

CLAIMS: tuple[Claim, ...] = (
    Claim(
        "classes.successful", "5.2", "About half of the heads are successful.",
        "share of heads with s-acc >= 0.98", "about 1/2", 0.3, 0.7,
        f"'around half' of 16 heads: 5 to 11 heads ({HEADS_16})", True, False,
        lambda e: _shares(e).get("successful", 0.0),
    ),
    Claim(
        "classes.failed", "5.2", "About 40 % of the heads fail (s-acc near chance).",
        "share of heads with s-acc below chance + 0.05", "about 0.4", 0.2, 0.6,
        "'around 40 %' of 16 heads, give or take three heads", True, False,
        lambda e: _shares(e).get("failed", 0.0),
    ),
    Claim(
        "classes.mixed", "5.2", "Few heads are mixed (between failed and successful).",
        "share of heads neither successful nor failed", "the few remaining (about 0.1)",
        0.0, 0.2, "'the few remaining' after half and 40 %: at most three of 16 heads",
        True, False, lambda e: _shares(e).get("mixed", 0.0),
    ),
    Claim(
        "l_acc.single_heads", "5.2", "All but one single head sit at chance l-acc.",
        "single heads with l-acc more than 5 points above chance", "1", 0.0, 2.0,
        "one head in the paper's model; one more is within seed-to-seed noise", True, True,
        lambda e: _above_chance(e.heads["l_acc"], e),
    ),
    Claim(
        "l_acc.pairs", "5.2", "Only two pairs of heads rise above 80 % l-acc.",
        "pairs of heads with l-acc above 0.8", "2 (of 120)", 1.0, 5.0,
        "'only two' of 120 pairs: some pair must rise, and a handful (< 5 %) at most",
        True, True, lambda e: int((e.pairs["l_acc"] > 0.8).sum()),
    ),
    Claim(
        "subsets.s_acc", "5.2 (Fig 4)", "Sets of 3-4 heads already separate almost perfectly.",
        "mean s-acc of sets of 4 heads", "close to 1", 0.97, 1.0,
        "'close to perfect': within 3 points, a little below the 0.98 of one successful head",
        True, False, lambda e: _mean_at_size(e, "s_acc", 4),
    ),
    Claim(
        "subsets.roc_auc", "5.2 (Fig 4)", "ROC AUC follows s-acc closely.",
        "mean ROC AUC of sets of 4 heads", "close behind s-acc", 0.95, 1.0,
        "'close behind' a near-perfect s-acc: within 5 points of 1", True, True,
        lambda e: _mean_at_size(e, "roc_auc", 4),
    ),
    Claim(
        "subsets.l_acc_strong", "5.2 (Fig 4)", "Most of the heads are needed for a strong l-acc.",
        "smallest set size whose mean l-acc reaches 0.9, as a share of the heads",
        "most of the heads (> 1/2)", 0.5 + 1e-9, 1.0,
        "'most of the heads': more than half of them", True, True,
        lambda e: _smallest_size(e, "l_acc", STRONG_L_ACC),
    ),
    Claim(
        "subsets.l_acc_perfect", "5.2 (Fig 4)", "All heads are needed for a perfect l-acc.",
        "smallest set size whose mean l-acc reaches 0.999, as a share of the heads",
        "all of them (1)", 1.0, 1.0,
        "'all 16': only the full set is perfect (NaN, never holding, if even it is not)",
        True, True, lambda e: _smallest_size(e, "l_acc", PERFECT),
    ),
    Claim(
        "attention.w01", "5.3 (Fig 5)", "Successful heads weigh one '0' like one '1'.",
        "median w01 of the successful heads", "about 1", 0.5, 2.0,
        "'w01 ~ 1' read as within a factor of 2", True, False,
        lambda e: _median_successful(e, "w01"),
    ),
    Claim(
        "attention.w02", "5.3 (Fig 5)", "Successful heads weigh one '0' over ten times one '2'.",
        "median w02 of the successful heads", "> 10", 10.0, math.inf,
        "the paper's bound itself", True, False,
        lambda e: _median_successful(e, "w02"),
    ),
    Claim(
        "interventions.w01_plateau", "5.4 (Fig 8)",
        "With no attention on '2', heads are near perfect for w01 from 0.1 to 10.",
        "lowest mean s-acc over heads at w01 = 0.1, 1, 10", "near perfect", 0.95, 1.0,
        "'near perfect' read as within 5 points of 1 at every point of the range", True, False,
        _plateau,
    ),
    Claim(
        "interventions.w01_drop", "5.4 (Fig 8)", "Outside that range s-acc drops sharply.",
        "mean s-acc at w01 = 1 minus the mean at w01 = 1e-3 and 1e3", "a sharp drop",
        0.1, 1.0, "'sharply': at least 10 points lower at the ends of the sweep", True, False,
        _drop,
    ),
    Claim(
        "interventions.w02_gain", "5.4 (Fig 9)", "A larger w02 gives a better s-acc.",
        "mean s-acc at w02 = 1e3 minus at w02 = 1e-3", "> 0", 0.01, 1.0,
        "'better': at least one point, above rounding and near-tie noise", True, False,
        lambda e: _w02_gain(e, "mean"),
    ),
    Claim(
        "interventions.w02_variance", "5.4 (Fig 9)", "A larger w02 gives less variance.",
        "std over heads of s-acc at w02 = 1e-3 minus at w02 = 1e3", "> 0", 1e-6, math.inf,
        "'less variance': any decrease", True, False,
        lambda e: -_w02_gain(e, "std"),
    ),
    Claim(
        "eos.single_heads", "6.2", "A single head reaches [EOS] l-acc 100 % with probability 0.46.",
        "share of single heads with [EOS] l-acc 1", "0.46", 0.21, 0.71,
        "two binomial standard deviations (0.125) of a share over 16 heads", True, True,
        lambda e: float((e.heads["eos_l_acc"] >= 1.0).mean()),
    ),
    Claim(
        "eos.pairs", "6.2", "A pair of heads reaches [EOS] l-acc 100 % with probability 0.5.",
        "share of pairs with [EOS] l-acc 1", "0.5", 0.25, 0.75,
        "as for single heads: pairs share heads, so their share is no less noisy", True, True,
        lambda e: float((e.pairs["eos_l_acc"] >= 1.0).mean()),
    ),
    Claim(
        "training.bipolar", "5.5", "By about epoch 50, heads are either very good or very bad.",
        "share of mixed heads at epoch 50 (the last, if training is shorter)",
        "bipolar (few mixed)", 0.0, 0.2, "as for the final model's mixed heads: at most 3 of 16",
        True, False, _snapshot_mixed,
    ),
    Claim(
        "accuracy.near_perfect", "5.1", "The 16-head model reaches near perfect accuracy.",
        "test accuracy of the answer", "near perfect", 0.98, 1.0,
        "the paper's bound for a successful head, applied to the model", False, False,
        lambda e: e.accuracy,
    ),
    Claim(
        "l_acc.biased_heads", "5.1", "Many heads are highly biased toward '4' or '5'.",
        "share of single heads whose l-acc is within 1 point of one class's share",
        "many", 0.25, 1.0, "'many': at least a quarter of the heads", False, True,
        _one_class_share,
    ),
    Claim(
        "pairs.below_stronger", "App. C", "A pair can separate worse than its stronger head.",
        "share of pairs whose s-acc is below their stronger head's", "in some cases",
        1e-9, 0.25, "'in some cases': some pair, but at most a quarter", False, False,
        _pairs_below_stronger,
    ),
)  # fmt: skip
"""Every claim, calibration claims first."""

BY_ID = {claim.id: claim for claim in CLAIMS}
