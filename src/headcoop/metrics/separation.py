"""Separation accuracy (s-acc): how well a linear separator splits the classes, given only the
outputs of a set of heads. Many sets of heads are fitted at once.

The separator is scikit-learn's ``LinearSVC(C=1000)`` problem (squared hinge loss, L2 penalty,
the intercept a feature of value 1 that is penalised too, as in liblinear):

    min_w  1/2 |w|^2 + C sum_n max(0, 1 - y_n x_n . w)^2

It is convex and piecewise quadratic, so Newton's method with the current set of margin
violators ("active" examples) reaches the exact optimum in a few steps: once a step leaves the
active set unchanged, the gradient is zero. Every set of heads is the same problem on the full
feature vector with the other heads' features held at zero. On the CPU the sets of one model
are solved one at a time down the tree of sets (`headcoop.metrics.svm_tree`); elsewhere a whole
batch of sets shares one set of tensors (`_Shared`). Heads of different models each bring
their own features (`_Own`), solved in batches on any device.
"""

from collections.abc import Callable

import torch
from jaxtyping import Bool, Float, Int

from headcoop.errors import HeadcoopError
from headcoop.metrics.bootstrap import Resamples
from headcoop.metrics.classes import highest
from headcoop.metrics.subsets import check_masks
from headcoop.metrics.svm_tree import fit_tree
from headcoop.progress import progress_bar

CHUNK_ELEMENTS = 4_000_000
"""Problems are fitted in batches whose [problem, example] arrays hold about this many numbers
(about 500 sets at 7,000 examples): small enough to stay fast in cache, large enough to keep
the per-batch overhead low."""


SCORE_CHUNK = 4096
"""Problems whose test scores are computed together."""


