"""headcoop: how attention heads share work, in small transformers.

The data flow follows the subpackages: tasks -> engine (the one door `engine.run`, over bags,
stacks and full sequences) -> metrics (attribution, subsets, separation, attention, classes,
interactions) -> training (trainer, checkpoints, sweeps) -> heads (the per-model head analyses
every study uses) -> explore (one interactive page per model) -> the studies, one folder each:
paper (figures, Table 1, the claims lab), trace (sparse attention decomposition), successor
(successor heads), cooperation (interactions of heads across tasks) -> cli. The public names
below are imported lazily, so that ``import headcoop`` (and ``headcoop --help``) stays fast:
transformer_lens takes seconds to import.

>>> import headcoop
>>> task = headcoop.Count01()
>>> model = headcoop.build_model(headcoop.ModelConfig(), d_vocab=len(task.vocab), seed=0)
>>> model.cfg.d_model
32
"""

import importlib
from importlib import metadata
from typing import Any

try:
    __version__ = metadata.version("headcoop")
except metadata.PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0+unknown"

_EXPORTS = {
    "HeadcoopError": "headcoop.errors",
    "Batch": "headcoop.tasks",
    "Count01": "headcoop.tasks",
    "Histogram": "headcoop.tasks",
    "Induction": "headcoop.tasks",
    "Plurality": "headcoop.tasks",
    "PromptTask": "headcoop.tasks",
    "Successor": "headcoop.tasks",
    "Readout": "headcoop.tasks",
    "SplitSpec": "headcoop.tasks",
    "Task": "headcoop.tasks",
    "CountingLanguage": "headcoop.tasks.counting",
    "candidate_ids": "headcoop.tasks",
    "split_generator": "headcoop.tasks.base",
    "task_from_config": "headcoop.tasks",
    "make_task": "headcoop.tasks",
    "load_task": "headcoop.tasks",
    "register_task": "headcoop.tasks",
    "registered_tasks": "headcoop.tasks",
    "ModelConfig": "headcoop.config",
    "build_model": "headcoop.model",
    "bag_exact": "headcoop.engine.bags",
    "choose_engine": "headcoop.engine.run",
    "run": "headcoop.engine.run",
    "evaluate": "headcoop.engine.run",
    "predict": "headcoop.engine.run",
    "read_logits": "headcoop.engine.batches",
    "TrainConfig": "headcoop.config",
    "train": "headcoop.training.trainer",
    "train_models": "headcoop.training.trainer",
    "load_checkpoint": "headcoop.loading.checkpoint",
    "load_with_task": "headcoop.loading.checkpoint",
    "save_checkpoint": "headcoop.loading.checkpoint",
    "HeadCache": "headcoop.engine.cache",
    "collect": "headcoop.engine.cache",
    "Definition": "headcoop.metrics.definitions",
    "LogitDecomposition": "headcoop.metrics.attribution",
    "SetLogits": "headcoop.metrics.attribution",
    "decompose": "headcoop.metrics.attribution",
    "head_weights": "headcoop.metrics.attribution",
    "all_subsets": "headcoop.metrics.subsets",
    "labels": "headcoop.metrics.classes",
    "learned_accuracy": "headcoop.metrics.subsets",
    "roc_auc": "headcoop.metrics.subsets",
    "separation_accuracy": "headcoop.metrics.separation",
    "weight_ratio": "headcoop.metrics.attention",
    "HeadAnalysis": "headcoop.heads.analysis",
    "analyze": "headcoop.heads.analyze",
    "read_analysis": "headcoop.heads.analysis",
    "Interactions": "headcoop.metrics.interactions",
    "explore": "headcoop.explore.build",
    "attention_sweep": "headcoop.heads.interventions",
    "intervention_curves": "headcoop.heads.interventions",
    "trajectory": "headcoop.heads.dynamics",
    "random_head_s_acc": "headcoop.heads.dynamics",
    "minimal_solution": "headcoop.paper.minimal",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'headcoop' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
