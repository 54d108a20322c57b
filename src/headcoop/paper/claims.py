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
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch

from headcoop.metrics.classes import CHANCE_MARGIN, SUCCESSFUL, class_shares
from headcoop.metrics.definitions import Definition
from headcoop.metrics.subsets import pair_members
from headcoop.paper.evidence import PAPER_READING, Evidence, Reading

STRONG_L_ACC = 0.9
"""An l-acc that counts as strong (the subsets claim)."""
PERFECT = 0.999
"""An l-acc that counts as perfect: at most one test example in a thousand wrong."""
BIAS_TOLERANCE = 0.01
"""A head whose l-acc is within this of one class's share answers (almost) always that class."""


@dataclass(frozen=True)
class Judgement:
    """A statement of the paper judged against what we measured: the one form in which the
    report gives a verdict, for a registry claim on the main models and for a statement about
    the sweeps alike (`headcoop.paper.comparison`).

    Attributes:
        paper: the statement, and where the paper makes it.
        measured: what we measured, in words and numbers.
        criterion: when the measurement agrees.
        agrees: whether it does (None: not comparable).
        readings: the same under other readings (`Reading`), keyed by the reading's suffix:
            what was measured and whether it agrees (with the direct path kept for
            statements that rest on l-acc, under LinearSVC's defaults for those that rest on
            the s-acc of single heads or pairs).
    """

    paper: str
    measured: str
    criterion: str
    agrees: bool | None
    readings: dict[str, tuple[str, bool | None]] = field(default_factory=dict)

    def row(self) -> dict[str, str]:
        """paper, measured, criterion, verdict and, for each other reading, measured and
        verdict under its suffix (``measured_direct``, ``verdict_direct``: summary.json's
        paper_comparison rows)."""
        row = {
            "paper": self.paper,
            "measured": self.measured,
            "criterion": self.criterion,
            "verdict": verdict(self.agrees),
        }
        for suffix, (measured, agrees) in self.readings.items():
            row |= {f"measured{suffix}": measured, f"verdict{suffix}": verdict(agrees)}
        return row


def verdict(agrees: Any) -> str:
    """``agrees``: a truth value (Python or numpy), or None when not comparable."""
    return "agrees" if agrees else "disagrees" if agrees is not None else "not comparable"


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
        rests_on_l_acc: the statistic reads l-acc or ROC AUC, so it is also reported under
            every other judged definition (the direct path kept: `Evidence.under`).
        measure: the statistic of one model's evidence (NaN where it is undefined, e.g. a
            median over no successful heads; NaN never holds).
        rests_on_s_acc: the statistic reads the s-acc of single heads or pairs, so it is also
            reported with LinearSVC's defaults (`Reading` ``liblinear``).
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
    rests_on_s_acc: bool = False

    def value(self, evidence: Evidence, reading: Reading = PAPER_READING) -> float:
        """The statistic of ``evidence`` as ``reading`` reads it (the paper's by default)."""
        return float(self.measure(evidence.under(reading)))

    def readings(self) -> tuple[Reading, ...]:
        """The readings besides the paper's under which this claim is also judged."""
        others = [Reading(d) for d in Definition.judged_ones() if d is not Definition.PAPER]
        return (*(others if self.rests_on_l_acc else []), *self._liblinear())

    def _liblinear(self) -> list[Reading]:
        return [Reading(liblinear=True)] if self.rests_on_s_acc else []

    def holds(self, value: float) -> bool:
        return not math.isnan(value) and self.low <= value <= self.high

    def judged(self, judged: dict[str, list]) -> Judgement:
        """This claim on several models (``judged``: their statistics and whether each holds,
        as `headcoop.paper.summary.judge_claims` gives them): it agrees when it holds on most."""

        def measured(values: list[float], holds: list[bool]) -> tuple[str, bool]:
            shown = ", ".join(f"{v:.3g}" for v in values)
            text = f"{self.statistic}: {shown} (holds on {sum(holds)} of {len(holds)} models)"
            return text, bool(2 * sum(holds) > len(holds))

        text, agrees = measured(judged["values"], judged["holds"])
        suffixes = [r.suffix for r in self.readings()]
        return Judgement(
            paper=f"{self.finding} (Sec. {self.section}; the paper: {self.paper})",
            measured=text,
            criterion=f"{self.band()} on most models",
            agrees=agrees,
            readings={s: measured(judged[f"values{s}"], judged[f"holds{s}"]) for s in suffixes},
        )

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
    i, j = pair_members(list(e.pairs["heads"]), len(s_acc)).T.numpy()
    stronger = np.maximum(s_acc[i], s_acc[j])
    return float((e.pairs["s_acc"].to_numpy() < stronger - 1e-9).mean())


def _snapshot_mixed(e: Evidence) -> float:
    if e.snapshot_s_acc is None:
        return math.nan
    return class_shares(torch.tensor(e.snapshot_s_acc, dtype=torch.float64), e.chance)["mixed"]


HEADS_16 = "16 heads: one head is 0.0625"

