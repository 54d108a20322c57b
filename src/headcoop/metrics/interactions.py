"""Interactions of heads: a metric measured on every set of heads read as a cooperative game.

A metric on all 2^n sets of heads (rows in `headcoop.metrics.subsets.all_subsets` order: set k
holds the heads whose bits k has; the empty set included) is a set function v. Its Harsanyi
dividends are its Möbius transform,

    m(S) = sum_{T subset of S} (-1)^(|S| - |T|) v(T),   so that   v(S) = sum_{T subset of S} m(T):

m({i}) is what head i adds alone, m({i, j}) what the pair adds beyond both heads (> 0: they
complement each other, they cooperate; < 0: each makes the other redundant, substitutes, as in
a pseudo-ensemble). From the dividends, exactly:

- the Shapley value of head i, phi_i = sum_{S containing i} m(S) / |S| (the phi_i sum to
  v(all) - v(none));
- the Banzhaf value of head i, sum_{S containing i} m(S) / 2^(|S| - 1) (every set weighted
  alike);
- the Shapley interaction index of a pair, sum_{S containing i, j} m(S) / (|S| - 1).

The fast Möbius transform is n passes over the 2^n values, each a vectorised subtraction: for
head i in turn, v(S) -= v(S without i) for every S containing i. Leading axes (metrics, models)
are carried along.
"""

import itertools
from dataclasses import dataclass
from typing import Any

import torch
from jaxtyping import Float

from headcoop.errors import HeadcoopError


def _n_heads(values: torch.Tensor) -> int:
    n = values.shape[-1].bit_length() - 1
    if values.shape[-1] != 2**n:
        raise HeadcoopError(f"a game has 2^n values, one per set of heads; got {values.shape[-1]}")
    return n


def _transform(values: torch.Tensor, sign: float) -> torch.Tensor:
    """The Möbius (``sign`` -1) or zeta (``sign`` +1) transform over the last axis."""
    out = values.clone()
    for head in range(_n_heads(values)):
        # [... higher bits, bit `head`, lower bits]: the sets without the head, then with it
        view = out.view(*out.shape[:-1], -1, 2, 2**head)
        view[..., 1, :] += sign * view[..., 0, :]
    return out


def dividends(values: Float[torch.Tensor, "*game subset"]) -> Float[torch.Tensor, "*game subset"]:
    """The Harsanyi dividend m(S) of every set, from the value v(S) of every set.

    >>> dividends(torch.tensor([0.0, 1.0, 1.0, 1.0])).tolist()  # either head alone suffices
    [0.0, 1.0, 1.0, -1.0]
    """
    return _transform(values.double(), -1.0)


def values_of(dividend: Float[torch.Tensor, "*game subset"]) -> Float[torch.Tensor, "*game subset"]:
    """v(S) = the sum of the dividends of S's subsets (the inverse of `dividends`)."""
    return _transform(dividend, 1.0)


def set_sizes(n_heads: int) -> torch.Tensor:
    """|S| of every set, in `all_subsets` order."""
    codes = torch.arange(2**n_heads)
    return ((codes[:, None] >> torch.arange(n_heads)) & 1).sum(-1)


def _members(n_heads: int) -> torch.Tensor:
    codes = torch.arange(2**n_heads)
    return ((codes[:, None] >> torch.arange(n_heads)) & 1).double()  # [subset head]


def shapley_values(
    dividend: Float[torch.Tensor, "*game subset"],
) -> Float[torch.Tensor, "*game head"]:
    """phi_i = sum over the sets S containing i of m(S) / |S|.

    >>> shapley_values(dividends(torch.tensor([0.0, 1.0, 1.0, 1.0]))).tolist()
    [0.5, 0.5]
    """
    n = _n_heads(dividend)
    size = set_sizes(n).double().clamp(min=1)
    return (dividend / size) @ _members(n)


def banzhaf_values(
    dividend: Float[torch.Tensor, "*game subset"],
) -> Float[torch.Tensor, "*game head"]:
    """The Banzhaf value: sum over the sets S containing i of m(S) / 2^(|S| - 1)."""
    n = _n_heads(dividend)
    weight = 2.0 ** (1 - set_sizes(n).double().clamp(min=1))
    return (dividend * weight) @ _members(n)


