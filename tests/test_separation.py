import warnings

import numpy as np
import pytest
import torch
from sklearn.svm import LinearSVC

from headcoop.metrics.cache import collect
from headcoop.metrics.classes import labels
from headcoop.metrics.separation import fit_separators, separation_accuracy
from headcoop.metrics.subsets import all_subsets


@pytest.fixture(scope="module")
def outputs(trained, task):
    train, test = (
        collect(trained, task, task.split("train")),
        collect(trained, task, task.split("test")),
    )
    return (train.z[:, 0], labels(task, train.targets), test.z[:, 0], labels(task, test.targets))


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
