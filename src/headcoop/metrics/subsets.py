"""Metrics of sets of heads, many sets at once: learned accuracy (l-acc) and ROC AUC.

A set of heads is a row of a boolean mask over heads; `all_subsets` enumerates every one. Both
metrics read the logits of each set from a `SetReader`: one definition's implementation
(`headcoop.metrics.attribution.SetLogits.readers`, or a decomposition's ``head_only`` and
``ablated``).
"""

import itertools
import math
from dataclasses import dataclass
from typing import Any, no_type_check

import numba
import numpy as np
import torch
from jaxtyping import Bool, Float, Int

from headcoop.errors import HeadcoopError
from headcoop.metrics.attribution import SUBSET_CHUNK, SetReader
from headcoop.metrics.bootstrap import Resamples, resampled_auc
from headcoop.metrics.classes import candidate_index, highest


def check_masks(masks: Any, n_heads: int, name: str = "subsets") -> torch.Tensor:
    """``masks`` if they are sets of ``n_heads`` heads (a boolean tensor of shape
    (sets, n_heads)), else one `HeadcoopError` naming ``name``: the solvers are compiled and
    trust the width they are given."""
    shape = tuple(masks.shape) if isinstance(masks, torch.Tensor) else None
    if shape is None or masks.dtype != torch.bool or len(shape) != 2 or shape[1] != n_heads:
        got = f"{masks.dtype} of shape {shape}" if shape is not None else type(masks).__name__
        raise HeadcoopError(
            f"{name} must be a boolean tensor of shape (sets, {n_heads}), got {got}"
        )
    return masks


def all_subsets(n_heads: int) -> Bool[torch.Tensor, "subset head_index"]:
    """Every set of heads, the empty set included, as masks (row k has the bits of k).

    >>> all_subsets(2).int().tolist()
    [[0, 0], [1, 0], [0, 1], [1, 1]]
    """
    codes = torch.arange(2**n_heads)[:, None]
    return (codes >> torch.arange(n_heads)) & 1 == 1


def sampled_subsets(
    n_heads: int, per_size: int, seed: int = 0
) -> Bool[torch.Tensor, "subset head_index"]:
    """For each size from 1 to ``n_heads``: every set of that size if there are at most
    ``per_size``, else ``per_size`` distinct sets drawn uniformly (from ``seed``). Means by size
    over these estimate the means over all subsets without 2^n_heads measurements.

    >>> sampled_subsets(3, per_size=5).sum(-1).tolist()
    [1, 1, 1, 2, 2, 2, 3]
    """
    generator = torch.Generator().manual_seed(seed)
    masks = []
    for size in range(1, n_heads + 1):
        if math.comb(n_heads, size) <= per_size:
            rows = list(itertools.combinations(range(n_heads), size))
        else:
            rows = set()
            while len(rows) < per_size:
                pick = torch.randperm(n_heads, generator=generator)[:size]
                rows.add(tuple(sorted(pick.tolist())))
            rows = sorted(rows)
        block = torch.zeros(len(rows), n_heads, dtype=torch.bool)
        for row, heads in enumerate(rows):
            block[row, list(heads)] = True
        masks.append(block)
    return torch.cat(masks)


def set_names(masks: Bool[torch.Tensor, "subset head_index"]) -> list[str]:
    """Each set as the CSV files name it: its heads' indices, ascending, spaced ('' for none).

    >>> set_names(torch.tensor([[True, False, True], [False, False, False]]))
    ['0 2', '']
    """
    return [" ".join(map(str, torch.nonzero(m).flatten().tolist())) for m in masks]


def masks_of(names: Any, n_heads: int) -> Bool[torch.Tensor, "subset head_index"]:
    """The sets that `set_names` names (an empty name, or the NaN pandas reads it as, is the
    empty set), as masks over ``n_heads`` heads."""
    masks = torch.zeros(len(names), n_heads, dtype=torch.bool)
    for row, name in enumerate(names):
        heads = [int(h) for h in name.split()] if isinstance(name, str) else []
        masks[row, heads] = True
    return masks


def pair_members(names: Any, n_heads: int) -> Int[torch.Tensor, "pair 2"]:
    """The two heads of each pair that `set_names` names, the lower first."""
    return torch.nonzero(masks_of(names, n_heads))[:, 1].view(-1, 2)


