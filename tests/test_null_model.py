"""The null model of independent heads on games built by hand: copies of one head are
substitutes beyond the null, heads that each see half the input complements, heads with
independent noise are the null."""

import pytest
import torch

from headcoop.metrics.attribution import LogitDecomposition
from headcoop.metrics.bootstrap import Resamples
from headcoop.metrics.interactions import index_of_values, index_sets
from headcoop.metrics.null_model import (
    AS_INDEPENDENT,
    excess,
    excess_verdict,
    independent_heads,
    null_indices,
    within_class_permutations,
)
from headcoop.metrics.subsets import learned_accuracy, logit_metrics

N = 4000
TOKENS = torch.tensor([0, 1])


def _parts(terms: torch.Tensor) -> LogitDecomposition:
    """A one-readout decomposition whose heads add ``terms`` [head example] to token 1's logit
    (token 0's stays at zero), without biases or a normalization."""
    n = terms.shape[1]
    heads = torch.zeros(n, 1, len(terms), 2)
    heads[:, 0, :, 1] = terms.T
    zeros, ones = torch.zeros(n, 1, 2), torch.ones(n, 1)
    return LogitDecomposition(
        heads, zeros, torch.zeros(2), torch.zeros(2), ones, None, None, None, 0.0
    )


def _verdict(parts: LogitDecomposition, classes: torch.Tensor) -> tuple[float, float, str]:
    """The game's measured index less its null, with the excess's interval and verdict."""

    def games(masks, reader):
        return {"l_acc": learned_accuracy(reader, masks, classes, 0, TOKENS)}

    resamples = Resamples.draw(N, 200, seed=0)
    masks = index_sets(parts.heads.shape[2])
    found = logit_metrics(parts.head_only, masks, classes, 0, TOKENS, False, resamples)
    resampled = index_of_values(found.l_acc_resampled.T)
    null = null_indices(parts, classes, games, len(resamples))["l_acc"]
    low, high = resamples.interval(excess(resampled, null).double()[None])
    measured = index_of_values(found.l_acc).item()
    return measured - null.mean().item(), float(low), excess_verdict(float(low), float(high))


def _noise(*shape, seed: int) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


CLASSES = (torch.arange(N) % 2).long()
SIGNAL = 2.0 * CLASSES - 1  # +1 for class 1, -1 for class 0


def test_copies_of_one_head_are_substitutes_beyond_the_null():
    shared = _noise(N, seed=1)
    terms = (0.5 * SIGNAL + shared).expand(4, N)  # four identical heads
    gap, _, verdict = _verdict(_parts(terms), CLASSES)
    assert gap < -0.2 and verdict == "substitutes"


def test_heads_that_each_see_half_the_input_are_complements_beyond_the_null():
    a, b = _noise(N, seed=2), _noise(N, seed=3)
    classes = (a + b > 0).long()
    gap, low, verdict = _verdict(_parts(torch.stack([a, b])), classes)
    assert gap > 0.2 and low > 0 and verdict == "complements"


def test_heads_with_independent_noise_are_the_null():
    terms = 0.5 * SIGNAL + _noise(4, N, seed=4)
    gap, _, verdict = _verdict(_parts(terms), CLASSES)
    assert abs(gap) < 0.05 and verdict == AS_INDEPENDENT


def test_a_null_draw_keeps_each_heads_values_within_each_class():
    classes = torch.tensor([0, 1, 0, 1, 0, 1, 1])
    perms = within_class_permutations(classes, 3, seed=0)
    assert (classes[perms] == classes).all()
    assert all(sorted(p.tolist()) == list(range(7)) for p in perms)
    terms = torch.arange(21.0).view(3, 7)
    moved = independent_heads(_parts(terms), perms).heads[:, 0, :, 1].T
    assert torch.equal(moved, terms.gather(1, perms))


@pytest.mark.parametrize(
    ("low", "high", "verdict"),
    [(-0.3, -0.1, "substitutes"), (0.1, 0.2, "complements"), (-0.1, 0.1, AS_INDEPENDENT)],
)
def test_the_excess_verdict_reads_the_interval(low, high, verdict):
    assert excess_verdict(low, high) == verdict
