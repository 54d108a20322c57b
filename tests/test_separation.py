import contextlib
import warnings

import numpy as np
import pytest
import torch
from sklearn.svm import LinearSVC

from headcoop.engine.cache import collect
from headcoop.metrics.classes import labels
from headcoop.metrics.separation import (
    _fit_batches,
    _parent_rows,
    _problem,
    _with_intercept,
    fit_separators,
    separation_accuracy,
)
from headcoop.metrics.subsets import all_subsets


@pytest.fixture(scope="module")
def outputs(trained, task):
    train, test = (
        collect(trained, task, task.split("train")),
        collect(trained, task, task.split("test")),
    )
    return (train.z[:, 0], labels(task, train.targets), test.z[:, 0], labels(task, test.targets))


@contextlib.contextmanager
def _torch_threads(n: int):
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def objective(w: np.ndarray, x: np.ndarray, y: np.ndarray, C: float) -> float:
    """LinearSVC's primal: the intercept is a feature of value 1 and is penalised too."""
    features = np.hstack([x, np.ones((len(x), 1))])
    slack = np.maximum(0, 1 - np.where(y, 1, -1) * (features @ w))
    return 0.5 * w @ w + C * (slack**2).sum()


def random_masks(n: int, seed: int) -> torch.Tensor:
    masks = all_subsets(16)[1:]
    return masks[torch.randperm(len(masks), generator=torch.Generator().manual_seed(seed))[:n]]


def test_reaches_the_optimum_of_the_linear_svc_problem(outputs):
    x, labels_, _, _ = outputs
    y = labels_ == 1
    masks = random_masks(8, seed=0)
    weights = fit_separators(x, y, masks)
    for mask, w in zip(masks, weights, strict=True):
        cols = mask.repeat_interleave(2)
        ours = np.append(w[:-1][cols].numpy(), w[-1].item())
        assert (w[:-1][~cols] == 0).all()
        xs = x.flatten(1)[:, cols].double().numpy()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # liblinear may stop at max_iter
            svc = LinearSVC(C=1000, max_iter=20000).fit(xs, y.numpy())
        theirs = np.append(svc.coef_[0], svc.intercept_[0])
        assert objective(ours, xs, y.numpy(), 1000) <= objective(theirs, xs, y.numpy(), 1000) * (
            1 + 1e-6
        )


def test_s_acc_agrees_with_linear_svc(outputs):
    x, y, x_test, y_test = outputs
    masks = random_masks(10, seed=1)
    ours = separation_accuracy(x, y, x_test, y_test, masks)
    for mask, acc in zip(masks, ours, strict=True):
        cols = mask.repeat_interleave(2)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            svc = LinearSVC(C=1000, max_iter=20000).fit(x.flatten(1)[:, cols].numpy(), y.numpy())
        expected = svc.score(x_test.flatten(1)[:, cols].numpy(), y_test.numpy())
        assert abs(acc.item() - expected) <= 0.01 + 1e-6  # 2 of the 200 test examples


def test_separable_outputs_give_perfect_s_acc():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(400, 2, 2, generator=gen)
    y = (x[:, 0, 0] + 0.5 * x[:, 0, 1] > 0.1).long()  # separable by head 0 alone
    masks = torch.tensor([[True, False], [False, True], [True, True]])
    acc = separation_accuracy(x[:300], y[:300], x[300:], y[300:], masks)
    assert acc[0] > 0.97 and acc[2] > 0.97 and acc[1] < 0.8


