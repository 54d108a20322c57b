"""headcoop: how attention heads share work, on one-layer HookedTransformers.

The data flow is task -> model -> engine -> cache -> metrics (attribution, subsets,
separation, attention) -> analysis. The public names below are imported
lazily, so that ``import headcoop`` (and ``headcoop --help``) stays fast: transformer_lens takes
seconds to import.

>>> import headcoop
>>> task = headcoop.Count01()
>>> model = headcoop.build_model(headcoop.ModelConfig(), d_vocab=len(task.vocab), seed=0)
>>> model.cfg.d_model
32
"""

import importlib
from typing import Any

_EXPORTS = {
    "HeadcoopError": "headcoop.errors",
    "Batch": "headcoop.tasks",
    "Count01": "headcoop.tasks",
    "SplitSpec": "headcoop.tasks",
    "Task": "headcoop.tasks",
    "task_from_config": "headcoop.tasks",
    "make_task": "headcoop.tasks",
    "register_task": "headcoop.tasks",
    "ModelConfig": "headcoop.config",
    "build_model": "headcoop.model",
    "bag_exact": "headcoop.engine",
    "evaluate": "headcoop.engine",
    "predict": "headcoop.engine",
    "read_logits": "headcoop.engine",
    "TrainConfig": "headcoop.config",
    "train": "headcoop.training",
    "train_models": "headcoop.training",
    "load_checkpoint": "headcoop.checkpoint",
    "save_checkpoint": "headcoop.checkpoint",
    "HeadCache": "headcoop.cache",
    "collect": "headcoop.cache",
    "LogitDecomposition": "headcoop.attribution",
    "decompose": "headcoop.attribution",
    "head_weights": "headcoop.attribution",
    "all_subsets": "headcoop.subsets",
    "learned_accuracy": "headcoop.subsets",
    "roc_auc": "headcoop.subsets",
    "separation_accuracy": "headcoop.separation",
    "weight_ratio": "headcoop.attention",
    "HeadAnalysis": "headcoop.analysis",
    "analyze": "headcoop.analysis",
    "attention_sweep": "headcoop.analysis",
    "intervention_curves": "headcoop.analysis",
    "trajectory": "headcoop.dynamics",
    "random_head_s_acc": "headcoop.dynamics",
    "minimal_solution": "headcoop.minimal",
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
