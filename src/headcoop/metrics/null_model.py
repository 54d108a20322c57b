"""A null model of independent heads: how much of a game's cooperation index saturation alone
explains.

A metric that saturates (single heads already near 1) leans towards "substitutes" whatever the
heads share. The null keeps each head's own behaviour and the class it answers, and removes
everything else the heads share: each head's contribution is permuted among the test examples
of the same class, independently per head. Under the paper's definition a set's logits are a
sum of head terms (plus constants), so the permuted terms give the null game exactly
(`LogitDecomposition.head_only` of `independent_heads`); s-acc fits a separator to the heads'
outputs together, and other definitions recompute the model around the set, so no such null
applies to them and none is given.

The excess, measured index minus null index, is what the heads' interplay adds beyond
independent heads of the same strength: substitutes where its interval lies below zero,
complements above, "as independent heads" where it holds zero (`excess_verdict`).
"""

from collections.abc import Callable
from dataclasses import replace

import torch
from jaxtyping import Bool, Float, Int

from headcoop.metrics.attribution import LogitDecomposition, SetReader
from headcoop.metrics.interactions import index_of_values, index_sets

NULL_DRAWS = 20
"""Draws of independent heads per game. The null's spread over draws is far below the test
split's (a tenth on the paper's model), so a few suffice; the excess pairs resample b with
draw b mod `NULL_DRAWS`."""
AS_INDEPENDENT = "as independent heads"
"""The excess verdict where the excess's interval holds zero."""


def within_class_permutations(
    classes: Int[torch.Tensor, " example"], n_heads: int, seed: int
) -> Int[torch.Tensor, "head example"]:
    """For each head, a permutation of the examples that maps each example to one of the same
    class, drawn independently per head (from ``seed``)."""
    generator = torch.Generator().manual_seed(seed)
    perms = torch.empty(n_heads, len(classes), dtype=torch.long)
    for c in classes.unique():
        members = torch.nonzero(classes == c).flatten()
        shuffled = torch.argsort(torch.rand(n_heads, len(members), generator=generator), dim=-1)
        perms[:, members] = members[shuffled]
    return perms


def independent_heads(
    parts: LogitDecomposition, perms: Int[torch.Tensor, "head example"]
) -> LogitDecomposition:
    """``parts`` with head i's term at example x taken from example ``perms[i, x]``: under the
    paper's definition (`LogitDecomposition.head_only`, which divides every term by the
    example's scale) each head then contributes z_i(perms[i, x]) exactly."""
    heads = parts.heads  # [example read head d_vocab]
    head = torch.arange(heads.shape[2])[:, None]  # [head 1]
    taken = heads.permute(2, 0, 1, 3)[head, perms]  # [head example read d_vocab]
    rescale = parts.scale[None] / parts.scale[perms]  # [head example read]
    moved = (taken * rescale[..., None]).permute(1, 2, 0, 3)
    return replace(parts, heads=moved, linear=False)


Games = Callable[
    [Bool[torch.Tensor, "set head_index"], SetReader], dict[str, Float[torch.Tensor, " set"]]
]
"""What a null draw measures: each game's value on some sets, from a reader of their logits."""


def null_indices(
    parts: LogitDecomposition,
    classes: Int[torch.Tensor, " example"],
    games: Games,
    draws: int,
) -> dict[str, Float[torch.Tensor, " draw"]]:
    """The cooperation index of each of ``games`` on ``draws`` draws of independent heads
    (draw k from seed k), from the values of the `index_sets` alone."""
    n_heads = parts.heads.shape[2]
    masks, found = index_sets(n_heads), {}
    for draw in range(draws):
        perms = within_class_permutations(classes, n_heads, seed=draw)
        for name, values in games(masks, independent_heads(parts, perms).head_only).items():
            found.setdefault(name, []).append(index_of_values(values))
    return {name: torch.stack(values) for name, values in found.items()}


def excess(
    resampled: Float[torch.Tensor, " resample"], null: Float[torch.Tensor, " draw"]
) -> Float[torch.Tensor, " resample"]:
    """The excess under each resample: the resampled index less the null index of the draw of
    the same number (so its spread holds both the test split's and the permutations')."""
    return resampled - null[torch.arange(len(resampled)) % len(null)]


def excess_verdict(low: float | None, high: float | None) -> str | None:
    """The verdict read from the excess's interval: substitutes below zero, complements above,
    `AS_INDEPENDENT` where it holds zero (None where not measured)."""
    if low is None or high is None:
        return None
    if high < 0:
        return "substitutes"
    return "complements" if low > 0 else AS_INDEPENDENT
