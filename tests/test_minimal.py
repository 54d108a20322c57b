import pytest
import torch

from headcoop.engine.run import evaluate, predict
from headcoop.paper.minimal import minimal_solution
from headcoop.tasks import Count01


def test_the_minimal_solution_is_perfect_on_the_test_split_for_large_N():
    task = Count01()
    metrics = evaluate(minimal_solution(N=10.0), task, task.split("test"))
    assert metrics["answer"] == 1.0 and metrics["eos"] == 1.0


def test_bags_and_full_sequences_agree_on_the_minimal_solution():
    task = Count01()
    counts = torch.tensor([[0, 0, 0], [0, 3, 9], [5, 0, 2], [40, 41, 60]])
    model = minimal_solution(N=10.0)
    assert (
        predict(model, task, counts, "bag") - predict(model, task, counts, "full")
    ).abs().max() < 1e-3


@pytest.mark.parametrize("N", [4.0, 5.0])
def test_with_small_N_many_2s_break_the_count(N):
    """2s pull the output towards their value 0; near-ties flip once n2 is comparable to e^N."""
    task = Count01()
    near_ties = torch.tensor([[n, n + 1, 0] for n in range(150, 200)])
    with_twos = near_ties + torch.tensor([0, 0, 200])
    model = minimal_solution(N=N)
    assert evaluate(model, task, near_ties)["answer"] == 1.0
    assert evaluate(model, task, with_twos)["answer"] < 0.5
