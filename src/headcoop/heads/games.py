"""The games of one analysis, with their error bars: each metric's cooperation index, its
interval over test examples, and the null model of independent heads beside it
(`headcoop.metrics.null_model`), as summary.json's ``cooperation`` gives them.
"""

from typing import Any

import torch
from jaxtyping import Float

from headcoop.heads.set_scorer import SetScorer
from headcoop.metrics.bootstrap import Resamples
from headcoop.metrics.interactions import Interactions, index_of_values, index_sets
from headcoop.metrics.null_model import NULL_DRAWS, excess, excess_verdict, null_indices


def game_summary(interactions: Interactions, scorer: SetScorer) -> dict[str, dict[str, Any]]:
    """summary.json's ``cooperation``: per game its gain, mean pair interaction, cooperation
    index and threshold ``verdict`` (`headcoop.metrics.interactions.verdicts`); with
    resamples, the index's interval (``index_low``, ``index_high``) and, where the null
    applies, the null index and its spread over draws (``null_index``, ``null_low``,
    ``null_high``) and the excess, index minus null, with its interval and the verdict read
    from it (``excess``, ``excess_low``, ``excess_high``, ``excess_verdict``). None where not
    measured."""
    n_heads = interactions.shapley.shape[-1]
    indices, nulls = game_indices(scorer, n_heads), game_nulls(scorer)
    found = {}
    for row in interactions.verdicts().to_dict("records"):
        metric = row.pop("metric")
        entry = row | {"index_low": None, "index_high": None}
        if metric in indices:
            entry["index_low"], entry["index_high"] = _interval(scorer.resamples, indices[metric])
        resampled, null = indices.get(metric), nulls.get(metric)
        entry |= _null_entry(row["cooperation_index"], resampled, null, scorer.resamples)
        found[metric] = _finite(entry)
    return found


def game_indices(scorer: SetScorer, n_heads: int) -> dict[str, Float[torch.Tensor, " resample"]]:
    """Each game's cooperation index under every resample of the test split, from the values
    of the `index_sets` alone (2n + 2 sets, so ROC AUC's game too); empty without resamples."""
    if scorer.resamples is None:
        return {}
    masks = index_sets(n_heads)
    _, resampled = scorer.scored(masks, True, resample=True, resample_auc=True)
    return {name: index_of_values(values.T) for name, values in resampled.items()}


def game_nulls(scorer: SetScorer) -> dict[str, Float[torch.Tensor, " draw"]]:
    """The null index of each game it applies to (l-acc and ROC AUC under the paper's
    definition), on `NULL_DRAWS` draws; empty without resamples (the excess needs them)."""
    if scorer.resamples is None:
        return {}
    return null_indices(scorer.logits.paper, scorer.test_labels, scorer.paper_games, NULL_DRAWS)


def _null_entry(
    index: float,
    resampled: torch.Tensor | None,
    null: torch.Tensor | None,
    resamples: Resamples | None,
) -> dict[str, Any]:
    keys = ("null_index", "null_low", "null_high", "excess", "excess_low", "excess_high")
    if null is None or resamples is None or resampled is None:
        return dict.fromkeys((*keys, "excess_verdict"))
    null_index = float(null.nanmean())
    null_low, null_high = _interval(resamples, null)
    low, high = _interval(resamples, excess(resampled, null))
    values = (null_index, null_low, null_high, index - null_index, low, high)
    entry = dict(zip(keys, values, strict=True))
    return _finite(entry) | {"excess_verdict": excess_verdict(*_finite([low, high]))}


def _interval(resamples: Resamples, values: torch.Tensor) -> tuple[float, float]:
    low, high = resamples.interval(values.double()[None])
    return float(low), float(high)


def _finite(value: Any) -> Any:
    """``value`` with every NaN as None (strict JSON)."""
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return None if isinstance(value, float) and value != value else value
