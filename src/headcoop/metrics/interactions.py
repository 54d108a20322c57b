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

Above the all-sets limit the dividends are out of reach; the Shapley values and pair indices
are then estimated from sampled sets by shapiq's KernelSHAPIQ (`estimated_interactions`),
which is also the reference the exact transforms are tested against.
"""

import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from jaxtyping import Bool, Float

from headcoop.errors import HeadcoopError
from headcoop.metrics.subsets import pair_members, set_names


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
        dividend: each metric's Harsanyi dividend of every set (None where estimated).
        shapley, banzhaf: each metric's Shapley and Banzhaf value of every head (Banzhaf
            values NaN where estimated).
        pairs: each metric's Shapley interaction index of every pair of heads.
        about: how they were estimated, with the estimate's error (empty where exact).
    """

    metrics: tuple[str, ...]
    dividend: Float[torch.Tensor, "metric subset"] | None
    shapley: Float[torch.Tensor, "metric head"]
    banzhaf: Float[torch.Tensor, "metric head"]
    pairs: Float[torch.Tensor, "metric head head_"]
    about: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, values: dict[str, Float[torch.Tensor, " subset"]]) -> "Interactions":
        """From each metric's value on every set (in `all_subsets` order)."""
        m = dividends(torch.stack([v.double().cpu() for v in values.values()]))
        return cls(tuple(values), m, shapley_values(m), banzhaf_values(m), pair_interactions(m))

    @classmethod
    def from_frames(cls, frames: dict[str, Any], about: dict[str, Any]) -> "Interactions":
        """The interactions that `frames` wrote (shapley, pair_interactions and, where exact,
        interactions), ``about`` being the estimate's description (empty where exact)."""
        shapley = frames["shapley"]
        metrics = tuple(shapley["metric"].drop_duplicates())
        k = len(metrics)

        def table(frame: Any, column: str) -> torch.Tensor:
            return torch.tensor(frame[column].to_numpy(), dtype=torch.float64).view(k, -1)

        n = table(shapley, "shapley").shape[-1]
        pairs = frames["pair_interactions"]
        matrices = [pair_matrix(pairs[pairs["metric"] == m], n) for m in metrics]
        dividend = table(frames["interactions"], "dividend") if "interactions" in frames else None
        return cls(
            metrics,
            dividend,
            table(shapley, "shapley"),
            table(shapley, "banzhaf"),
            torch.stack(matrices) if matrices else torch.zeros(0, n, n, dtype=torch.float64),
            about,
        )

    def summary(self) -> dict[str, Any]:
        """summary.json's ``interaction_spectrum`` (per metric and set size, the sum of the
        dividends and the sum of their absolute values) where exact, else its
        ``interaction_estimate`` (how the estimate was made and its error)."""
        if self.dividend is None:
            return {"interaction_estimate": self.about}
        total, absolute = spectrum(self.dividend)
        by_metric = {
            name: {"sum": total[k].tolist(), "sum_abs": absolute[k].tolist()}
            for k, name in enumerate(self.metrics)
        }
        return {"interaction_spectrum": by_metric}

    def verdicts(self) -> Any:
        """Each metric's gain, mean pair interaction, cooperation index and verdict
        (`verdicts`, as the saved frames give them)."""
        frames = self._value_frames()
        return verdicts(frames["shapley"], frames["pair_interactions"])

    def frames(self) -> dict[str, Any]:
        """interactions (metric, heads, size, dividend: one row per set and metric; only where
        exact), shapley (metric, head, shapley, banzhaf) and pair_interactions (metric, heads,
        interaction)."""
        frames = {} if self.dividend is None else {"interactions": self._dividend_frame()}
        return frames | self._value_frames()

    def _value_frames(self) -> dict[str, Any]:
        """shapley and pair_interactions (without the dividends' one row per set)."""
        import pandas as pd

        n, k = self.shapley.shape[-1], len(self.metrics)
        pairs = list(itertools.combinations(range(n), 2))
        return {
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

    def _dividend_frame(self) -> Any:
        import pandas as pd

        n, k = self.shapley.shape[-1], len(self.metrics)
        names = set_names(_members(n).bool())
        return pd.DataFrame(
            {
                "metric": [name for name in self.metrics for _ in names],
                "heads": names * k,
                "size": set_sizes(n).tolist() * k,
                "dividend": self.dividend.flatten().tolist(),
            }
        )


ESTIMATOR = "shapiq.KernelSHAPIQ (index SII, order 2)"
"""What estimates Shapley values and pair interactions where not every set is measured."""

Measure = Callable[[Bool[torch.Tensor, "subset head"]], dict[str, Float[torch.Tensor, " subset"]]]
"""Every metric of each set of heads given as masks (one batched call for many sets)."""


def estimated_interactions(
    measure: Measure, n_heads: int, budget: int, seed: int = 0
) -> Interactions:
    """Shapley values and pair interactions of every metric that ``measure`` returns, estimated
    from about ``budget`` sets: two independent KernelSHAPIQ estimates of half the budget each
    (the sets both ask for are measured once, in one batch per half), averaged; half their
    difference, at its largest over heads and over pairs, is stated as the error."""
    half = min(budget // 2, 2**n_heads)
    halves = [_kernel_shapiq(measure, n_heads, half, seed + k) for k in (0, 1)]
    metrics = tuple(halves[0][0])
    shapley = [torch.stack([h[0][m] for m in metrics]) for h in halves]
    pairs = [torch.stack([h[1][m] for m in metrics]) for h in halves]
    gaps = {
        "shapley": ((shapley[0] - shapley[1]).abs() / 2).amax(-1),
        "pairs": ((pairs[0] - pairs[1]).abs() / 2).flatten(1).amax(-1),
    }
    error = {k: dict(zip(metrics, gap.tolist(), strict=True)) for k, gap in gaps.items()}
    about = {"estimator": ESTIMATOR, "sets": 2 * half, "seed": seed, "error": error}
    mean_shapley = (shapley[0] + shapley[1]) / 2
    return Interactions(
        metrics,
        None,
        mean_shapley,
        torch.full_like(mean_shapley, float("nan")),
        (pairs[0] + pairs[1]) / 2,
        about,
    )


def _kernel_shapiq(
    measure: Measure, n_heads: int, budget: int, seed: int
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """One KernelSHAPIQ estimate of every metric: the sets it samples are measured in one call,
    then each metric is read off that table (the sampler depends on the seed alone)."""
    import shapiq

    values: dict[bytes, dict[str, float]] = {}

    def game(metric: str) -> Callable[[np.ndarray], np.ndarray]:
        def value(coalitions: np.ndarray) -> np.ndarray:
            new = [c for c in coalitions if c.tobytes() not in values]
            if new:
                measured = measure(torch.from_numpy(np.stack(new)).bool())
                for k, c in enumerate(new):
                    values[c.tobytes()] = {m: float(v[k]) for m, v in measured.items()}
            return np.array([values[c.tobytes()][metric] for c in coalitions])

        return value

    first = measure(torch.zeros(1, n_heads, dtype=torch.bool))
    shapley, pairs = {}, {}
    for metric in first:
        approximator = shapiq.KernelSHAPIQ(n_heads, max_order=2, index="SII", random_state=seed)
        found = approximator.approximate(budget, game(metric))
        shapley[metric] = torch.tensor([found[(i,)] for i in range(n_heads)], dtype=torch.float64)
        pairs[metric] = torch.zeros(n_heads, n_heads, dtype=torch.float64)
        for i, j in itertools.combinations(range(n_heads), 2):
            pairs[metric][i, j] = pairs[metric][j, i] = found[(i, j)]
    return shapley, pairs


VERDICT_CUT = 1 / 3
"""`verdict`'s threshold on the cooperation index."""
FLAT_GAIN = 0.02
"""A metric that moves less than this from no heads to all heads has no cooperation index:
dividing by a gain within a few examples' worth of accuracy would only amplify noise."""


def cooperation_index(
    pairs: Float[torch.Tensor, "*game head head_"], gain: Float[torch.Tensor, "*game"]
) -> Float[torch.Tensor, "*game"]:
    """The mean Shapley interaction of a pair of heads, in units of |gain| / (n - 1), where
    the gain is v(all) - v(none).

    On it the reference games sit at fixed points whatever their size: -1 for a pure ensemble
    (any one head does all the work: v(S) = v(all) for every non-empty S), 0 for an additive
    game (each head adds its own share), +1 when only all heads together do the work. Its sign
    is the sign of the mean interaction. NaN where the metric does not move (|gain| below
    `FLAT_GAIN`).

    >>> n = 4  # a pure ensemble of four identical heads
    >>> v = torch.tensor([0.0] + [1.0] * (2**n - 1))
    >>> cooperation_index(pair_interactions(dividends(v)), v[-1] - v[0]).item()
    -1.0
    """
    n = pairs.shape[-1]
    upper = torch.triu(torch.ones(n, n, dtype=torch.bool), diagonal=1)
    mean = pairs[..., upper].mean(-1)
    gain = torch.as_tensor(gain, dtype=mean.dtype)
    return torch.where(gain.abs() >= FLAT_GAIN, mean * (n - 1) / gain.abs(), torch.nan)


def index_sets(n_heads: int) -> Bool[torch.Tensor, "set head"]:
    """The 2n + 2 sets whose values alone give the cooperation index (`index_of_values`): none,
    each head alone, each head left out, all."""
    eye = torch.eye(n_heads, dtype=torch.bool)
    none, every = (
        torch.zeros(1, n_heads, dtype=torch.bool),
        torch.ones(1, n_heads, dtype=torch.bool),
    )
    return torch.cat([none, eye, ~eye, every])


def index_of_values(values: Float[torch.Tensor, "*game set"]) -> Float[torch.Tensor, "*game"]:
    """`cooperation_index` from the values of the `index_sets` alone. The pairs' interactions
    sum to that of m(S) |S| / 2 over the sets of two heads or more, and the dividends'
    alternating sums reduce that weight to four terms of the values:

        sum_S m(S) |S| [|S| >= 2] = n v(all) - sum_i v(all but i) - sum_i v(i) + n v(none)

    (a pure ensemble gives -n, an additive game 0, the game of all heads together n)."""
    n = (values.shape[-1] - 2) // 2
    none, singles = values[..., 0].double(), values[..., 1 : n + 1].double()
    left_out, every = values[..., n + 1 : 2 * n + 1].double(), values[..., -1].double()
    if n < 2:
        return torch.full(values.shape[:-1], torch.nan, dtype=torch.float64)
    total = n * every - left_out.sum(-1) - singles.sum(-1) + n * none
    mean = total / 2 / math.comb(n, 2)
    gain = every - none
    return torch.where(gain.abs() >= FLAT_GAIN, mean * (n - 1) / gain.abs(), torch.nan)


def verdict(index: float) -> str:
    """'substitutes' (index <= -1/3: the heads make each other redundant, a pseudo-ensemble),
    'complements' (index >= 1/3: they do together what they do not alone), 'mixed' between,
    'flat' where the metric does not move."""
    if index != index:  # NaN
        return "flat"
    if index <= -VERDICT_CUT:
        return "substitutes"
    return "complements" if index >= VERDICT_CUT else "mixed"


def pair_matrix(pairs: Any, n_heads: int) -> Float[torch.Tensor, "head head_"]:
    """One metric's rows of a saved pair_interactions.csv frame as the symmetric matrix of
    `pair_interactions` (zero diagonal)."""
    matrix = torch.zeros(n_heads, n_heads, dtype=torch.float64)
    i, j = pair_members(list(pairs["heads"]), n_heads).T
    values = torch.tensor(pairs["interaction"].to_numpy(), dtype=torch.float64)
    matrix[i, j] = matrix[j, i] = values
    return matrix


def verdicts(shapley: Any, pairs: Any) -> Any:
    """Per metric of saved shapley.csv and pair_interactions.csv frames: the gain v(all) -
    v(none) (the sum of the Shapley values, by efficiency), the mean pair interaction, the
    `cooperation_index` and its `verdict`."""
    import pandas as pd

    rows = []
    for metric, group in pairs.groupby("metric", sort=False):
        n = int((shapley["metric"] == metric).sum())
        gain = float(shapley.loc[shapley["metric"] == metric, "shapley"].sum())
        matrix = pair_matrix(group, n)
        index = cooperation_index(matrix, torch.tensor(gain, dtype=torch.float64)).item()
        mean = float(group["interaction"].mean())
        rows.append([metric, gain, mean, index, verdict(index)])
    columns = ["metric", "gain", "mean_pair_interaction", "cooperation_index", "verdict"]
    return pd.DataFrame(rows, columns=columns)