def test_more_than_two_classes_follow_linear_svc_one_vs_rest():
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(600, 2, 2, generator=gen)
    centres = torch.tensor([[2.0, 0.0], [-1.0, 1.7], [-1.0, -1.7]])
    y = (x[:, 0] @ centres.T + 0.8 * torch.randn(600, 3, generator=gen)).argmax(-1)
    masks = torch.tensor([[True, False], [False, True], [True, True]])
    ours = separation_accuracy(x[:400], y[:400], x[400:], y[400:], masks)
    for mask, acc in zip(masks, ours, strict=True):
        cols = mask.repeat_interleave(2)
        svc = LinearSVC(C=1000, tol=1e-8, max_iter=100_000)
        svc.fit(x[:400].flatten(1)[:, cols].double().numpy(), y[:400].numpy())
        expected = svc.score(x[400:].flatten(1)[:, cols].double().numpy(), y[400:].numpy())
        assert abs(acc.item() - expected) <= 1 / 200 + 1e-9  # at most one test example
    assert ours[0] > 0.7 and ours[1] < 0.6  # head 0 carries the classes, head 1 is noise


def test_a_class_missing_from_training_is_never_predicted():
    x = torch.randn(90, 1, 2, generator=torch.Generator().manual_seed(0))
    y = torch.arange(90) % 3
    train = y != 2
    acc = separation_accuracy(x[train], y[train], x, y, torch.ones(1, 1, dtype=torch.bool))
    assert acc.item() <= 2 / 3


def _objectives(weights: torch.Tensor, signed: torch.Tensor) -> torch.Tensor:
    slack = (1 - weights @ signed.T).clamp(min=0)
    return 0.5 * (weights * weights).sum(-1) + 1000 * (slack**2).sum(-1)


@pytest.mark.parametrize("sets", ["all of 10 heads", "random"])
def test_the_tree_and_the_batches_reach_the_same_optima(outputs, sets):
    """The CPU solver down the tree of sets (`svm_tree`) against the batched one that other
    devices use: the same objective to rounding, the same test predictions, on every set of
    heads 0-9 (one tree) and on random sets (most without a parent: subsample starts)."""
    x, labels_, x_test, _ = outputs
    y = labels_ == 1
    masks = random_masks(300, seed=2) if sets == "random" else all_subsets(10)
    masks = torch.cat([masks, masks.new_zeros(len(masks), 16 - masks.shape[1])], 1)
    tree = fit_separators(x, y, masks)
    problem = _problem(x, y, masks)
    batches = _fit_batches(*problem, 1000.0, 100, False)
    signed, keep = problem[:2]
    assert (tree[~keep] == 0).all()
    ours, theirs = _objectives(tree, signed), _objectives(batches, signed)
    assert ((ours - theirs).abs() <= 1e-9 * theirs).all()
    test = _with_intercept(x_test.flatten(1))
    assert ((tree @ test.T > 0) == (batches @ test.T > 0)).float().mean() > 0.9999


def test_the_tree_gives_the_same_weights_on_any_number_of_threads(outputs):
    x, labels_, _, _ = outputs
    masks = all_subsets(16)[: 2**11]
    weights = []
    for threads in (1, 2):
        with _torch_threads(threads):
            weights.append(fit_separators(x, labels_ == 1, masks))
    assert torch.equal(*weights)


def test_the_forest_is_walked_parents_first_with_each_subtree_in_one_run():
    from headcoop.metrics.svm_tree import _forest, _jobs

    masks = torch.cat([all_subsets(6), random_masks(40, seed=3)[:, :6]]).unique(dim=0)
    masks = masks[torch.randperm(len(masks), generator=torch.Generator().manual_seed(0))]
    parent = _parent_rows(masks).numpy()
    order, size, depth = _forest(parent)
    assert sorted(order.tolist()) == list(range(len(masks)))
    position = np.empty_like(order)
    position[order] = np.arange(len(order))
    for row, p in enumerate(parent):
        if p >= 0:
            assert position[p] < position[row] and depth[row] == depth[p] + 1
            assert position[row] + size[row] <= position[p] + size[p]  # inside its parent's run
        members = order[position[row] : position[row] + size[row]]
        assert (masks[members] >= masks[row]).all()  # every member holds the root's heads
    trunk, jobs = _jobs(order, size, parent)
    assert sorted(np.concatenate([trunk, *jobs]).tolist()) == list(range(len(masks)))
