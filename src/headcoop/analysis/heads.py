"""`analyze`: every head metric of the paper for one model, from caches collected once.

Per head and per pair of heads: learned accuracy (l-acc), ROC AUC and separation accuracy
(s-acc) of the decision at the first scored position, l-acc of the next scored prediction (the
syntactic [EOS] task), attention ratios and head weights; optionally the three decision metrics
for every subset of heads. Results convert to pandas.
"""

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from jaxtyping import Bool, Float
from tqdm.auto import tqdm
from transformer_lens import HookedTransformer

from headcoop.metrics.attention import fixed_attention_hook, weight_ratio
from headcoop.metrics.attribution import LogitDecomposition, decompose, head_weights
from headcoop.metrics.cache import HeadCache, collect
from headcoop.training.checkpoint import load_checkpoint
from headcoop.errors import HeadcoopError
from headcoop.files import write_atomic
from headcoop.metrics.separation import separation_accuracy
from headcoop.metrics.subsets import all_subsets, decision_metrics, learned_accuracy, singles_and_pairs
from headcoop.tasks.base import Task, task_from_config

SUCCESSFUL = 0.98
"""A head whose s-acc reaches this is successful (the paper's bound)."""
FAILED_MARGIN = 0.05
"""A head whose s-acc is below the majority-class share plus this margin is failed (near
chance); heads in between are mixed."""


@dataclass(frozen=True)
class SetMetrics:
    """The metrics of many sets of heads (one row of ``masks`` each)."""

    masks: Bool[torch.Tensor, "subset head_index"]
    l_acc: Float[torch.Tensor, " subset"]
    roc_auc: Float[torch.Tensor, " subset"]
    s_acc: Float[torch.Tensor, " subset"]

    def __getitem__(self, rows: slice | torch.Tensor) -> "SetMetrics":
        return SetMetrics(self.masks[rows], self.l_acc[rows], self.roc_auc[rows], self.s_acc[rows])

    def to_pandas(self) -> Any:
        import pandas as pd

        heads = [tuple(torch.nonzero(m).flatten().tolist()) for m in self.masks]
        return pd.DataFrame(
            {
                "heads": [" ".join(map(str, h)) for h in heads],
                "size": self.masks.sum(-1).tolist(),
                "l_acc": self.l_acc.tolist(),
                "roc_auc": self.roc_auc.tolist(),
                "s_acc": self.s_acc.tolist(),
            }
        )


@dataclass(frozen=True)
class HeadAnalysis:
    """What `analyze` measures. ``heads`` has one row per head; ``pairs`` one per pair."""

    heads: dict[str, list]
    pairs: SetMetrics
    pair_eos_l_acc: Float[torch.Tensor, " pair"]
    subsets: SetMetrics | None
    summary: dict[str, Any] = field(default_factory=dict)

    def heads_frame(self) -> Any:
        import pandas as pd

        return pd.DataFrame(self.heads)

    def pairs_frame(self) -> Any:
        frame = self.pairs.to_pandas()
        frame["eos_l_acc"] = self.pair_eos_l_acc.tolist()
        return frame

    def save(self, out: str | Path, **extra: Any) -> Path:
        """Write heads.csv, pairs.csv, subsets.csv.gz (if measured) and summary.json (with
        ``extra`` entries) into the directory ``out``, each atomically."""
        out = Path(out)
        write_atomic(out / "heads.csv", self.heads_frame().to_csv(index=False))
        write_atomic(out / "pairs.csv", self.pairs_frame().to_csv(index=False))
        if self.subsets is not None:
            subsets_csv = self.subsets.to_pandas().to_csv(index=False)
            write_atomic(out / "subsets.csv.gz", subsets_csv, compress=True)
        summary = json.dumps({**extra, **self.summary}, indent=2) + "\n"
        write_atomic(out / "summary.json", summary)
        return out


