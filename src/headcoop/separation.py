"""Separation accuracy (s-acc): how well a linear separator splits the classes, given only the
outputs of a set of heads. Many sets of heads are fitted at once.

The separator is scikit-learn's ``LinearSVC(C=1000)`` problem (squared hinge loss, L2 penalty,
the intercept a feature of value 1 that is penalised too, as in liblinear):

    min_w  1/2 |w|^2 + C sum_n max(0, 1 - y_n x_n . w)^2

It is convex and piecewise quadratic, so Newton's method with the current set of margin
violators ("active" examples) reaches the exact optimum in a few steps: once a step leaves the
active set unchanged, the gradient is zero. Every set of heads is the same problem on the full
feature vector with the other heads' features held at zero, so a whole batch of sets shares one
set of tensors. The Hessian needs each set's Gram matrix over its active examples; it is built
once for all examples and then updated only for the examples whose status changed, which after
the first steps are few.
"""

import torch
from jaxtyping import Bool, Float
from tqdm.auto import tqdm

SET_CHUNK = 2048
"""Sets of heads fitted together (bounds memory: about 100 MB at 7,000 examples)."""


def separation_accuracy(
    train_x: Float[torch.Tensor, "example head_index d_head"],
    train_y: Bool[torch.Tensor, " example"],
    test_x: Float[torch.Tensor, "test_example head_index d_head"],
    test_y: Bool[torch.Tensor, " test_example"],
    masks: Bool[torch.Tensor, "subset head_index"],
    C: float = 1000.0,
    max_iter: int = 100,
    progress: bool = False,
) -> Float[torch.Tensor, " subset"]:
    """s-acc of each set of heads: fit on the train outputs, accuracy on the test outputs.

    Args:
        train_x, test_x: head outputs O_i at the decision position.
        train_y, test_y: the class of each example.
        masks: the sets of heads, one per row.
        C: the inverse regularisation strength.
        max_iter: Newton steps at most (the exact optimum usually takes under 20).
        progress: show a progress bar over batches of sets.
    """
    weights = fit_separators(train_x, train_y, masks, C, max_iter, progress)
    test = _features(test_x)
    signs = torch.where(test_y, 1.0, -1.0).double()
    return ((weights @ test.T) * signs > 0).float().mean(-1)


def fit_separators(
    x: Float[torch.Tensor, "example head_index d_head"],
    y: Bool[torch.Tensor, " example"],
    masks: Bool[torch.Tensor, "subset head_index"],
    C: float = 1000.0,
    max_iter: int = 100,
    progress: bool = False,
) -> Float[torch.Tensor, "subset feature"]:
    """The optimal (w, intercept) of each set of heads; zero on the features of other heads."""
    features = _features(x)  # [example feature]
    signs = torch.where(y, 1.0, -1.0).double()
    d_head = x.shape[-1]
    keep = torch.cat(
        [masks.repeat_interleave(d_head, dim=1), torch.ones(len(masks), 1, dtype=torch.bool)], dim=1
    )  # [subset feature]
    outer = torch.einsum("ef,eg->efg", features, features).flatten(1)  # [example feature^2]
    # A warm start from a subsample leaves only a few steps on all the examples.
    sample = torch.randperm(len(y), generator=torch.Generator().manual_seed(0))[: len(y) // 8]
    fitted = []
    for chunk in tqdm(keep.split(SET_CHUNK), desc="s-acc", disable=not progress, unit="chunk"):
        start = _newton(features[sample], signs[sample], outer[sample], chunk, C, max_iter, None)
        fitted.append(_newton(features, signs, outer, chunk, C, max_iter, start))
    return torch.cat(fitted)


def _newton(
    features: Float[torch.Tensor, "example feature"],
    signs: Float[torch.Tensor, " example"],
    outer: Float[torch.Tensor, "example feature_sq"],
    keep: Bool[torch.Tensor, "subset feature"],
    C: float,
    max_iter: int,
    start: Float[torch.Tensor, "subset feature"] | None,
) -> Float[torch.Tensor, "subset feature"]:
    """Newton's method from ``start`` (zero if None) to each set's exact optimum."""
    n_sets, n_features = keep.shape
    eye = torch.eye(n_features, dtype=torch.float64)
    keep_f = keep.double()
    on = keep_f[:, :, None] * keep_f[:, None, :]  # [subset feature feature]
    w = torch.zeros(n_sets, n_features, dtype=torch.float64) if start is None else start.clone()
    margins = (w @ features.T) * signs  # [subset example]
    active = margins < 1
    gram = active.double() @ outer  # the active examples' Gram, flattened
    live = torch.arange(n_sets)  # sets not yet at their optimum
    for _ in range(max_iter):
        if len(live) == 0:
            break
        w_l, m_l, a_l, k_l, on_l = w[live], margins[live], active[live], keep_f[live], on[live]
        residual = torch.where(a_l, m_l - 1, 0.0) * signs  # half the loss's slope in x.w
        grad = (w_l + 2 * C * residual @ features) * k_l
        # Off-mask rows and columns of the Hessian are the identity: those weights stay zero.
        hessian = (eye + 2 * C * gram[live].view(-1, n_features, n_features)) * on_l
        hessian = hessian + eye * (1 - on_l)
        step = torch.linalg.solve(hessian, grad[..., None])[..., 0]
        step_margins = (step @ features.T) * signs  # [live example]
        alpha = _line_search(w_l, step, m_l, step_margins, C)
        w[live] = w_l - alpha[:, None] * step
        m_l = m_l - alpha[:, None] * step_margins
        margins[live] = m_l
        new_active = m_l < 1
        changes = new_active != a_l
        if changes.double().mean() > 0.05:  # many changes: rebuild the Gram densely
            gram[live] = new_active.double() @ outer
        else:
            delta = (new_active.double() - a_l.double()).to_sparse()
            gram[live] = gram[live] + torch.sparse.mm(delta, outer)
        active[live] = new_active
        # A full Newton step that leaves the active set unchanged lands on the optimum.
        live = live[changes.any(-1) | (alpha < 1)]
    return w


def _line_search(
    w: Float[torch.Tensor, "subset feature"],
    step: Float[torch.Tensor, "subset feature"],
    margins: Float[torch.Tensor, "subset example"],
    step_margins: Float[torch.Tensor, "subset example"],
    C: float,
) -> Float[torch.Tensor, " subset"]:
    """The largest of 1, 1/2, 1/4, ... that does not raise each set's objective (Newton's full
    step almost always qualifies)."""

    def objective(alpha: torch.Tensor) -> torch.Tensor:
        slack = (1 - (margins - alpha[:, None] * step_margins)).clamp(min=0)
        w_new = w - alpha[:, None] * step
        return 0.5 * w_new.pow(2).sum(-1) + C * slack.pow(2).sum(-1)

    current = objective(torch.zeros(len(w), dtype=torch.float64))
    alpha = torch.ones(len(w), dtype=torch.float64)
    for _ in range(20):
        worse = objective(alpha) > current * (1 + 1e-12)
        if not worse.any():
            break
        alpha = torch.where(worse, alpha / 2, alpha)
    return alpha


def _features(x: Float[torch.Tensor, "example head_index d_head"]) -> torch.Tensor:
    """Concatenated head outputs and a constant 1 (the intercept), in float64."""
    flat = x.flatten(1).double()
    return torch.cat([flat, torch.ones(len(flat), 1, dtype=torch.float64)], dim=1)