CLAIMS: tuple[Claim, ...] = (
    Claim(
        id="classes.successful",
        section="5.2",
        finding="About half of the heads are successful.",
        statistic="share of heads with s-acc >= 0.98",
        paper="about 1/2",
        low=0.3,
        high=0.7,
        rationale=f"'around half' of 16 heads: 5 to 11 heads ({HEADS_16})",
        calibration=True,
        rests_on_l_acc=False,
        measure=lambda e: _shares(e).get("successful", 0.0),
        rests_on_s_acc=True,
    ),
    Claim(
        id="classes.failed",
        section="5.2",
        finding="About 40 % of the heads fail (s-acc near chance).",
        statistic="share of heads with s-acc below chance + 0.05",
        paper="about 0.4",
        low=0.2,
        high=0.6,
        rationale="'around 40 %' of 16 heads, give or take three heads",
        calibration=True,
        rests_on_l_acc=False,
        measure=lambda e: _shares(e).get("failed", 0.0),
        rests_on_s_acc=True,
    ),
    Claim(
        id="classes.mixed",
        section="5.2",
        finding="Few heads are mixed (between failed and successful).",
        statistic="share of heads neither successful nor failed",
        paper="the few remaining (about 0.1)",
        low=0.0,
        high=0.2,
        rationale="'the few remaining' after half and 40 %: at most three of 16 heads",
        calibration=True,
        rests_on_l_acc=False,
        measure=lambda e: _shares(e).get("mixed", 0.0),
        rests_on_s_acc=True,
    ),
    Claim(
        id="l_acc.single_heads",
        section="5.2",
        finding="All but one single head sit at chance l-acc.",
        statistic="single heads with l-acc more than 5 points above chance",
        paper="1",
        low=0.0,
        high=2.0,
        rationale="one head in the paper's model; one more is within seed-to-seed noise",
        calibration=True,
        rests_on_l_acc=True,
        measure=lambda e: _above_chance(e.heads["l_acc"], e),
    ),
    Claim(
        id="l_acc.pairs",
        section="5.2",
        finding="Only two pairs of heads rise above 80 % l-acc.",
        statistic="pairs of heads with l-acc above 0.8",
        paper="2 (of 120)",
        low=1.0,
        high=5.0,
        rationale="'only two' of 120 pairs: some pair must rise, and a handful (< 5 %) at most",
        calibration=True,
        rests_on_l_acc=True,
        measure=lambda e: int((e.pairs["l_acc"] > 0.8).sum()),
    ),
    Claim(
        id="subsets.s_acc",
        section="5.2 (Fig 4)",
        finding="Sets of 3-4 heads already separate almost perfectly.",
        statistic="mean s-acc of sets of 4 heads",
        paper="close to 1",
        low=0.97,
        high=1.0,
        rationale="'close to perfect': within 3 points, a little below the 0.98 of one "
        "successful head",
        calibration=True,
        rests_on_l_acc=False,
        measure=lambda e: _mean_at_size(e, "s_acc", 4),
    ),
    Claim(
        id="subsets.roc_auc",
        section="5.2 (Fig 4)",
        finding="ROC AUC follows s-acc closely.",
        statistic="mean ROC AUC of sets of 4 heads",
        paper="close behind s-acc",
        low=0.95,
        high=1.0,
        rationale="'close behind' a near-perfect s-acc: within 5 points of 1",
        calibration=True,
        rests_on_l_acc=True,
        measure=lambda e: _mean_at_size(e, "roc_auc", 4),
    ),
    Claim(
        id="subsets.l_acc_strong",
        section="5.2 (Fig 4)",
        finding="Most of the heads are needed for a strong l-acc.",
        statistic="smallest set size whose mean l-acc reaches 0.9, as a share of the heads",
        paper="most of the heads (> 1/2)",
        low=0.5 + 1e-9,
        high=1.0,
        rationale="'most of the heads': more than half of them",
        calibration=True,
        rests_on_l_acc=True,
        measure=lambda e: _smallest_size(e, "l_acc", STRONG_L_ACC),
    ),
    Claim(
        id="subsets.l_acc_perfect",
        section="5.2 (Fig 4)",
        finding="All heads are needed for a perfect l-acc.",
        statistic="smallest set size whose mean l-acc reaches 0.999, as a share of the heads",
        paper="all of them (1)",
        low=1.0,
        high=1.0,
        rationale="'all 16': only the full set is perfect (NaN, never holding, if even it is not)",
        calibration=True,
        rests_on_l_acc=True,
        measure=lambda e: _smallest_size(e, "l_acc", PERFECT),
    ),
    Claim(
        id="attention.w01",
        section="5.3 (Fig 5)",
        finding="Successful heads weigh one '0' like one '1'.",
        statistic="median w01 of the successful heads",
        paper="about 1",
        low=0.5,
        high=2.0,
        rationale="'w01 ~ 1' read as within a factor of 2",
        calibration=True,
        rests_on_l_acc=False,
        measure=lambda e: _median_successful(e, "w01"),
        rests_on_s_acc=True,
    ),
    Claim(
        id="attention.w02",
        section="5.3 (Fig 5)",
        finding="Successful heads weigh one '0' over ten times one '2'.",
        statistic="median w02 of the successful heads",
        paper="> 10",
        low=10.0,
        high=math.inf,
        rationale="the paper's bound itself",
        calibration=True,
        rests_on_l_acc=False,
        measure=lambda e: _median_successful(e, "w02"),
        rests_on_s_acc=True,
    ),
    Claim(
        id="interventions.w01_plateau",
        section="5.4 (Fig 8)",
        finding="With no attention on '2', heads are near perfect for w01 from 0.1 to 10.",
        statistic="lowest mean s-acc over heads at w01 = 0.1, 1, 10",
        paper="near perfect",
        low=0.95,
        high=1.0,
        rationale="'near perfect' read as within 5 points of 1 at every point of the range",
        calibration=True,
        rests_on_l_acc=False,
        measure=_plateau,
    ),
    Claim(
        id="interventions.w01_drop",
        section="5.4 (Fig 8)",
        finding="Outside that range s-acc drops sharply.",
        statistic="mean s-acc at w01 = 1 minus the mean at w01 = 1e-3 and 1e3",
        paper="a sharp drop",
        low=0.1,
        high=1.0,
        rationale="'sharply': at least 10 points lower at the ends of the sweep",
        calibration=True,
        rests_on_l_acc=False,
        measure=_drop,
    ),
    Claim(
        id="interventions.w02_gain",
        section="5.4 (Fig 9)",
        finding="A larger w02 gives a better s-acc.",
        statistic="mean s-acc at w02 = 1e3 minus at w02 = 1e-3",
        paper="> 0",
        low=0.01,
        high=1.0,
        rationale="'better': at least one point, above rounding and near-tie noise",
        calibration=True,
        rests_on_l_acc=False,
        measure=lambda e: _w02_gain(e, "mean"),
    ),
    Claim(
        id="interventions.w02_variance",
        section="5.4 (Fig 9)",
        finding="A larger w02 gives less variance.",
        statistic="std over heads of s-acc at w02 = 1e-3 minus at w02 = 1e3",
        paper="> 0",
        low=1e-6,
        high=math.inf,
        rationale="'less variance': any decrease",
        calibration=True,
        rests_on_l_acc=False,
        measure=lambda e: -_w02_gain(e, "std"),
    ),
    Claim(
        id="eos.single_heads",
        section="6.2",
        finding="A single head reaches [EOS] l-acc 100 % with probability 0.46.",
        statistic="share of single heads with [EOS] l-acc 1",
        paper="0.46",
        low=0.21,
        high=0.71,
        rationale="two binomial standard deviations (0.125) of a share over 16 heads",
        calibration=True,
        rests_on_l_acc=True,
        measure=lambda e: float((e.heads["eos_l_acc"] >= 1.0).mean()),
    ),
    Claim(
        id="eos.pairs",
        section="6.2",
        finding="A pair of heads reaches [EOS] l-acc 100 % with probability 0.5.",
        statistic="share of pairs with [EOS] l-acc 1",
        paper="0.5",
        low=0.25,
        high=0.75,
        rationale="as for single heads: pairs share heads, so their share is no less noisy",
        calibration=True,
        rests_on_l_acc=True,
        measure=lambda e: float((e.pairs["eos_l_acc"] >= 1.0).mean()),
    ),
    Claim(
        id="training.bipolar",
        section="5.5",
        finding="By about epoch 50, heads are either very good or very bad.",
        statistic="share of mixed heads at epoch 50 (the last, if training is shorter)",
        paper="bipolar (few mixed)",
        low=0.0,
        high=0.2,
        rationale="as for the final model's mixed heads: at most 3 of 16",
        calibration=True,
        rests_on_l_acc=False,
        measure=_snapshot_mixed,
    ),
    Claim(
        id="accuracy.near_perfect",
        section="5.1",
        finding="The 16-head model reaches near perfect accuracy.",
        statistic="test accuracy of the answer",
        paper="near perfect",
        low=0.98,
        high=1.0,
        rationale="the paper's bound for a successful head, applied to the model",
        calibration=False,
        rests_on_l_acc=False,
        measure=lambda e: e.accuracy,
    ),
    Claim(
        id="l_acc.biased_heads",
        section="5.1",
        finding="Many heads are highly biased toward '4' or '5'.",
        statistic="share of single heads whose l-acc is within 1 point of one class's share",
        paper="many",
        low=0.25,
        high=1.0,
        rationale="'many': at least a quarter of the heads",
        calibration=False,
        rests_on_l_acc=True,
        measure=_one_class_share,
    ),
    Claim(
        id="pairs.below_stronger",
        section="App. C",
        finding="A pair can separate worse than its stronger head.",
        statistic="share of pairs whose s-acc is below their stronger head's",
        paper="in some cases",
        low=1e-9,
        high=0.25,
        rationale="'in some cases': some pair, but at most a quarter",
        calibration=False,
        rests_on_l_acc=False,
        measure=_pairs_below_stronger,
        rests_on_s_acc=True,
    ),
)
"""Every claim, calibration claims first."""

BY_ID = {claim.id: claim for claim in CLAIMS}
