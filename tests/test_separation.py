import warnings

import numpy as np
import pytest
import torch
from sklearn.svm import LinearSVC

from headcoop.metrics.cache import collect
from headcoop.metrics.separation import fit_separators, separation_accuracy
from headcoop.metrics.subsets import all_subsets
from headcoop.tasks.count01 import FOUR


@pytest.fixture(scope="module")
def outputs(trained, task):
    train, test = (
        collect(trained, task, task.split("train")),
        collect(trained, task, task.split("test")),
    )
    return (train.z[:, 0], train.targets[:, 0] == FOUR, test.z[:, 0], test.targets[:, 0] == FOUR)


def objective(w: np.ndarray, x: np.ndarray, y: np.ndarray, C: float) -> float:
    """LinearSVC's primal: the intercept is a feature of value 1 and is penalised too."""
    features = np.hstack([x, np.ones((len(x), 1))])
    slack = np.maximum(0, 1 - np.where(y, 1, -1) * (features @ w))
    return 0.5 * w @ w + C * (slack**2).sum()


def random_masks(n: int, seed: int) -> torch.Tensor:
    masks = all_subsets(16)[1:]
    return masks[torch.randperm(len(masks), generator=torch.Generator().manual_seed(seed))[:n]]


def test_reaches_the_optimum_of_the_linear_svc_problem(outputs):
    x, y, _, _ = outputs
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
    y = x[:, 0, 0] + 0.5 * x[:, 0, 1] > 0.1  # separable by head 0 alone
    masks = torch.tensor([[True, False], [False, True], [True, True]])
    acc = separation_accuracy(x[:300], y[:300], x[300:], y[300:], masks)
    assert acc[0] > 0.97 and acc[2] > 0.97 and acc[1] < 0.8
