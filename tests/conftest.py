"""Shared fixtures: small splits and a briefly trained model, built once per session."""

import pytest
import torch

from headcoop.config import ModelConfig, TrainConfig
from headcoop.model import build_model
from headcoop.tasks import Count01, SplitSpec
from headcoop.training.trainer import train


def small_count01(seed: int = 0) -> Count01:
    """Count01 with the paper's count ranges but few examples, for fast tests."""
    return Count01(
        seed=seed,
        splits={
            "train": SplitSpec(600, n01=(0, 100), n2=(0, 100)),
            "val": SplitSpec(200, n01=(101, 150), n2=(0, 150)),
            "test": SplitSpec(200, n01=(151, 200), n2=(0, 200)),
        },
    )


@pytest.fixture(scope="session")
def task() -> Count01:
    return small_count01()


@pytest.fixture(scope="session")
def trained(task: Count01):
    """A paper-shaped model trained briefly: well past chance, far from random weights."""
    return train(task, ModelConfig(), TrainConfig(epochs=8, lr=3e-3))


@pytest.fixture
def random_model(task: Count01):
    return build_model(ModelConfig(), len(task.vocab), seed=1)


@pytest.fixture(autouse=True)
def _deterministic_threads():
    torch.set_num_threads(2)


@pytest.fixture(scope="session")
def trained_no_ln(task: Count01):
    """Like `trained`, without LayerNorm: logits are exactly affine in the head outputs."""
    return train(task, ModelConfig(layernorm=False), TrainConfig(epochs=8, lr=3e-3))