def pair_interactions(
    dividend: Float[torch.Tensor, "*game subset"],
) -> Float[torch.Tensor, "*game head head_"]:
    """The Shapley interaction index of every pair: sum over the sets S containing both of
    m(S) / (|S| - 1); the diagonal is zero."""
    n = _n_heads(dividend)
    size = set_sizes(n).double()
    weight = torch.where(size >= 2, 1.0 / (size - 1).clamp(min=1), 0.0)
    members = _members(n)
    out = torch.einsum("...s,si,sj->...ij", dividend * weight, members, members)
    return out * (1 - torch.eye(n, dtype=out.dtype))


def spectrum(
    dividend: Float[torch.Tensor, "*game subset"],
) -> tuple[Float[torch.Tensor, "*game size"], Float[torch.Tensor, "*game size"]]:
    """Per set size 0..n: the sum of the dividends and the sum of their absolute values."""
    n = _n_heads(dividend)
    by_size = torch.nn.functional.one_hot(set_sizes(n), n + 1).double()  # [subset size]
    return dividend @ by_size, dividend.abs() @ by_size


@dataclass(frozen=True)
class Interactions:
    """The interactions of several metrics measured on every set of heads.

    Attributes:
        metrics: the metrics' names (columns of the subsets table).
        dividend: each metric's Harsanyi dividend of every set.
        shapley, banzhaf: each metric's Shapley and Banzhaf value of every head.
        pairs: each metric's Shapley interaction index of every pair of heads.
    """

    metrics: tuple[str, ...]
    dividend: Float[torch.Tensor, "metric subset"]
    shapley: Float[torch.Tensor, "metric head"]
    banzhaf: Float[torch.Tensor, "metric head"]
    pairs: Float[torch.Tensor, "metric head head_"]

    @classmethod
    def of(cls, values: dict[str, Float[torch.Tensor, " subset"]]) -> "Interactions":
        """From each metric's value on every set (in `all_subsets` order)."""
        m = dividends(torch.stack([v.double().cpu() for v in values.values()]))
        return cls(tuple(values), m, shapley_values(m), banzhaf_values(m), pair_interactions(m))

    def spectrum(self) -> dict[str, dict[str, list[float]]]:
        """summary.json's ``interaction_spectrum``: per metric and set size, the sum of the
        dividends and the sum of their absolute values."""
        total, absolute = spectrum(self.dividend)
        return {
            name: {"sum": total[k].tolist(), "sum_abs": absolute[k].tolist()}
            for k, name in enumerate(self.metrics)
        }

    def frames(self) -> dict[str, Any]:
        """interactions (metric, heads, size, dividend: one row per set and metric), shapley
        (metric, head, shapley, banzhaf) and pair_interactions (metric, heads, interaction)."""
        import pandas as pd

        n = self.shapley.shape[-1]
        members = _members(n).bool()
        names = [" ".join(map(str, torch.nonzero(m).flatten().tolist())) for m in members]
        sizes, k = set_sizes(n).tolist(), len(self.metrics)
        pairs = list(itertools.combinations(range(n), 2))
        return {
            "interactions": pd.DataFrame(
                {
                    "metric": [name for name in self.metrics for _ in names],
                    "heads": names * k,
                    "size": sizes * k,
                    "dividend": self.dividend.flatten().tolist(),
                }
            ),
            "shapley": pd.DataFrame(
                {
                    "metric": [name for name in self.metrics for _ in range(n)],
                    "head": list(range(n)) * k,
                    "shapley": self.shapley.flatten().tolist(),
                    "banzhaf": self.banzhaf.flatten().tolist(),
                }
            ),
            "pair_interactions": pd.DataFrame(
                {
                    "metric": [name for name in self.metrics for _ in pairs],
                    "heads": [f"{i} {j}" for i, j in pairs] * k,
                    "interaction": [float(self.pairs[m, i, j]) for m in range(k) for i, j in pairs],
                }
            ),
        }
