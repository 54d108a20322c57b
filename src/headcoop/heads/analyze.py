"""`analyze`: every head metric of the paper for one model, from caches collected once.

Per head and per pair of heads, at the task's decision readout: learned accuracy (l-acc), ROC
AUC and separation accuracy (s-acc); l-acc of every other readout (Count01's [EOS]); attention
ratios and head weights; optionally the decision metrics of every subset of heads. l-acc and
ROC AUC come under every definition of a set's logits (`headcoop.metrics.definitions`): the
paper's head-only logits (``l_acc``) and the two ablations, each column named by its definition.
The result is a `headcoop.heads.analysis.HeadAnalysis`, which saves as CSV and JSON and loads
back equal.
"""

import time
from pathlib import Path
from typing import Any

import torch
from jaxtyping import Bool

from headcoop.compat import Model
from headcoop.config import SUBSETS_BUDGET
from headcoop.device import Device
from headcoop.engine.bags import bag_exact
from headcoop.engine.cache import HeadCache, collect
from headcoop.engine.loss import accuracies
from headcoop.errors import HeadcoopError
from headcoop.heads.analysis import HeadAnalysis, SetTable
from headcoop.heads.subset_plan import SetSizes, SubsetPlan, plan_subsets
from headcoop.loading.checkpoint import check_fits, load_with_task
from headcoop.loading.fields import check_model_config
from headcoop.memory import check_bytes
from headcoop.metrics.attention import measured_ratio, weight_ratio
from headcoop.metrics.attribution import SetLogits, head_weights
from headcoop.metrics.classes import (
    CHANCE_MARGIN,
    HEAD_CLASSES,
    SUCCESSFUL,
    head_class,
    labels,
    majority_share,
)
from headcoop.metrics.definitions import Definition
from headcoop.metrics.interactions import Interactions, estimated_interactions
from headcoop.metrics.separation import liblinear_s_acc, separation_accuracy
from headcoop.metrics.subsets import (
    learned_accuracy,
    logit_metrics,
    singles_and_pairs,
)
from headcoop.tasks.base import Task, candidate_ids, read_names


def analyze(
    model: Model | str | Path,
    task: Task | None = None,
    subsets: bool | str | Bool[torch.Tensor, "subset head_index"] = True,
    progress: bool = False,
    device: Device = None,
    subsets_budget: float | None = SUBSETS_BUDGET,
) -> HeadAnalysis:
    """Measure every head of a TransformerLens model of any depth on ``task``'s train and
    test splits.

    Heads are numbered layer-major (``layer * n_heads + head``, named ``L1H2``). A model of
    one attention layer without an MLP is measured from its caches alone; deeper models and
    MLPs run forward passes for the ablations (`headcoop.engine.ablation`).

    Args:
        model: a model (``HookedTransformer`` or ``TransformerBridge``), or the path of a
            checkpoint (whose task is used if ``task`` is None).
        task: the task; required for a model object, or a checkpoint that names none.
        subsets: the sets besides singles and pairs: True or 'auto' (the cost model of
            `headcoop.heads.subset_plan` decides), 'all' or 'sampled' (forced), False or
            'none', or these masks (`headcoop.metrics.subsets.sampled_subsets`, say).
        progress: show progress bars.
        device: where a checkpoint is loaded and measured (see `headcoop.device`); a model
            object is measured where it is.
        subsets_budget: seconds the pass over all sets may take by the cost model's
            estimate; above, `headcoop.heads.subset_plan` measures less (None: no limit).

    >>> from headcoop import Count01, ModelConfig, SplitSpec, build_model
    >>> spec = SplitSpec(200, (0, 20), (0, 20))
    >>> task = Count01(splits={"train": spec, "val": spec, "test": spec})
    >>> model = build_model(ModelConfig(n_heads=3), len(task.vocab), seed=0)
    >>> result = analyze(model, task)
    >>> list(result.heads_frame().columns)[:6]
    ['head', 'layer', 'name', 's_acc', 'l_acc', 'roc_auc']
    >>> len(result.subsets.masks)
    8
    """
    model, task = _resolve(model, task, device)
    timings: dict[str, float] = {}
    clock = time.perf_counter()
    train = collect(model, task, task.split("train"), progress=progress)
    test = collect(model, task, task.split("test"), progress=progress)
    logits = SetLogits.of(model, task, train, test, task.split("test"))
    scorer = SetScorer(task, train, test, logits)
    timings["cache"] = time.perf_counter() - clock

    n_heads = model.cfg.n_layers * model.cfg.n_heads
    clock = time.perf_counter()
    pair_masks = _checked_pairs(n_heads)
    pairs = SetTable(pair_masks, scorer(pair_masks, every_readout=True, liblinear=True))
    timings["singles_and_pairs"] = time.perf_counter() - clock
    plan = plan_subsets(subsets, set_sizes(model, scorer), subsets_budget)

    subset_table, interactions = _measure_subsets(plan, scorer, progress, timings)
    heads = _head_columns(model, scorer, pairs[:n_heads].columns)
    summary = _summary(model, scorer, heads, timings) | {"subsets": plan.about}
    if interactions is not None:
        summary |= interactions.summary()
    return HeadAnalysis(heads, pairs[n_heads:], subset_table, summary, interactions)


