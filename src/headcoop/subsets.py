"""Metrics of sets of heads, many sets at once: learned accuracy (l-acc) and ROC AUC.

A set of heads is a row of a boolean mask over heads; `all_subsets` enumerates every one. Both
metrics read the logits of the model with the other heads ablated, which
`LogitDecomposition.subset_logits` gives exactly from the cache, without a forward pass.
"""

import itertools

import torch
from jaxtyping import Bool, Float, Int

from headcoop.attribution import LogitDecomposition


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
    logits = decomposition.subset_logits(masks, read, choices)  # [subset example choice]
    predicted = choices[logits.argmax(-1)]
    return (predicted == targets).float().mean(-1)


def roc_auc(
    decomposition: LogitDecomposition,
    masks: Bool[torch.Tensor, "subset head_index"],
    targets: Int[torch.Tensor, " example"],
    read: int,
    choices: Int[torch.Tensor, " choice"],
) -> Float[torch.Tensor, " subset"]:
    """The largest, over the tokens t in ``choices``, of the ROC AUC of logit t (with the heads
    outside each set ablated) as a score for "the next token is t"."""
    logits = decomposition.subset_logits(masks, read, choices)  # [subset example choice]
    aucs = [auc(logits[..., k], targets == token) for k, token in enumerate(choices.tolist())]
    return torch.stack(aucs).amax(0)


def auc(
    scores: Float[torch.Tensor, "subset example"], positive: Bool[torch.Tensor, " example"]
) -> Float[torch.Tensor, " subset"]:
    """ROC AUC of each row of scores (tied scores count one half), by the rank-sum formula.

    >>> auc(torch.tensor([[0.1, 0.4, 0.35, 0.8], [1.0, 1.0, 1.0, 1.0]]),
    ...     torch.tensor([False, False, True, True])).tolist()
    [0.75, 0.5]
    """
    ordered = scores.sort(dim=-1).values.contiguous()
    below = torch.searchsorted(ordered, scores.contiguous(), right=False)
    not_above = torch.searchsorted(ordered, scores.contiguous(), right=True)
    ranks = (below + not_above + 1).double() / 2  # 1-based, ties share their mean rank
    n_pos = int(positive.sum())
    n_neg = positive.numel() - n_pos
    rank_sum = ranks[:, positive].sum(-1)
    return ((rank_sum - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)).float()
