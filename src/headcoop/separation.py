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
    """Newton's method from ``start`` (zero if None) to each set's exact optimum.

    Sets that reach their optimum leave the working arrays, which shrink as the loop runs.
    """
    n_sets, n_features = keep.shape
    eye = torch.eye(n_features, dtype=torch.float64)
    result = torch.zeros(n_sets, n_features, dtype=torch.float64)
    rows = torch.arange(n_sets)  # which set each working row is
    keep_f = keep.double()
    w = result.clone() if start is None else start.clone()
    margins = (w @ features.T) * signs  # [row example]
    active = margins < 1
    gram = active.double() @ outer  # each row's active examples' Gram, flattened
    for _ in range(max_iter):
        on = keep_f[:, :, None] * keep_f[:, None, :]
        residual = torch.where(active, margins - 1, 0.0) * signs  # half the loss's slope in x.w
        grad = (w + 2 * C * residual @ features) * keep_f
        # Off-mask rows and columns of the Hessian are the identity: those weights stay zero.
        hessian = (eye + 2 * C * gram.view(-1, n_features, n_features)) * on + eye * (1 - on)
        step = torch.linalg.solve(hessian, grad[..., None])[..., 0]
        step_margins = (step @ features.T) * signs  # [row example]
        alpha = _line_search(w, step, 1 - margins, step_margins, C)
        w = w - alpha[:, None] * step
        margins = margins - alpha[:, None] * step_margins
        new_active = margins < 1
        changes = new_active != active
        if changes.double().mean() > 0.05:  # many changes: rebuild the Gram densely
            gram = new_active.double() @ outer
        else:
            delta = new_active.double() - active.double()
            gram = gram + torch.sparse.mm(delta.to_sparse(), outer)
        active = new_active
        # A full Newton step that leaves the active set unchanged lands on the optimum.
        done = ~changes.any(-1) & (alpha == 1)
        result[rows[done]] = w[done]
        if done.all():
            return result
        live = ~done
        rows, w, margins, active, gram, keep_f = (
            t[live] for t in (rows, w, margins, active, gram, keep_f)
        )
    result[rows] = w
    return result


def _line_search(
    w: Float[torch.Tensor, "row feature"],
    step: Float[torch.Tensor, "row feature"],
    slack: Float[torch.Tensor, "row example"],
    step_slack: Float[torch.Tensor, "row example"],
    C: float,
) -> Float[torch.Tensor, " row"]:
    """A step length for each row: 1 (Newton's full step) unless the objective already rises
    at 1, else the exact minimiser in (0, 1).

    Along the step the objective is the convex piecewise quadratic
    ``1/2 |w - a d|^2 + C sum max(0, slack + a step_slack)^2``, whose slope is increasing and
    piecewise linear; safeguarded Newton steps on the slope find its zero in a few passes.
    """
    wd, dd = (w * step).sum(-1), (step * step).sum(-1)

    def slope_and_curvature(alpha, rows):
        s = slack[rows] + alpha[:, None] * step_slack[rows]
        t = step_slack[rows] * (s > 0)
        slope = alpha * dd[rows] - wd[rows] + 2 * C * (t * s).sum(-1)
        return slope, dd[rows] + 2 * C * (t * step_slack[rows]).sum(-1)

    alpha = torch.ones_like(wd)
    slope, curvature = slope_and_curvature(alpha, slice(None))
    # Where the slope at 1 is positive beyond rounding, the full step overshoots: search (0, 1).
    rows = torch.nonzero(slope > 1e-9 * curvature).flatten()
    lo, hi, a = torch.zeros(len(rows), dtype=wd.dtype), alpha[rows], alpha[rows]
    slope, curvature = slope[rows], curvature[rows]
    for _ in range(30):
        newton = a - slope / curvature
        a = torch.where((newton > lo) & (newton < hi), newton, (lo + hi) / 2)
        alpha[rows] = a
        slope, curvature = slope_and_curvature(a, rows)
        searching = slope.abs() > 1e-9 * curvature * a
        if not searching.any():
            break
        lo = torch.where(slope <= 0, a, lo)[searching]
        hi = torch.where(slope > 0, a, hi)[searching]
        rows, a, slope, curvature = (t[searching] for t in (rows, a, slope, curvature))
    return alpha


def _features(x: Float[torch.Tensor, "example head_index d_head"]) -> torch.Tensor:
    """Concatenated head outputs and a constant 1 (the intercept), in float64."""
    flat = x.flatten(1).double()
    return torch.cat([flat, torch.ones(len(flat), 1, dtype=torch.float64)], dim=1)