def _chunk_size(n_examples: int) -> int:
    return max(64, CHUNK_ELEMENTS // n_examples)


def separation_accuracy(
    train_x: Float[torch.Tensor, "example head_index d_head"],
    train_labels: Int[torch.Tensor, " example"],
    test_x: Float[torch.Tensor, "test_example head_index d_head"],
    test_labels: Int[torch.Tensor, " test_example"],
    masks: Bool[torch.Tensor, "subset head_index"],
    C: float = 1000.0,
    max_iter: int = 100,
    progress: bool = False,
    resamples: Resamples | None = None,
) -> Float[torch.Tensor, " subset"] | tuple[Float[torch.Tensor, " subset"], torch.Tensor]:
    """s-acc of each set of heads: fit on the train outputs, accuracy on the test outputs.

    Labels are class indices. Two classes give one separator; more give one per class against
    the rest, and the prediction is the class whose separator scores highest (LinearSVC's
    one-vs-rest convention). As in LinearSVC, the classes are those present in training.

    Args:
        train_x, test_x: head outputs O_i at the decision position.
        train_labels, test_labels: the class of each example.
        masks: the sets of heads, one per row.
        C: the inverse regularisation strength.
        max_iter: Newton steps at most (the exact optimum usually takes under 20).
        progress: show a progress bar over batches of sets.
        resamples: bootstrap resamples of the test split; given, the result is the s-acc and
            each set's s-acc under every resample [subset resample], the separators fitted
            once (`headcoop.metrics.bootstrap`).

    Runs on the device of ``train_x``, in float64 (the Newton systems are ill-conditioned
    where classes are nearly separable).
    """
    _check_problems(train_x, train_labels, test_x, test_labels)
    check_masks(masks, train_x.shape[1], "masks")
    train_labels, test_labels = train_labels.to(train_x.device), test_labels.to(train_x.device)
    test_features = _with_intercept(test_x.flatten(1))

    def fit(positive: Bool[torch.Tensor, " example"]) -> torch.Tensor:
        return fit_separators(train_x, positive, masks, C, max_iter, progress)

    def scores(weights: torch.Tensor, rows: slice) -> torch.Tensor:
        return weights @ test_features.T  # [subset test_example]

    if resamples is None:
        return _one_vs_rest_accuracy(fit, scores, train_labels, test_labels, len(masks))

    def with_resamples(hit: torch.Tensor) -> torch.Tensor:
        return torch.cat([hit.mean(-1, keepdim=True), resamples.means(hit)], dim=-1)

    found = _one_vs_rest_accuracy(
        fit, scores, train_labels, test_labels, len(masks), with_resamples
    )
    return found[:, 0], found[:, 1:]


LIBLINEAR = "_liblinear"
"""The suffix of s-acc's columns under the solver variant (``s_acc_liblinear``): LinearSVC's
defaults in place of our exact optimum. A parameter of s-acc, not a definition of set logits."""


def liblinear_s_acc(
    train_x: Float[torch.Tensor, "example head_index d_head"],
    train_labels: Int[torch.Tensor, " example"],
    test_x: Float[torch.Tensor, "test_example head_index d_head"],
    test_labels: Int[torch.Tensor, " test_example"],
    masks: Bool[torch.Tensor, "subset head_index"],
    C: float = 1000.0,
) -> Float[torch.Tensor, " subset"]:
    """s-acc as scikit-learn's ``LinearSVC(C=C)`` with its other defaults gives it, the fit
    the paper most likely ran: the same problem as `separation_accuracy`, but liblinear's
    solver stops at its iteration limit or tolerance, often short of the optimum on these
    problems (its convergence warnings are silenced: stopping early is the variant). One fit
    per set, so meant for single heads and pairs, not for all sets.
    """
    check_masks(masks, train_x.shape[1], "masks")
    train, test = train_x.double().cpu(), test_x.double().cpu()
    problems = [(train[:, m].flatten(1), test[:, m].flatten(1)) for m in masks.cpu()]
    return _liblinear(problems, train_labels, test_labels, C)


def liblinear_s_acc_each(
    train_x: Float[torch.Tensor, "problem example d_head"],
    train_labels: Int[torch.Tensor, " example"],
    test_x: Float[torch.Tensor, "problem test_example d_head"],
    test_labels: Int[torch.Tensor, " test_example"],
    C: float = 1000.0,
) -> Float[torch.Tensor, " problem"]:
    """`liblinear_s_acc` of many heads that do not share features (heads of different
    models, as `separation_accuracy_each`)."""
    problems = list(zip(train_x.double().cpu(), test_x.double().cpu(), strict=True))
    return _liblinear(problems, train_labels, test_labels, C)


def _liblinear(
    problems: list[tuple[torch.Tensor, torch.Tensor]],
    train_labels: torch.Tensor,
    test_labels: torch.Tensor,
    C: float,
) -> Float[torch.Tensor, " problem"]:
    """Test accuracy of ``LinearSVC(C=C)`` fitted on each (train, test) feature pair."""
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.svm import LinearSVC

    y, y_test = train_labels.cpu().numpy(), test_labels.cpu().numpy()
    scores = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        for train, test in problems:
            fitted = LinearSVC(C=C).fit(train.numpy(), y)
            scores.append(fitted.score(test.numpy(), y_test))
    return torch.tensor(scores, dtype=torch.float32)


def separation_accuracy_each(
    train_x: Float[torch.Tensor, "problem example d_head"],
    train_labels: Int[torch.Tensor, " example"],
    test_x: Float[torch.Tensor, "problem test_example d_head"],
    test_labels: Int[torch.Tensor, " test_example"],
    C: float = 1000.0,
    max_iter: int = 100,
    progress: bool = False,
) -> Float[torch.Tensor, " problem"]:
    """s-acc of many heads that do not share features (for example heads of different models).

    Same problem, classes and solver as `separation_accuracy`, one head per problem; each
    starts from its optimum on a subsample of the examples, so that only a few Newton steps
    run on all of them.
    """
    _check_problems(train_x.transpose(0, 1), train_labels, test_x.transpose(0, 1), test_labels)
    size = _chunk_size(train_x.shape[1])
    sample = _subsample(train_x.shape[1], train_x.device)
    train_labels, test_labels = train_labels.to(train_x.device), test_labels.to(train_x.device)

    def fit(positive: Bool[torch.Tensor, " example"]) -> torch.Tensor:
        signs = _signs(positive)
        out = []
        for chunk in progress_bar(train_x.split(size), desc="s-acc", disable=not progress):
            signed = _with_intercept(chunk).mT * signs  # [problem feature example]
            start = _newton(_Own(signed[..., sample]), C, max_iter)[0]
            out.append(_newton(_Own(signed), C, max_iter, start)[0])
        return torch.cat(out)  # [problem feature]

    def scores(weights: torch.Tensor, rows: slice) -> torch.Tensor:
        return (weights[:, None] @ _with_intercept(test_x[rows]).mT)[:, 0]

    return _one_vs_rest_accuracy(fit, scores, train_labels, test_labels, len(train_x))


def _check_problems(
    train_x: torch.Tensor,
    train_labels: torch.Tensor,
    test_x: torch.Tensor,
    test_labels: torch.Tensor,
) -> None:
    """Refuse inputs the compiled solver cannot read: features as [example, ...] floats with
    one integer label per example, the same features on both splits, finite values."""
    for name, x, y in (("train", train_x, train_labels), ("test", test_x, test_labels)):
        if not x.dtype.is_floating_point or y.dtype.is_floating_point or y.dtype == torch.bool:
            raise HeadcoopError(f"s-acc needs float {name} features and integer labels")
        if y.ndim != 1 or x.ndim < 2 or len(y) != x.shape[0]:
            raise HeadcoopError(
                f"s-acc: {name} features of shape {tuple(x.shape)} do not match "
                f"{tuple(y.shape)} labels"
            )
        if not torch.isfinite(x).all():
            raise HeadcoopError(f"s-acc: the {name} features hold NaN or infinite values")
    if train_x.shape[1:] != test_x.shape[1:]:
        raise HeadcoopError(
            f"s-acc: train features {tuple(train_x.shape[1:])} and test features "
            f"{tuple(test_x.shape[1:])} differ"
        )


def _one_vs_rest_accuracy(
    fit: Callable[[torch.Tensor], torch.Tensor],
    scores: Callable[[torch.Tensor, slice], torch.Tensor],
    train_labels: torch.Tensor,
    test_labels: torch.Tensor,
    n_problems: int,
    reduce: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> torch.Tensor:
    """Test accuracy (or ``reduce`` of each problem's test hits, a float per example) of
    separators fitted by ``fit`` (positive examples -> weights [problem
    feature]) and scored by ``scores`` (weights of some problems, their rows -> test scores
    [problem test_example]): one separator for the second class against the first when
    training has two classes, else one per class, the highest winning. Scored a chunk of
    problems at a time (the scores of all would take gigabytes)."""
    reduce = reduce or (lambda hit: hit.mean(-1))
    classes = train_labels.unique()  # sorted, as LinearSVC's classes_
    if len(classes) == 1:
        return reduce((test_labels == classes[0]).float().expand(n_problems, -1)).clone()
    weights = [fit(train_labels == c) for c in (classes[1:] if len(classes) == 2 else classes)]
    accuracy = []
    for start in range(0, n_problems, SCORE_CHUNK):
        rows = slice(start, start + SCORE_CHUNK)
        if len(classes) == 2:
            hit = (scores(weights[0][rows], rows) > 0) == (test_labels == classes[1])
        else:
            per_class = torch.stack([scores(w[rows], rows) for w in weights])
            hit = classes[highest(per_class)] == test_labels
        accuracy.append(reduce(hit.float()))
    return torch.cat(accuracy)


def fit_separators(
    x: Float[torch.Tensor, "example head_index d_head"],
    y: Bool[torch.Tensor, " example"],
    masks: Bool[torch.Tensor, "subset head_index"],
    C: float = 1000.0,
    max_iter: int = 100,
    progress: bool = False,
) -> Float[torch.Tensor, "subset feature"]:
    """The optimal (w, intercept) of each set of heads; zero on the features of other heads.

    A set whose parent (the set less its highest head) is among ``masks`` starts from the
    parent's optimum; any other starts from the optimum on a subsample of the examples. Either
    way only a few Newton steps remain on all the examples. On the CPU the sets are solved one
    at a time down the tree of sets (`headcoop.metrics.svm_tree`, on
    ``torch.get_num_threads()`` threads); on other devices in batches (`_fit_batches`).
    """
    problem = _problem(x, y, masks)
    if x.device.type != "cpu":
        return _fit_batches(*problem, C, max_iter, progress)
    arrays = (t.numpy() for t in problem)
    return torch.from_numpy(fit_tree(*arrays, C, max_iter, torch.get_num_threads(), progress))


def _problem(
    x: Float[torch.Tensor, "example head_index d_head"],
    y: Bool[torch.Tensor, " example"],
    masks: Bool[torch.Tensor, "subset head_index"],
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """What either solver takes: the signed features [example feature] (the intercept's 1
    last), each set's features [subset feature], its parent's row and the subsample."""
    signed = _with_intercept(x.flatten(1)) * _signs(y)[:, None]
    masks = masks.to(x.device)
    keep = torch.cat(
        [masks.repeat_interleave(x.shape[-1], dim=1), masks.new_ones(len(masks), 1)], 1
    )
    return signed, keep, _parent_rows(masks), _subsample(len(y), x.device)


def _parent_rows(masks: Bool[torch.Tensor, "subset head_index"]) -> Int[torch.Tensor, " subset"]:
    """The row of each set's parent (the set less its highest head), or -1 if the set is
    empty or its parent is not among the rows."""
    device = masks.device
    codes = (masks.long() << torch.arange(masks.shape[1], device=device)).sum(-1)
    parents = codes - (1 << torch.floor(torch.log2(codes.clamp(min=1).double())).long())
    parents = torch.where(codes > 0, parents, -1)
    row_of = torch.full((int(codes.max()) + 1,), -1, device=device)
    row_of[codes] = torch.arange(len(masks), device=device)
    return torch.where(parents >= 0, row_of[parents.clamp(min=0)], -1)


def _fit_batches(
    signed: Float[torch.Tensor, "example feature"],
    keep: Bool[torch.Tensor, "subset feature"],
    parents: Int[torch.Tensor, " subset"],
    sample: Int[torch.Tensor, " sample"],
    C: float,
    max_iter: int,
    progress: bool,
) -> Float[torch.Tensor, "subset feature"]:
    """`fit_separators` in batches of sets, smallest sets first. A child starting from its
    parent's optimum has the parent's margins, so its first Gram matrix is the parent's last,
    corrected for any example whose margin rounds to the other side of 1 (each set's last
    Gram matrix and active examples are kept: [set, feature pair] floats and [set, example]
    booleans)."""
    products = _Shared.products(signed)
    n_sets, device = len(keep), signed.device
    weights = torch.zeros(n_sets, signed.shape[1], dtype=torch.float64, device=device)
    grams = torch.zeros(n_sets, products.shape[1], dtype=torch.float64, device=device)
    actives = torch.zeros(n_sets, len(signed), dtype=torch.bool, device=device)
    # Which sets are solved; the last entry stands for "no parent", and stays False.
    solved = torch.zeros(n_sets + 1, dtype=torch.bool, device=device)
    order = keep.sum(-1).argsort(stable=True)  # parents before children
    chunks = order.split(_chunk_size(len(signed)))
    for rows in progress_bar(chunks, desc="s-acc", disable=not progress, unit="chunk"):
        parent = parents[rows]
        start = weights[parent.clamp(min=0)] * keep[rows]
        orphans = ~solved[parent]  # no parent among the sets, or not solved yet
        known = None
        if orphans.any():
            subsample = _Shared(signed[sample], keep[rows][orphans], products[sample])
            start[orphans] = _newton(subsample, C, max_iter)[0]
        else:
            known = (grams[parent], actives[parent])
        problems = _Shared(signed, keep[rows], products)
        weights[rows], grams[rows], actives[rows] = _newton(problems, C, max_iter, start, known)
        solved[rows] = True
    return weights


class _Shared:
    """Problems that share one feature matrix, each using some of its columns (sets of heads).

    The Hessian needs each problem's Gram matrix over its active examples: it is built from
    per-example outer products (`products`: their upper triangles, the Gram matrix being
    symmetric), then updated only for examples whose status changed.
    """

    def __init__(self, signed: torch.Tensor, keep: torch.Tensor, products: torch.Tensor) -> None:
        self.signed = signed  # [example feature], each row times its class sign
        self.products = products  # [example pair]: see `products`
        self.keep = keep.double()  # [problem feature]
        self.n_features = signed.shape[1]

    @staticmethod
    def products(signed: torch.Tensor) -> torch.Tensor:
        """Each example's outer product x x^T, upper triangle only: [example pair]."""
        i, j = torch.triu_indices(*signed.shape[1:] * 2, device=signed.device)
        return signed[:, i] * signed[:, j]

    def __len__(self) -> int:
        return len(self.keep)

    def margins(self, w: torch.Tensor) -> torch.Tensor:
        return w @ self.signed.T

    def pull(self, residual: torch.Tensor) -> torch.Tensor:
        return residual @ self.signed * self.keep

    def gram(
        self,
        active: torch.Tensor,
        old: torch.Tensor | None = None,
        was_active: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The upper triangles of each problem's Gram matrix over its active examples."""
        if old is None:
            return active.double() @ self.products
        changed = (active ^ was_active).nonzero()  # [change (row, example)]
        if len(changed) > 0.05 * active.numel():
            return active.double() @ self.products
        sign = active[changed[:, 0], changed[:, 1]].double() * 2 - 1  # +1 joins, -1 leaves
        # (nonzero lists each (row, example) once, in order: already coalesced)
        delta = torch.sparse_coo_tensor(
            changed.T, sign, active.shape, is_coalesced=True, check_invariants=False
        )
        return old + torch.sparse.mm(delta, self.products)

    def hessian(self, gram: torch.Tensor, C: float) -> torch.Tensor:
        f = self.n_features
        i, j = torch.triu_indices(f, f, device=gram.device)
        full = gram.new_zeros(len(gram), f, f)
        full[:, i, j] = gram
        full[:, j, i] = gram
        eye = torch.eye(f, dtype=torch.float64, device=gram.device)
        on = self.keep[:, :, None] * self.keep[:, None, :]
        # Off-mask rows and columns are the identity: those weights stay zero.
        return (eye + 2 * C * full) * on + eye * (1 - on)

    def take(self, rows: torch.Tensor) -> "_Shared":
        taken = object.__new__(_Shared)
        taken.__dict__.update(self.__dict__, keep=self.keep[rows])
        return taken


class _Own:
    """Problems with features of their own (few features each), laid out features first, so
    that each product runs along the long example axis."""

    def __init__(self, signed: torch.Tensor) -> None:
        self.signed = signed  # [problem feature example]
        self.n_features = signed.shape[1]

    def __len__(self) -> int:
        return len(self.signed)

    def margins(self, w: torch.Tensor) -> torch.Tensor:
        return (w[:, None] @ self.signed)[:, 0]

    def pull(self, residual: torch.Tensor) -> torch.Tensor:
        return (self.signed @ residual[..., None])[..., 0]

    def gram(self, active: torch.Tensor, old=None, was_active=None) -> torch.Tensor:
        return (self.signed * active[:, None]) @ self.signed.mT

    def hessian(self, gram: torch.Tensor, C: float) -> torch.Tensor:
        return torch.eye(self.n_features, dtype=torch.float64, device=gram.device) + 2 * C * gram

    def take(self, rows: torch.Tensor) -> "_Own":
        return _Own(self.signed[rows])


def _newton(
    problems: _Shared | _Own,
    C: float,
    max_iter: int,
    start: torch.Tensor | None = None,
    known: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Newton's method from ``start`` (zero if None) to each problem's exact optimum; returns
    the optima, the Gram matrices over their active examples, and those examples. ``known``
    is Gram matrices near ``start`` and their active examples, which it updates.

    Problems that reach their optimum leave the working arrays, which shrink as the loop runs.
    """
    n_problems = len(problems)
    device = problems.signed.device
    result = torch.zeros(n_problems, problems.n_features, dtype=torch.float64, device=device)
    w = result.clone() if start is None else start.clone()
    rows = torch.arange(n_problems, device=device)  # which problem each working row is
    margins = problems.margins(w)  # [row example]
    active = margins < 1
    gram = problems.gram(active) if known is None else problems.gram(active, *known)
    grams, actives = torch.empty_like(gram), torch.empty_like(active)
    for _ in range(max_iter):
        residual = (margins - 1).clamp_max_(0.0)  # half the loss's slope: active examples
        grad = w + 2 * C * problems.pull(residual)
        step = torch.linalg.solve(problems.hessian(gram, C), grad[..., None])[..., 0]
        step_margins = problems.margins(step)
        alpha = _line_search(w, step, 1 - margins, step_margins, C)
        w = w - alpha[:, None] * step
        margins = margins - alpha[:, None] * step_margins
        new_active = margins < 1
        gram = problems.gram(new_active, gram, active)
        # A full Newton step that leaves the active set unchanged lands on the optimum.
        done = (new_active == active).all(-1) & (alpha == 1)
        active = new_active
        finished = rows[done]
        result[finished], grams[finished], actives[finished] = w[done], gram[done], active[done]
        if done.all():
            return result, grams, actives
        live = ~done
        rows, w, margins, active, gram = (t[live] for t in (rows, w, margins, active, gram))
        problems = problems.take(live)
    result[rows], grams[rows], actives[rows] = w, gram, active
    return result, grams, actives


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
    wd, dd = torch.linalg.vecdot(w, step), torch.linalg.vecdot(step, step)
    step_slack_sq = step_slack * step_slack

    def slope_and_curvature(alpha, rows):
        s = torch.addcmul(slack[rows], alpha[:, None], step_slack[rows]).clamp_min_(0.0)
        slope = alpha * dd[rows] - wd[rows] + 2 * C * torch.linalg.vecdot(step_slack[rows], s)
        return slope, dd[rows] + 2 * C * torch.linalg.vecdot(step_slack_sq[rows], s.sign_())

    alpha = torch.ones_like(wd)
    slope, curvature = slope_and_curvature(alpha, slice(None))
    # Where the slope at 1 is positive beyond rounding, the full step overshoots: search (0, 1).
    # A step below 1e-12 of |w| (a problem at its optimum) is taken whole: its length is lost
    # in rounding, and searching it would only chase rounding noise.
    negligible = dd <= 1e-24 * (w * w).sum(-1).clamp(min=1.0)
    rows = torch.nonzero((slope > 1e-9 * curvature) & ~negligible).flatten()
    lo, hi, a = wd.new_zeros(len(rows)), alpha[rows], alpha[rows]
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


def _subsample(n_examples: int, device: torch.device) -> torch.Tensor:
    """A fixed eighth of the examples, whose optimum starts the solve on all of them."""
    order = torch.randperm(n_examples, generator=torch.Generator().manual_seed(0))
    return order[: n_examples // 8].to(device)


def _with_intercept(x: torch.Tensor) -> torch.Tensor:
    """Features in float64 with a constant 1 appended (the intercept's feature)."""
    ones = torch.ones(*x.shape[:-1], 1, dtype=torch.float64, device=x.device)
    return torch.cat([x.double(), ones], dim=-1)


def _signs(y: torch.Tensor) -> torch.Tensor:
    return torch.where(y, 1.0, -1.0).double()
