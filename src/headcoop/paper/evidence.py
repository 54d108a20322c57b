"""What the claims are judged on: one model's analyses, reduced to small tables.

`measure_evidence` runs the analyzers the paper's findings rest on (every head and pair,
sampled subsets, the pattern interventions) and keeps what the claims read, as JSON, so that a
claim's statistic or tolerance can change without retraining or remeasuring anything.
"""

from collections.abc import Sequence
from dataclasses import dataclass, fields, replace
from typing import Any

import pandas as pd
import torch
from jaxtyping import Bool

from headcoop.compat import Model
from headcoop.heads.analysis import HeadAnalysis
from headcoop.heads.analyze import analyze
from headcoop.heads.interventions import attention_sweep
from headcoop.metrics.classes import head_class
from headcoop.metrics.definitions import Definition
from headcoop.metrics.separation import LIBLINEAR
from headcoop.metrics.subsets import sampled_subsets, set_names
from headcoop.tasks.base import Task

SNAPSHOT_EPOCH = 50
"""The epoch at which the training claim reads the heads (the last, if training is shorter)."""
SUBSETS_PER_SIZE = 16
"""Sets of heads measured per size (every set where a size has fewer)."""
W01_GRID = (1e-3, 0.1, 1.0, 10.0, 1e3)
"""First-ratio values of the intervention sweep (no attention to the second ratio's token)."""
W02_GRID = (1e-3, 1e3)
"""Second-ratio values of the intervention sweep (the first held at 1)."""

_FRAMES = ("heads", "pairs", "subsets", "interventions")
"""The fields of `Evidence` that are tables (stored as JSON columns)."""


@dataclass(frozen=True)
class Reading:
    """Which measurements a claim's statistic reads: l-acc and ROC AUC under ``definition``,
    s-acc of single heads and pairs from our exact solver or (``liblinear``) LinearSVC's
    defaults."""

    definition: Definition = Definition.PAPER
    liblinear: bool = False

    @property
    def suffix(self) -> str:
        """What the reading appends to the names it is reported under ('' for the paper's,
        then e.g. ``values_direct`` or ``verdict_liblinear``)."""
        return self.definition.suffix + (LIBLINEAR if self.liblinear else "")


PAPER_READING = Reading()
"""The paper's own reading: its definition of set logits, our exact s-acc."""


@dataclass(frozen=True)
class Evidence:
    """One model's measurements that the claims read.

    Attributes:
        heads: per head: s_acc, l_acc, roc_auc, the attention ratios, the l-acc of every other
            readout, class (each l-acc column under every `Definition`, named by its suffix).
        pairs: per pair of heads: s_acc and the same l-acc columns.
        subsets: mean s_acc, roc_auc and l_acc of the measured sets of each ``size``.
        interventions: mean and std over heads of s-acc, by ``sweep`` (ratio name) and
            ``ratio``.
        chance: the test split's majority share at the decision.
        class_shares: each decision candidate's share of the test split.
        accuracy: test accuracy of the decision readout.
        snapshot_epoch, snapshot_s_acc: each head's s-acc at an epoch in training (None if not
            taken).
    """

    heads: pd.DataFrame
    pairs: pd.DataFrame
    subsets: pd.DataFrame
    interventions: pd.DataFrame
    chance: float
    class_shares: list[float]
    accuracy: float
    snapshot_epoch: int | None = None
    snapshot_s_acc: list[float] | None = None

    def under(self, reading: Reading) -> "Evidence":
        """The same evidence as ``reading`` reads it: every l-acc and ROC AUC column under its
        definition, and (``liblinear``) the s-acc of single heads and pairs, and so the
        classes, as LinearSVC's defaults give it (NaN in evidence measured before that column
        existed)."""
        evidence = self if reading.definition is Definition.PAPER else self._defined(reading)
        return evidence._liblinear() if reading.liblinear else evidence

    def _defined(self, reading: Reading) -> "Evidence":
        def swap(frame: pd.DataFrame) -> pd.DataFrame:
            found = {c: reading.definition.plain(c) for c in frame.columns}
            plain = {c: m for c, m in found.items() if m is not None}
            return frame.drop(columns=list(plain.values())).rename(columns=plain)

        return replace(
            self, heads=swap(self.heads), pairs=swap(self.pairs), subsets=swap(self.subsets)
        )

    def _liblinear(self) -> "Evidence":
        def swap(frame: pd.DataFrame) -> pd.DataFrame:
            return frame.assign(s_acc=frame.get("s_acc" + LIBLINEAR, float("nan")))

        heads = swap(self.heads)
        heads["class"] = [head_class(s, self.chance) for s in heads["s_acc"]]
        return replace(self, heads=heads, pairs=swap(self.pairs))

    def to_json(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in _FRAMES}
        return out | {k: getattr(self, k).to_dict(orient="list") for k in _FRAMES}

    @classmethod
    def from_result(cls, result: dict[str, Any]) -> "Evidence":
        """The evidence in a sweep result of `measure_evidence`, with its first snapshot."""
        kept = {f.name: result[f.name] for f in fields(cls) if f.name in result}
        evidence = cls(**{k: pd.DataFrame(v) if k in _FRAMES else v for k, v in kept.items()})
        if not result.get("snapshots"):
            return evidence
        epoch = min(result["snapshots"], key=int)
        s_acc = result["snapshots"][epoch]["s_acc"]
        return replace(evidence, snapshot_epoch=int(epoch), snapshot_s_acc=s_acc)


