"""Metrics of sets of heads, many sets at once: learned accuracy (l-acc) and ROC AUC.

A set of heads is a row of a boolean mask over heads; `all_subsets` enumerates every one. Both
metrics read the logits of the model with the other heads ablated, which
`LogitDecomposition.subset_logits` gives exactly from the cache, without a forward pass.
"""

import itertools

import torch
from jaxtyping import Bool, Float, Int

from headcoop.metrics.attribution import SUBSET_CHUNK, LogitDecomposition


def all_subsets(n_heads: int) -> Bool[torch.Tensor, "subset head_index"]:
    """Every set of heads, the empty set included, as masks (row k has the bits of k).

    >>> all_subsets(2).int().tolist()
    [[0, 0], [1, 0], [0, 1], [1, 1]]
    """
    codes = torch.arange(2**n_heads)[:, None]
    return (codes >> torch.arange(n_heads)) & 1 == 1


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
    decomposition: LogitDecomposition,
    masks: Bool[torch.Tensor, "subset head_index"],
    targets: Int[torch.Tensor, " example"],
    read: int,
    choices: Int[torch.Tensor, " choice"],
) -> Float[torch.Tensor, " subset"]:
    """l-acc: accuracy with the heads outside each set ablated, the prediction being the
    highest logit among ``choices`` (the decision tokens, or the whole vocabulary)."""
    return decision_metrics(decomposition, masks, targets, read, choices, with_auc=False)[0]


def roc_auc(
    decomposition: LogitDecomposition,
    masks: Bool[torch.Tensor, "subset head_index"],
    targets: Int[torch.Tensor, " example"],
    read: int,
    choices: Int[torch.Tensor, " choice"],
) -> Float[torch.Tensor, " subset"]:
    """The largest, over the tokens t in ``choices``, of the ROC AUC of logit t (with the heads
    outside each set ablated) as a score for "the next token is t"."""
    return decision_metrics(decomposition, masks, targets, read, choices)[1]


def decision_metrics(
    decomposition: LogitDecomposition,
    masks: Bool[torch.Tensor, "subset head_index"],
    targets: Int[torch.Tensor, " example"],
    read: int,
    choices: Int[torch.Tensor, " choice"],
    with_auc: bool = True,
) -> tuple[Float[torch.Tensor, " subset"], Float[torch.Tensor, " subset"] | None]:
    """l-acc and (if ``with_auc``) ROC AUC of each set, from one pass over the ablated logits,
    a chunk of sets at a time."""
    l_acc, aucs = [], []
    for chunk in masks.split(SUBSET_CHUNK):
        logits = decomposition.subset_logits(chunk, read, choices)  # [subset example choice]
        l_acc.append((choices[logits.argmax(-1)] == targets).float().mean(-1))
        if with_auc:
            per_token = [auc(logits[..., k], targets == t) for k, t in enumerate(choices.tolist())]
            aucs.append(torch.stack(per_token).amax(0))
    return torch.cat(l_acc), torch.cat(aucs) if with_auc else None


def auc(
    scores: Float[torch.Tensor, "subset example"], positive: Bool[torch.Tensor, " example"]
) -> Float[torch.Tensor, " subset"]:
    """ROC AUC of each row of scores (tied scores count one half), by the rank-sum formula.

    >>> auc(torch.tensor([[0.1, 0.4, 0.35, 0.8], [1.0, 1.0, 1.0, 1.0]]),
    ...     torch.tensor([False, False, True, True])).tolist()
    [0.75, 0.5]
    """
    ordered, order = scores.sort(dim=-1)
    n = scores.shape[-1]
    index = torch.arange(n).expand_as(ordered)
    new = ordered[:, 1:] != ordered[:, :-1]
    edge = torch.ones(len(ordered), 1, dtype=torch.bool)
    starts = torch.cat([edge, new], dim=1)  # first of a run of equal scores
    ends = torch.cat([new, edge], dim=1).flip(-1)  # last of a run, counted from the right
    first = torch.where(starts, index, 0).cummax(-1).values
    last = n - 1 - torch.where(ends, index, 0).cummax(-1).values.flip(-1)
    ranks = (first + last).double() / 2 + 1  # tied scores share the mean of their ranks
    n_pos = int(positive.sum())
    n_neg = positive.numel() - n_pos
    rank_sum = (ranks * positive[order]).sum(-1)
    return ((rank_sum - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)).float()
