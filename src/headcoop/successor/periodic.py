"""Periodic (mod-k) features of the number tokens, their importance to successor heads, and
steering by vector arithmetic with them.

Three ways of finding directions in what a head reads for the numbers 0..N-1:

- ``svd``: the top right singular vectors of the centred inputs;
- ``probe``: a linear probe (multinomial logistic regression) of n mod k, one direction per
  residue;
- ``dictionary``: a small sparse dictionary, an autoencoder with an L1 penalty on its
  non-negative codes, trained with torch; its decoder rows are the features.

A feature's *residue share* for modulus k is how much of its activation's energy one residue
class carries: max over r of sum_{n = r mod k} a_n^2 / sum_n a_n^2, with a_n the feature's
activation on number n (centred over the numbers for the signed directions of the SVD and the
probe; the non-negative codes themselves for the dictionary). A feature blind to the residue
has a share near 1/k; an indicator of one residue class mod 10, about 0.9. k is *present* in a
feature when the share is at least halfway from 1/k to 1.

Steering uses the residue means f_r (the mean input of the numbers n = r mod k, less the
mean of all): replacing an item's input x by x - f_(x mod k) + f_j should make a successor
head answer the successor of the item with its residue changed to j (23 steered to 27 answers
28). The control replaces f_(x mod k) and f_j by random directions of the same norms.
"""

from typing import Any

import torch
from jaxtyping import Float

from headcoop.compat import Model
from headcoop.heads.succession import domain_scores, effective_ov, head_inputs

MODULI = (2, 5, 7, 10, 12)


def residue_shares(
    activations: Float[torch.Tensor, "feature number"], k: int
) -> Float[torch.Tensor, " feature"]:
    """The share of each feature's activation energy carried by its strongest residue class
    mod k.

    >>> residue_shares(torch.tensor([[1.0, 0.0, 1.0, 0.0], [1.0, 1.0, 1.0, 1.0]]), 2).tolist()
    [1.0, 0.5]
    """
    magnitude = activations.pow(2)
    residues = torch.arange(activations.shape[1]) % k
    by_class = torch.zeros(len(magnitude), k).index_add_(1, residues, magnitude)
    return by_class.amax(1) / magnitude.sum(1).clamp(min=1e-12)


def present(share: Float[torch.Tensor, " feature"], k: int) -> torch.Tensor:
    """Whether the share is at least halfway from chance (1/k) to 1."""
    return share >= (1 + 1 / k) / 2


def svd_features(x: Float[torch.Tensor, "number d_model"], n: int = 8) -> torch.Tensor:
    """The top ``n`` right singular vectors of the centred inputs, one a row."""
    _, _, v = torch.linalg.svd(x - x.mean(0), full_matrices=False)
    return v[:n]


def probe_features(x: Float[torch.Tensor, "number d_model"], k: int) -> torch.Tensor:
    """The directions of a multinomial logistic probe of n mod k, one per residue (rows)."""
    from sklearn.linear_model import LogisticRegression

    labels = torch.arange(len(x)) % k
    probe = LogisticRegression(C=10.0, max_iter=2000).fit(x.double().numpy(), labels.numpy())
    return torch.tensor(probe.coef_, dtype=x.dtype)


def dictionary_features(
    x: Float[torch.Tensor, "number d_model"], n: int = 32, l1: float = 3e-3, steps: int = 2000
) -> torch.Tensor:
    """Decoder rows of a sparse autoencoder (ReLU codes, L1 penalty, unit-norm decoder)
    trained on the centred inputs; seeded, so the same inputs give the same features."""
    gen = torch.Generator().manual_seed(0)
    data = (x - x.mean(0)).detach()
    scale = data.norm(dim=1).mean()
    data = data / scale
    encoder = (torch.randn(data.shape[1], n, generator=gen) * 0.1).requires_grad_(True)
    bias = torch.zeros(n, requires_grad=True)
    decoder = torch.randn(n, data.shape[1], generator=gen).requires_grad_(True)
    optimizer = torch.optim.Adam([encoder, bias, decoder], lr=1e-2)
    for _ in range(steps):
        unit = decoder / decoder.norm(dim=1, keepdim=True)
        codes = torch.relu(data @ encoder + bias)
        loss = (codes @ unit - data).pow(2).sum(1).mean() + l1 * codes.sum(1).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return (decoder / decoder.norm(dim=1, keepdim=True)).detach()