def measure_evidence(task: Task, models: Sequence[Model]) -> list[dict[str, Any]]:
    """Each model's `Evidence`, as JSON (a `headcoop.training.sweep.Measure`)."""
    return [model_evidence(model, task).to_json() for model in models]


def model_evidence(model: Model, task: Task) -> Evidence:
    """Measure one model: every head and pair, `SUBSETS_PER_SIZE` sets of heads of each size,
    and the pattern interventions on the `W01_GRID` and `W02_GRID`."""
    result = analyze(model, task, subsets=evidence_subsets(model.cfg.n_heads))
    return evidence_from(result, intervention_evidence(model, task))


def evidence_subsets(n_heads: int) -> Bool[torch.Tensor, "subset head_index"]:
    """The sets of heads whose means by size the claims read."""
    return sampled_subsets(n_heads, SUBSETS_PER_SIZE)


def evidence_from(analysis: HeadAnalysis, interventions: pd.DataFrame) -> Evidence:
    """The evidence in an analysis of one model, whose subsets include `evidence_subsets` (the
    means by size read only those), and its `intervention_evidence`."""
    heads, subsets, summary = analysis.heads_frame(), analysis.subsets_frame(), analysis.summary
    sampled = set(set_names(evidence_subsets(len(heads))))
    chosen = subsets[subsets["heads"].isin(sampled)].drop(columns="heads")
    return Evidence(
        heads=heads,
        pairs=analysis.pairs_frame(),
        subsets=chosen.groupby("size").mean().reset_index(),
        interventions=interventions,
        chance=summary["majority_share"],
        class_shares=list(summary["class_shares"].values()),
        accuracy=summary["accuracy"][summary["decision"]],
    )


def intervention_evidence(model: Model, task: Task) -> pd.DataFrame:
    """Mean and std over heads of s-acc under the pattern interventions the claims read: the
    first ratio on `W01_GRID`, then the second on `W02_GRID` with the first held at 1."""
    first, second = list(task.attention_ratios)[:2]
    settings = [{first: r} for r in W01_GRID] + [{first: 1.0, second: r} for r in W02_GRID]
    s_acc = attention_sweep(model, task, settings)  # [setting head]
    return pd.DataFrame(
        {
            "sweep": [first] * len(W01_GRID) + [second] * len(W02_GRID),
            "ratio": W01_GRID + W02_GRID,
            "mean": s_acc.mean(1).tolist(),
            "std": s_acc.std(1).tolist(),
        }
    )