def _checked_pairs(n_heads: int) -> Bool[torch.Tensor, "subset head_index"]:
    """`singles_and_pairs`, refused in one line where their masks and tables would not fit
    the memory budget (thousands of heads have millions of pairs)."""
    n_sets = n_heads * (n_heads + 1) // 2
    check_bytes(n_sets * (n_heads + 8 * 16), f"the {n_sets:,} single heads and pairs of {n_heads}")
    return singles_and_pairs(n_heads)


def _measure_subsets(
    plan: SubsetPlan, scorer: "SetScorer", progress: bool, timings: dict[str, float]
) -> tuple[SetTable | None, Interactions | None]:
    """The sets of the plan measured, and the interactions of each metric: exact where they
    are every set (each metric is then a whole game, the other readouts' l-acc among them),
    estimated from `ESTIMATE_SETS` more sets
    where they were sampled (l-acc and ROC AUC only)."""
    if plan.masks is None:
        return None, None
    clock = time.perf_counter()
    columns = scorer(plan.masks, progress=progress, s_acc=plan.s_acc)
    if plan.every_set:
        columns |= scorer.readout_l_acc(plan.masks, (Definition.PAPER,))
    table = SetTable(plan.masks, columns)
    timings["all_subsets"] = time.perf_counter() - clock
    if plan.every_set:
        games = [k for k in columns if k in GAMES or k.endswith("_l_acc")]
        return table, Interactions.of({k: columns[k] for k in games})
    if plan.about["measured"] != "sampled":
        return table, None
    clock = time.perf_counter()
    interactions = estimated_interactions(
        lambda masks: {k: v for k, v in scorer(masks, s_acc=False).items() if k in GAMES},
        plan.masks.shape[-1],
        ESTIMATE_SETS,
    )
    timings["interaction_estimate"] = time.perf_counter() - clock
    return table, interactions


ESTIMATE_SETS = 2000
"""Sets measured to estimate Shapley values and pair interactions where sets were sampled."""
GAMES = (*(c for d in Definition for c in d.columns(("l_acc", "roc_auc"))), "s_acc")
"""The metrics at the decision whose interactions `analyze` reads out, on all sets; the l-acc
of each other readout (paper's definition; Count01's ``eos_l_acc``) joins them."""


