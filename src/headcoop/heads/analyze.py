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
from headcoop.engine.cache import collect
from headcoop.engine.loss import accuracies
from headcoop.errors import HeadcoopError
from headcoop.heads.analysis import HeadAnalysis, SetTable
from headcoop.heads.games import game_summary
from headcoop.heads.set_scorer import SetScorer, interval_columns, set_sizes
from headcoop.heads.subset_plan import SubsetPlan, plan_subsets
from headcoop.loading.checkpoint import check_fits, load_with_task
from headcoop.loading.fields import check_model_config
from headcoop.memory import check_bytes
from headcoop.metrics.attention import measured_ratio, weight_ratio
from headcoop.metrics.attribution import SetLogits, head_weights
from headcoop.metrics.bootstrap import RESAMPLES, Resamples
from headcoop.metrics.classes import (
    CHANCE_MARGIN,
    HEAD_CLASSES,
    SUCCESSFUL,
    head_class,
)
from headcoop.metrics.definitions import Definition
from headcoop.metrics.interactions import Interactions, estimated_interactions
from headcoop.metrics.separation import LIBLINEAR
from headcoop.metrics.subsets import (
    singles_and_pairs,
)
from headcoop.tasks.base import Task, read_names


def analyze(
    model: Model | str | Path,
    task: Task | None = None,
    subsets: bool | str | Bool[torch.Tensor, "subset head_index"] = True,
    progress: bool = False,
    device: Device = None,
    subsets_budget: float | None = SUBSETS_BUDGET,
    bootstrap: int = RESAMPLES,
) -> HeadAnalysis:
    """Measure every head of a TransformerLens model of any depth on ``task``'s splits.

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
        bootstrap: resamples of the test split (seed 0) for the percentile intervals of every
            head's and pair's metrics and of each game's cooperation index
            (`headcoop.metrics.bootstrap`); 0 for none.

    >>> from headcoop import Count01, ModelConfig, SplitSpec, build_model
    >>> spec = SplitSpec(200, (0, 20), (0, 20))
    >>> task = Count01(splits={"train": spec, "val": spec, "test": spec})
    >>> model = build_model(ModelConfig(n_heads=3), len(task.vocab), seed=0)
    >>> result = analyze(model, task)
    >>> list(result.heads_frame().columns)[:6], len(result.subsets.masks)
    (['head', 'layer', 'name', 's_acc', 'l_acc', 'roc_auc'], 8)
    """
    model, task = _resolve(model, task, device)
    timings: dict[str, float] = {}
    clock = time.perf_counter()
    scorer = _scorer(model, task, progress, bootstrap)
    timings["cache"] = time.perf_counter() - clock

    n_heads = model.cfg.n_layers * model.cfg.n_heads
    clock = time.perf_counter()
    pair_masks = _checked_pairs(n_heads)
    pairs = SetTable(pair_masks, scorer(pair_masks, True, liblinear=True, intervals=True))
    timings["singles_and_pairs"] = time.perf_counter() - clock
    plan = plan_subsets(subsets, set_sizes(model, scorer), subsets_budget)

    subset_table, interactions = _measure_subsets(plan, scorer, progress, timings)
    games = _games(interactions, scorer, timings)
    heads = _head_columns(model, scorer, pairs[:n_heads].columns)
    summary = _summary(model, scorer, heads, timings) | {"subsets": plan.about} | games
    return HeadAnalysis(heads, pairs[n_heads:], subset_table, summary, interactions)


def _games(
    interactions: Interactions | None, scorer: SetScorer, timings: dict[str, float]
) -> dict[str, Any]:
    """summary.json's entries on the games: their spectrum, and each one's cooperation index
    with its interval and null (`headcoop.heads.games`)."""
    if interactions is None:
        return {}
    clock = time.perf_counter()
    games = interactions.summary() | {"cooperation": game_summary(interactions, scorer)}
    timings["game_intervals"] = time.perf_counter() - clock
    return games


def _scorer(model: Model, task: Task, progress: bool, bootstrap: int) -> SetScorer:
    """The scorer of ``model``'s sets: its train and test caches, every definition's set
    logits and (``bootstrap`` > 0) that many resamples of the test split."""
    train = collect(model, task, task.split("train"), progress=progress)
    test = collect(model, task, task.split("test"), progress=progress)
    logits = SetLogits.of(model, task, train, test, task.split("test"))
    resamples = Resamples.draw(len(test), bootstrap) if bootstrap else None
    return SetScorer(task, train, test, logits, resamples)


def _checked_pairs(n_heads: int) -> Bool[torch.Tensor, "subset head_index"]:
    """`singles_and_pairs`, refused in one line where their masks and tables would not fit
    the memory budget (thousands of heads have millions of pairs)."""
    n_sets = n_heads * (n_heads + 1) // 2
    check_bytes(n_sets * (n_heads + 8 * 16), f"the {n_sets:,} single heads and pairs of {n_heads}")
    return singles_and_pairs(n_heads)


def _measure_subsets(
    plan: SubsetPlan, scorer: SetScorer, progress: bool, timings: dict[str, float]
) -> tuple[SetTable | None, Interactions | None]:
    """The sets of the plan measured, and the interactions of each metric: exact where they
    are every set (each metric is then a whole game, the other readouts' l-acc among them),
    estimated from `ESTIMATE_SETS` more sets where they were sampled (l-acc and ROC AUC
    only)."""
    if plan.masks is None:
        return None, None
    clock = time.perf_counter()
    columns = scorer(plan.masks, progress=progress, s_acc=plan.s_acc)
    if plan.every_set:
        columns |= scorer.readout_l_acc(plan.masks, (Definition.PAPER,))[0]
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
    model: Model, scorer: SetScorer, singles: dict[str, torch.Tensor]
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
    heads["s_acc" + LIBLINEAR] = singles["s_acc" + LIBLINEAR].tolist()  # as in pairs.csv
    heads |= {k: singles[k].tolist() for k in interval_columns() if k in singles}  # last
    return heads


def _ratio_columns(model: Model, scorer: SetScorer) -> dict[str, list]:
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
    model: Model, scorer: SetScorer, heads: dict[str, list], timings: dict[str, float]
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
    } | ({"bootstrap": scorer.resamples.about()} if scorer.resamples is not None else {})


def _resolve(model: Model | str | Path, task: Task | None, device: Device) -> tuple:
    if isinstance(model, Model):
        if task is None:
            raise HeadcoopError("analyze needs a task for a model object")
        check_model_config(model.cfg)
        check_fits(model, task)
        return model, task
    model, task, _ = load_with_task(model, task, device)
    return model, task
