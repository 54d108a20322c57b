"""Bootstrap intervals over test examples, for every set metric at once.

A resample draws the test split's n examples n times with replacement; it is stored as the
count of each example (`Resamples.counts`), so a metric that is a mean over examples
(l-acc, s-acc: the share of examples a set gets right) is, under every resample, one matrix
product of the per-example correctness with the counts. Nothing is measured again: the s-acc
separators stay those fitted on the train split, the logits those of the test split. ROC AUC,
a mean over (positive, negative) pairs, is reweighted by the product of the two counts
(`resampled_auc`). Intervals are percentile intervals (`Resamples.interval`).
"""

from dataclasses import dataclass

import torch
from jaxtyping import Bool, Float, Int

from headcoop.config import BOOTSTRAP
from headcoop.memory import check_bytes

RESAMPLES = BOOTSTRAP
"""Bootstrap resamples by default (``--bootstrap``); 0 measures no intervals."""
LEVEL = 0.95
"""The intervals' coverage."""


@dataclass(frozen=True)
class Resamples:
    """Bootstrap resamples of a split of ``n`` examples: ``counts[b, i]`` is how often
    resample b draws example i (each row sums to n)."""

    counts: Float[torch.Tensor, "resample example"]
    seed: int
    level: float = LEVEL

    @classmethod
    def draw(cls, n_examples: int, n_resamples: int, seed: int = 0) -> "Resamples":
        """``n_resamples`` resamples of ``n_examples`` examples, from ``seed``."""
        check_bytes(8 * n_examples * n_resamples, f"{n_resamples:,} bootstrap resamples")
        generator = torch.Generator().manual_seed(seed)
        drawn = torch.randint(n_examples, (n_resamples, n_examples), generator=generator)
        counts = torch.zeros(n_resamples, n_examples).scatter_add_(
            1, drawn, torch.ones(1).expand_as(drawn)
        )
        return cls(counts, seed)

    def __len__(self) -> int:
        return len(self.counts)

    def means(
        self, per_example: Float[torch.Tensor, "set example"]
    ) -> Float[torch.Tensor, "set resample"]:
        """Each set's mean over the examples of every resample."""
        counts = self.counts.to(per_example.device, per_example.dtype)
        return per_example @ counts.T / counts.shape[-1]

    def interval(
        self, values: Float[torch.Tensor, "set resample"]
    ) -> tuple[Float[torch.Tensor, " set"], Float[torch.Tensor, " set"]]:
        """The percentile interval of each row of resampled ``values`` (NaN stays NaN)."""
        tail = (1 - self.level) / 2
        q = torch.tensor([tail, 1 - tail], dtype=values.dtype, device=values.device)
        low, high = torch.nanquantile(values, q, dim=-1)
        return low, high

    def about(self) -> dict[str, float | int | str]:
        """summary.json's ``bootstrap``: how the intervals were made."""
        return {
            "resamples": len(self),
            "level": self.level,
            "seed": self.seed,
            "kind": "percentile",
        }


def resampled_auc(
    scores: Float[torch.Tensor, "set example"],
    positive: Bool[torch.Tensor, " example"],
    resamples: Resamples,
) -> Float[torch.Tensor, "set resample"]:
    """ROC AUC of each row of ``scores`` under every resample: the share of (positive,
    negative) pairs ordered correctly, ties at one half, each pair weighted by the product of
    its two examples' counts.

    Each row is sorted once; each resample's negative weight below and at most each score comes
    from one cumulative sum over that order. Memory: sets x resamples x examples floats, so
    meant for single heads and pairs, a few sets at a time."""
    order = scores.argsort(-1)
    ordered = scores.gather(-1, order) + 0.0  # + 0.0: -0.0 and 0.0 tie
    first, last = _tie_groups(ordered)
    counts = resamples.counts.to(scores.device).T[order].transpose(1, 2)  # [set resample ex.]
    is_positive = positive.to(scores.device)[order][:, None]  # [set 1 example]
    negative = torch.where(is_positive, 0.0, counts)
    cum = torch.nn.functional.pad(negative.cumsum(-1), (1, 0))  # below position p: cum[..., p]
    below = cum.gather(-1, first[:, None].expand(-1, len(resamples), -1))
    at_most = cum.gather(-1, last[:, None].expand(-1, len(resamples), -1) + 1)
    weight = torch.where(is_positive, counts, 0.0)
    pairs = (weight * (below + at_most) / 2).sum(-1)
    return pairs / (weight.sum(-1) * negative.sum(-1))


def _tie_groups(
    ordered: Float[torch.Tensor, "set example"],
) -> tuple[Int[torch.Tensor, "set example"], Int[torch.Tensor, "set example"]]:
    """For each position of sorted rows, the first and the last position holding its value."""
    n = ordered.shape[-1]
    position = torch.arange(n, device=ordered.device).expand_as(ordered)
    starts = torch.ones_like(ordered, dtype=torch.bool)
    starts[:, 1:] = ordered[:, 1:] != ordered[:, :-1]
    ends = torch.ones_like(starts)
    ends[:, :-1] = starts[:, 1:]
    first = torch.where(starts, position, 0).cummax(-1).values
    last = torch.where(ends, position, n).flip(-1).cummin(-1).values.flip(-1)
    return first, last