def singles_and_pairs(n_heads: int) -> Bool[torch.Tensor, "subset head_index"]:
    """The single heads (in order), then every pair (i < j) in lexicographic order."""
    rows = [[i] for i in range(n_heads)] + [
        list(p) for p in itertools.combinations(range(n_heads), 2)
    ]
    masks = torch.zeros(len(rows), n_heads, dtype=torch.bool)
    for row, heads in enumerate(rows):
        masks[row, heads] = True
    return masks


def learned_accuracy(
    reader: SetReader,
    masks: Bool[torch.Tensor, "subset head_index"],
    targets: Int[torch.Tensor, " example"],
    read: int,
    candidates: Int[torch.Tensor, " candidate"],
) -> Float[torch.Tensor, " subset"]:
    """l-acc: accuracy of each set's logits (as ``reader`` gives them), the prediction being
    the highest logit among ``candidates``."""
    return logit_metrics(reader, masks, targets, read, candidates, with_auc=False).l_acc


def roc_auc(
    reader: SetReader,
    masks: Bool[torch.Tensor, "subset head_index"],
    targets: Int[torch.Tensor, " example"],
    read: int,
    candidates: Int[torch.Tensor, " candidate"],
) -> Float[torch.Tensor, " subset"]:
    """ROC AUC of each set: for each candidate t, the AUC of logit t as a score for "the
    target is t"; with two candidates the larger of the two (the paper's definition), with
    more the mean over candidates (one-vs-rest). Candidates that are never or always the
    target are left out."""
    return logit_metrics(reader, masks, targets, read, candidates).roc_auc


@dataclass(frozen=True)
class LogitMetrics:
    """l-acc and ROC AUC of many sets, and (where asked) each under every bootstrap resample."""

    l_acc: Float[torch.Tensor, " subset"]
    roc_auc: Float[torch.Tensor, " subset"] | None = None
    l_acc_resampled: Float[torch.Tensor, "subset resample"] | None = None
    roc_auc_resampled: Float[torch.Tensor, "subset resample"] | None = None


def logit_metrics(
    reader: SetReader,
    masks: Bool[torch.Tensor, "subset head_index"],
    targets: Int[torch.Tensor, " example"],
    read: int,
    candidates: Int[torch.Tensor, " candidate"],
    with_auc: bool = True,
    resamples: Resamples | None = None,
    resample_auc: bool = False,
) -> LogitMetrics:
    """l-acc and (if ``with_auc``) ROC AUC of each set, from one pass over its logits, a chunk
    of sets at a time; with ``resamples``, l-acc under each resample too, and ROC AUC if
    ``resample_auc`` (sets x resamples x examples of memory per chunk: for singles and
    pairs)."""
    parts: dict[str, list[torch.Tensor]] = {"l_acc": [], "roc_auc": []}
    parts |= {"l_acc_resampled": [], "roc_auc_resampled": []}
    candidates = candidates.to(targets.device)
    target_index = candidate_index(targets, candidates)  # -1: no candidate, never predicted
    for chunk in masks.to(targets.device).split(SUBSET_CHUNK):
        logits = reader(chunk, read, candidates)
        hit = (highest(logits.permute(2, 0, 1)) == target_index).float()  # [set example]
        parts["l_acc"].append(hit.mean(-1))
        if resamples is not None:
            parts["l_acc_resampled"].append(resamples.means(hit))
        if with_auc:
            parts["roc_auc"].append(_candidate_auc(logits, targets, candidates))
        if with_auc and resample_auc and resamples is not None:
            parts["roc_auc_resampled"].append(
                _candidate_auc(logits, targets, candidates, resamples)
            )
    return LogitMetrics(**{k: torch.cat(v) if v else None for k, v in parts.items()})