def find_features(x: Float[torch.Tensor, "number d_model"]) -> dict[str, torch.Tensor]:
    """The features of the three methods (one a row), by method."""
    found = {"svd": svd_features(x), "dictionary": dictionary_features(x)}
    return found | {f"probe mod {k}": probe_features(x, k) for k in (2, 5, 10)}


def feature_table(
    x: Float[torch.Tensor, "number d_model"],
    found: dict[str, torch.Tensor] | None = None,
    moduli: tuple[int, ...] = MODULI,
) -> list[dict[str, Any]]:
    """Every feature (of `find_features` by default) with its residue share for each modulus,
    the best one, and whether it is present."""
    centred = x - x.mean(0)
    found = find_features(x) if found is None else found
    rows = []
    for method, features in found.items():
        activations = features @ centred.T  # [feature number]
        if method == "dictionary":
            activations = activations.clamp(min=0)  # what the codes can carry
        shares = {k: residue_shares(activations, k) for k in moduli}
        for f in range(len(features)):
            best = max(moduli, key=lambda k: (shares[k][f] - 1 / k) / (1 - 1 / k))
            row = {"method": method, "feature": f, "best_k": best}
            row |= {f"share_mod_{k}": float(shares[k][f]) for k in moduli}
            row["present"] = bool(present(shares[best][f : f + 1], best)[0])
            rows.append(row)
    return rows


def residue_means(x: Float[torch.Tensor, "number d_model"], k: int) -> torch.Tensor:
    """f_r: the mean input of the numbers n = r mod k, less the mean of all (rows r)."""
    residues = torch.arange(len(x)) % k
    means = torch.stack([x[residues == r].mean(0) for r in range(k)])
    return means - x.mean(0)


@torch.no_grad()
def ablation_importance(
    model: Model,
    number_ids: torch.Tensor,
    features: Float[torch.Tensor, "feature d_model"],
    path: tuple[tuple[int, int], ...],
) -> list[float]:
    """For each feature: the drop in the path's succession score on the numbers when the
    feature's direction is projected out of every number's input."""
    x = head_inputs(model, number_ids)
    base = _number_score(model, x, number_ids, path)
    drops = []
    for feature in features:
        unit = feature / feature.norm()
        ablated = x - (x @ unit)[:, None] * unit
        drops.append(base - _number_score(model, ablated, number_ids, path))
    return drops


def _number_score(model: Model, x: torch.Tensor, ids: torch.Tensor, path: tuple) -> float:
    logits = effective_ov(model, x, ids, path).AB
    return float(domain_scores(logits, cyclic=False).mean())


@torch.no_grad()
def steer(
    model: Model,
    number_ids: torch.Tensor,
    path: tuple[tuple[int, int], ...],
    k: int = 10,
    seed: int = 0,
) -> dict[str, float]:
    """Success of x -> x - f_(n mod k) + f_j over every number n and residue j != n mod k whose
    edited number m = n - (n mod k) + j has a successor: the path's top answer is m + 1.
    Beside it the control with random directions of the same norms."""
    x = head_inputs(model, number_ids)
    count = len(number_ids)
    means = residue_means(x, k)
    n = torch.arange(count).repeat_interleave(k)
    j = torch.arange(k).repeat(count)
    r = n % k
    m = n - r + j
    keep = (j != r) & (m < count - 1)
    n, j, r, m = n[keep], j[keep], r[keep], m[keep]
    gen = torch.Generator().manual_seed(seed)
    random_out = torch.randn(len(n), x.shape[1], generator=gen)
    random_into = torch.randn(len(n), x.shape[1], generator=gen)

    def resized(directions: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        return directions / directions.norm(dim=1, keepdim=True) * like.norm(dim=1, keepdim=True)

    edits = {
        "features": x[n] - means[r] + means[j],
        "random": x[n] - resized(random_out, means[r]) + resized(random_into, means[j]),
    }
    rates = {}
    for name, edited in edits.items():
        answers = effective_ov(model, edited, number_ids, path).AB.argmax(-1)
        rates[name] = float((answers == m + 1).float().mean())
    return rates | {"pairs": len(n)}
