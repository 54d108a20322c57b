"""Successor heads (``headcoop successor``), in one import: succession scores, periodic
features and steering.

- `scores`: succession scores of heads and virtual paths;
- `periodic`: mod-k features and steering;
- `successor_report`: ``headcoop successor``'s files and page.

For example ``succession_scores(model, task)`` gives
a DataFrame of layer, head, path, domain and score for a model trained on the ``successor``
task.
"""

from headcoop.heads.succession import (
    SUCCESSOR_THRESHOLD,
    effective_ov,
    head_inputs,
    succession_scores,
    successor_heads,
)
from headcoop.successor.periodic import (
    ablation_importance,
    dictionary_features,
    feature_table,
    probe_features,
    residue_means,
    residue_shares,
    steer,
    svd_features,
)

__all__ = [
    "SUCCESSOR_THRESHOLD",
    "ablation_importance",
    "dictionary_features",
    "effective_ov",
    "feature_table",
    "head_inputs",
    "probe_features",
    "residue_means",
    "residue_shares",
    "steer",
    "succession_scores",
    "successor_heads",
    "svd_features",
]