def _candidate_auc(
    logits: Float[torch.Tensor, "subset example candidate"],
    targets: Int[torch.Tensor, " example"],
    candidates: Int[torch.Tensor, " candidate"],
    resamples: Resamples | None = None,
) -> torch.Tensor:
    """Each set's ROC AUC over the candidates (see `roc_auc`), or under every resample
    [subset resample] (a few sets at a time: `resampled_auc` holds them all per example)."""

    def one(scores: torch.Tensor, positive: torch.Tensor) -> torch.Tensor:
        if resamples is None:
            return auc(scores, positive)
        blocks = [resampled_auc(s, positive, resamples) for s in scores.split(RESAMPLED_SETS)]
        return torch.cat(blocks)

    per_candidate = [
        one(logits[..., k], targets == t)
        for k, t in enumerate(candidates.tolist())
        if 0 < int((targets == t).sum()) < len(targets)
    ]
    if not per_candidate:
        shape = logits.shape[:1] if resamples is None else (len(logits), len(resamples))
        return logits.new_full(shape, float("nan"))
    stacked = torch.stack(per_candidate)  # [candidate subset (resample)]
    return stacked.amax(0) if len(candidates) == 2 else stacked.mean(0)


RESAMPLED_SETS = 8
"""Sets whose resampled ROC AUC is computed at once (each holds resamples x examples)."""


def auc(
    scores: Float[torch.Tensor, "subset example"], positive: Bool[torch.Tensor, " example"]
) -> Float[torch.Tensor, " subset"]:
    """ROC AUC of each row of scores (tied scores count one half): the share of (positive,
    negative) pairs that the scores order correctly.

    Each row's positive and negative scores are sorted apart. For every positive, the sorted
    negatives give those scored strictly lower and those scored at most as high; the two
    counts, summed over the positives, are twice the pairs with ties at one half.

    >>> auc(torch.tensor([[0.1, 0.4, 0.35, 0.8], [1.0, 1.0, 1.0, 1.0]]),
    ...     torch.tensor([False, False, True, True])).tolist()
    [0.75, 0.5]
    """
    keys = _ordered_bits(scores)  # [subset example], ordered as the scores
    n_pos = int(positive.sum())
    n_neg = positive.numel() - n_pos
    pairs = _twice_pairs_below(_sort_rows(keys[:, positive]), _sort_rows(keys[:, ~positive]))
    return (pairs / (2 * n_pos * n_neg)).float()


def _twice_pairs_below(
    pos: Int[torch.Tensor, "row n_pos"], neg: Int[torch.Tensor, "row n_neg"]
) -> Float[torch.Tensor, " row"]:
    """Over each row's (sorted) positives, the negatives (sorted) strictly below each plus
    those at most equal to it. On the CPU in one merge of the two lists (`_merge_count`), on
    other devices by binary search (`_search_count`)."""
    if pos.device.type == "cpu":
        return torch.from_numpy(_merge_count(pos.numpy(), neg.numpy()))
    return _search_count(pos, neg)


def _search_count(
    pos: Int[torch.Tensor, "row n_pos"], neg: Int[torch.Tensor, "row n_neg"]
) -> Float[torch.Tensor, " row"]:
    below = torch.searchsorted(neg, pos).sum(-1) + torch.searchsorted(neg, pos, right=True).sum(-1)
    return below.double()


@no_type_check  # compiled by numba: no runtime type checks
@numba.njit(cache=True, nogil=True, boundscheck=False)
def _merge_count(pos, neg):
    n_rows, n_pos = pos.shape
    n_neg = neg.shape[1]
    out = np.empty(n_rows)
    for r in range(n_rows):
        p, q = pos[r], neg[r]
        lower, at_most, total = 0, 0, 0
        for i in range(n_pos):
            while lower < n_neg and q[lower] < p[i]:
                lower += 1
            at_most = max(at_most, lower)
            while at_most < n_neg and q[at_most] <= p[i]:
                at_most += 1
            total += lower + at_most
        out[r] = total
    return out


def _ordered_bits(x: Float[torch.Tensor, "*shape"]) -> Int[torch.Tensor, "*shape"]:
    """Integers in the order of the float32 values ``x`` (equal floats, -0 and +0 included,
    give equal integers): the IEEE bits, with the magnitude bits of negatives flipped."""
    bits = (x.float() + 0.0).view(torch.int32)  # + 0.0 turns -0.0 into +0.0
    return bits ^ ((bits >> 31) & 0x7FFFFFFF)


def _sort_rows(x: Int[torch.Tensor, "row n"]) -> Int[torch.Tensor, "row n"]:
    """Each row sorted. On the CPU by numpy, whose vectorised sort is about ten times faster
    than torch's here."""
    if x.device.type == "cpu":
        return torch.from_numpy(np.sort(x.numpy(), axis=-1))
    return x.sort(-1).values