def analyze(
    model: HookedTransformer | str | Path,
    task: Task | None = None,
    subsets: bool = True,
    progress: bool = False,
) -> HeadAnalysis:
    """Measure every head of a one-layer model on ``task``'s train and test splits.

    Args:
        model: a model, or the path of a checkpoint (whose task is used if ``task`` is None).
        task: the task; required for a model object.
        subsets: also measure all 2^n_heads sets of heads (the slow part).
        progress: show progress bars.

    >>> from headcoop import Count01, ModelConfig, SplitSpec, build_model
    >>> spec = SplitSpec(200, (0, 20), (0, 20))
    >>> task = Count01(splits={"train": spec, "val": spec, "test": spec})
    >>> model = build_model(ModelConfig(n_heads=3), len(task.vocab), seed=0)
    >>> result = analyze(model, task)
    >>> list(result.heads_frame().columns)[:4]
    ['head', 's_acc', 'l_acc', 'roc_auc']
    >>> len(result.subsets.l_acc)
    8
    """
    model, task = _resolve(model, task)
    timings: dict[str, float] = {}
    clock = time.perf_counter()
    train = collect(model, task, task.split("train"), progress=progress)
    test = collect(model, task, task.split("test"), progress=progress)
    decomposition = decompose(model, test)
    timings["cache"] = time.perf_counter() - clock

    measure = SetMeasure(task, train, test, decomposition)
    n_heads = model.cfg.n_heads
    clock = time.perf_counter()
    pair_masks = singles_and_pairs(n_heads)
    pairs = measure(pair_masks)
    eos_l_acc = measure.eos_l_acc(pair_masks)
    timings["singles_and_pairs"] = time.perf_counter() - clock

    subset_metrics = None
    if subsets:
        clock = time.perf_counter()
        subset_metrics = measure(all_subsets(n_heads), progress)
        timings["all_subsets"] = time.perf_counter() - clock

    s_acc = pairs.s_acc[:n_heads]
    chance = measure.majority_share
    classes = [_head_class(float(s), chance) for s in s_acc]
    heads: dict[str, list] = {
        "head": list(range(n_heads)),
        "s_acc": s_acc.tolist(),
        "l_acc": pairs.l_acc[:n_heads].tolist(),
        "roc_auc": pairs.roc_auc[:n_heads].tolist(),
    }
    for name, (query, numerator, denominator) in task.attention_ratios.items():
        ids = [task.vocab.index(t) for t in (query, numerator, denominator)]
        heads[name] = weight_ratio(model, *ids).tolist()
    heads["head_weight"] = head_weights(model, measure.choice_pair).tolist()
    heads["eos_l_acc"] = eos_l_acc[:n_heads].tolist()
    heads["class"] = classes

    accuracy = (test.logits.argmax(-1) == test.targets).float().mean(0)
    summary = {
        "accuracy": dict(zip(task.read_names, accuracy.tolist(), strict=True)),
        "classes": {c: classes.count(c) for c in ("successful", "mixed", "failed")},
        "majority_share": chance,
        "thresholds": {"successful": SUCCESSFUL, "failed_below": chance + FAILED_MARGIN},
        "n_train": len(train),
        "n_test": len(test),
        "seconds": {k: round(v, 2) for k, v in timings.items()},
    }
    return HeadAnalysis(heads, pairs[n_heads:], eos_l_acc[n_heads:], subset_metrics, summary)


def attention_sweep(
    model: HookedTransformer,
    task: Task,
    settings: list[dict[str, float]],
    read: int = 0,
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

        def intervene(batch, weights=weights):
            return [fixed_attention_hook(batch, read, weights)]

        train = collect(model, task, task.split("train"), intervention=intervene)
        test = collect(model, task, task.split("test"), intervention=intervene)
        measure = SetMeasure(task, train, test, None)
        rows.append(measure.s_acc(torch.eye(model.cfg.n_heads, dtype=torch.bool)))
    return torch.stack(rows)


RATIO_GRID = tuple(10 ** (k / 4) for k in range(-12, 13))
"""Attention ratios from 1e-3 to 1e3, four per decade."""


def intervention_curves(
    model: HookedTransformer,
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


class SetMeasure:
    """l-acc, ROC AUC and s-acc of sets of heads, from train and test caches.

    Calling it with masks gives all three (``decomposition`` is then needed); `s_acc` alone
    needs only the caches.
    """

    def __init__(
        self,
        task: Task,
        train: HeadCache,
        test: HeadCache,
        decomposition: LogitDecomposition | None,
    ) -> None:
        if len(task.decision_tokens) != 2:
            raise HeadcoopError("the head analyzers need a task with two decision tokens")
        self.choices = torch.tensor([task.vocab.index(t) for t in task.decision_tokens])
        self.choice_pair = tuple(self.choices.tolist())
        self.train, self.test, self.decomposition = train, test, decomposition
        self.n_vocab = len(task.vocab)
        labels = test.targets[:, 0] == self.choices[0]
        share = float(labels.float().mean())
        self.majority_share = max(share, 1 - share)

    def __call__(self, masks: torch.Tensor, progress: bool = False) -> SetMetrics:
        targets = self.test.targets[:, 0]
        l_acc, auc = decision_metrics(self.decomposition, masks, targets, 0, self.choices)
        return SetMetrics(masks, l_acc, auc, self.s_acc(masks, progress))

    def s_acc(self, masks: torch.Tensor, progress: bool = False) -> torch.Tensor:
        first = self.choices[0]
        return separation_accuracy(
            self.train.z[:, 0],
            self.train.targets[:, 0] == first,
            self.test.z[:, 0],
            self.test.targets[:, 0] == first,
            masks,
            progress=progress,
        )

    def eos_l_acc(self, masks: torch.Tensor) -> torch.Tensor:
        """l-acc of the second scored prediction ([EOS]) over the whole vocabulary."""
        targets = self.test.targets[:, 1]
        return learned_accuracy(self.decomposition, masks, targets, 1, torch.arange(self.n_vocab))


def _head_class(s_acc: float, chance: float) -> str:
    if s_acc >= SUCCESSFUL:
        return "successful"
    if s_acc < chance + FAILED_MARGIN:
        return "failed"
    return "mixed"


def _resolve(model: HookedTransformer | str | Path, task: Task | None) -> tuple:
    if isinstance(model, HookedTransformer):
        if task is None:
            raise HeadcoopError("analyze needs a task for a model object")
        return model, task
    model, config = load_checkpoint(model)
    return model, task if task is not None else task_from_config(config.get("task", {}))