def _head_columns(
    model: Model, scorer: "SetScorer", singles: dict[str, torch.Tensor]
) -> dict[str, list]:
    """heads.csv's columns: each single head's name, metrics, attention ratios, weight and
    class, heads numbered layer-major."""
    n_layers, n_heads = model.cfg.n_layers, model.cfg.n_heads
    heads: dict[str, list] = {"head": list(range(n_layers * n_heads))}
    heads["layer"] = [h // n_heads for h in heads["head"]]
    heads["name"] = [f"L{h // n_heads}H{h % n_heads}" for h in heads["head"]]
    heads |= {k: singles[k].tolist() for k in ("s_acc", "l_acc", "roc_auc")}
    for definition in [d for d in Definition if d is not Definition.PAPER]:
        heads |= {k: singles[k].tolist() for k in definition.columns(("l_acc", "roc_auc"))}
    heads |= _ratio_columns(model, scorer)
    heads["head_weight"] = head_weights(model, scorer.candidates).tolist()
    for name in scorer.other_readout_columns():
        heads[name] = singles[name].tolist()
    heads["class"] = [head_class(s, scorer.chance) for s in heads["s_acc"]]
    heads["s_acc_liblinear"] = singles["s_acc_liblinear"].tolist()  # last, as in pairs.csv
    return heads


def _ratio_columns(model: Model, scorer: "SetScorer") -> dict[str, list]:
    """The task's attention ratios per head: read off the weights where they are the same in
    every input (one position-free layer, the paper's w01), else their mean over the test
    inputs with the spread beside it (``{name}_spread``)."""
    task, columns = scorer.task, {}
    for name, (query, numerator, denominator) in task.attention_ratios.items():
        ids = [task.vocab.index(t) for t in (query, numerator, denominator)]
        if bag_exact(model):
            columns[name] = weight_ratio(model, *ids).tolist()
            continue
        mean, spread = measured_ratio(scorer.test, scorer.decision, *ids)
        columns[name], columns[f"{name}_spread"] = mean.tolist(), spread.tolist()
    return columns


def _summary(
    model: Model, scorer: "SetScorer", heads: dict[str, list], timings: dict[str, float]
) -> dict[str, Any]:
    """summary.json: the model's accuracy, the head classes and what the columns mean."""
    task, test = scorer.task, scorer.test
    accuracy = accuracies(task, test.logits, test.targets)
    return {
        "task": task.name,
        "decision": read_names(task)[task.decision],
        "accuracy": {k: v for k, v in accuracy.items() if k != "loss"},
        "classes": {c: heads["class"].count(c) for c in HEAD_CLASSES},
        "majority_share": scorer.chance,
        "class_shares": scorer.class_shares(),
        "thresholds": {"successful": SUCCESSFUL, "failed_below": scorer.chance + CHANCE_MARGIN},
        "definitions": Definition.described(),
        "attention_ratios": list(task.attention_ratios),
        "direct_path": scorer.direct_path(model.cfg.n_layers * model.cfg.n_heads),
        "ablations_by_forward_passes": scorer.logits.by_forward_passes,
        "n_train": len(scorer.train),
        "n_test": len(test),
        "seconds": {k: round(v, 2) for k, v in timings.items()},
    }


class SetScorer:
    """The set metrics of one model on a task, from its train and test caches.

    Calling it with masks gives every metric (``logits`` is then needed); `s_acc` alone needs
    only the caches.
    """

    def __init__(
        self, task: Task, train: HeadCache, test: HeadCache, logits: SetLogits | None
    ) -> None:
        self.task, self.train, self.test, self.logits = task, train, test, logits
        self.decision = task.decision
        self.candidates = candidate_ids(task, self.decision)
        self.train_labels = labels(task, train.targets)
        self.test_labels = labels(task, test.targets)
        self.chance = majority_share(self.test_labels)

    def __call__(
        self,
        masks: torch.Tensor,
        every_readout: bool = False,
        progress: bool = False,
        s_acc: bool = True,
        liblinear: bool = False,
    ) -> dict[str, torch.Tensor]:
        """l-acc and ROC AUC (every definition) and (if ``s_acc``) s-acc at the decision of
        each set; with ``every_readout``, also the l-acc of each other readout; with
        ``liblinear``, also s-acc as scikit-learn's LinearSVC with its defaults gives it
        (``s_acc_liblinear``, one fit per set: for single heads and pairs)."""
        columns: dict[str, torch.Tensor] = {}
        if s_acc:
            columns["s_acc"] = self.s_acc(masks, progress)
        targets = self.test.targets[:, self.decision]
        for definition in Definition:
            reader = self.logits.readers[definition]
            l_acc, auc = logit_metrics(reader, masks, targets, self.decision, self.candidates)
            columns[definition.column("l_acc")] = l_acc
            columns[definition.column("roc_auc")] = auc
        if every_readout:
            columns |= self.readout_l_acc(masks, tuple(Definition))
        if liblinear:  # last, so that the earlier columns of pairs.csv keep their places
            z = self.train.z[:, self.decision], self.test.z[:, self.decision]
            labels_ = self.train_labels, self.test_labels
            columns["s_acc_liblinear"] = liblinear_s_acc(z[0], labels_[0], z[1], labels_[1], masks)
        return columns

    def readout_l_acc(
        self, masks: torch.Tensor, definitions: tuple[Definition, ...]
    ) -> dict[str, torch.Tensor]:
        """The l-acc of each set at every readout but the decision (Count01's [EOS]: the
        paper's syntax), under each of ``definitions``."""
        columns = {}
        for read, readout in self._other_readouts():
            for definition in definitions:
                columns[definition.column(f"{readout.name}_l_acc")] = learned_accuracy(
                    self.logits.readers[definition],
                    masks,
                    self.test.targets[:, read],
                    read,
                    candidate_ids(self.task, read),
                )
        return columns

    def s_acc(self, masks: torch.Tensor, progress: bool = False) -> torch.Tensor:
        return separation_accuracy(
            self.train.z[:, self.decision],
            self.train_labels,
            self.test.z[:, self.decision],
            self.test_labels,
            masks,
            progress=progress,
        )

    def class_shares(self) -> dict[str, float]:
        """The share of each candidate among the test split's targets at the decision."""
        counts = self.test_labels.bincount(minlength=len(self.candidates))
        shares = (counts / len(self.test_labels)).tolist()
        return dict(zip(self.task.readouts[self.decision].candidates, shares, strict=True))

    def other_readout_columns(self) -> list[str]:
        """The per-readout l-acc columns that ``every_readout`` adds, in order."""
        readouts = self._other_readouts()
        return [d.column(f"{r.name}_l_acc") for _, r in readouts for d in Definition]

    def direct_path(self, n_heads: int) -> dict[str, Any]:
        """The size of the embedding's direct path: its share of the decision's choice, and
        the accuracy of each readout with every head ablated (the direct path alone)."""
        nothing = torch.zeros(1, n_heads, dtype=torch.bool)
        alone = {
            readout.name: float(
                learned_accuracy(
                    self.logits.readers[Definition.DIRECT],
                    nothing,
                    self.test.targets[:, read],
                    read,
                    candidate_ids(self.task, read),
                )[0]
            )
            for read, readout in enumerate(self.task.readouts)
        }
        share = self.logits.paper.direct_share(self.decision, self.candidates)
        return {"decision_share": share, "accuracy_alone": alone}

    def _other_readouts(self) -> list:
        return [(k, r) for k, r in enumerate(self.task.readouts) if k != self.decision]


def set_sizes(model: Model, scorer: SetScorer) -> SetSizes:
    """The sizes that decide what the pass over sets of heads costs (`SetSizes`)."""
    cfg, n_test = model.cfg, len(scorer.test.targets)
    n_classes = len(scorer.candidates)
    passes = tail = 0.0
    if scorer.logits.by_forward_passes:
        mlp = 4 * cfg.d_model * (cfg.d_mlp or 0) if not cfg.attn_only else 0
        per_token = cfg.n_layers * (8 * cfg.d_model * cfg.n_heads * cfg.d_head + mlp)
        unembed = 2 * cfg.d_model * cfg.d_vocab
        tokens = float(scorer.task.lengths(scorer.task.split("test")).sum())
        passes = tokens * (per_token + unembed)
        tail = float(n_test * (mlp + unembed))
    return SetSizes(
        n_heads=cfg.n_layers * cfg.n_heads,
        last_layer_heads=cfg.n_heads,
        d_head=cfg.d_head,
        n_train=len(scorer.train.targets),
        n_test=n_test,
        n_separators=1 if n_classes == 2 else n_classes,
        n_candidates=n_classes,
        n_definitions=len(Definition),
        pass_flops=passes,
        tail_flops=tail,
    )


def _resolve(model: Model | str | Path, task: Task | None, device: Device) -> tuple:
    if isinstance(model, Model):
        if task is None:
            raise HeadcoopError("analyze needs a task for a model object")
        check_model_config(model.cfg)
        check_fits(model, task)
        return model, task
    model, task, _ = load_with_task(model, task, device)
    return model, task
