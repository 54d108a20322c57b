"""The task registry and the built-in tasks other than Count01 (tests/test_count01.py)."""

import pytest
import torch

from headcoop import ModelConfig, TrainConfig, evaluate, predict, train
from headcoop.errors import HeadcoopError
from headcoop.tasks import (
    Histogram,
    Plurality,
    Readout,
    Task,
    make_task,
    read_names,
    register_task,
    registered_tasks,
    task_from_config,
)
from headcoop.tasks.base import check_task


def test_at_least_three_tasks_are_registered_and_satisfy_the_protocol():
    assert {"count01", "plurality", "histogram"} <= set(registered_tasks())
    for name in registered_tasks():
        task = make_task(name)
        assert isinstance(task, Task)
        assert task_from_config(task.to_config()) == task
        examples = task.split("test")[:5]
        batch = task.sequences(examples)
        assert batch.targets.shape == (5, len(task.readouts))
        decision = task.readouts[task.decision]
        ids = [task.vocab.index(t) for t in decision.candidates]
        assert torch.isin(batch.targets[:, task.decision], torch.tensor(ids)).all()


def test_plurality_answers_the_most_frequent_letter_ties_to_the_earlier():
    task = Plurality()
    targets = task.targets(torch.tensor([[3, 1, 2], [1, 4, 4], [0, 0, 5], [2, 2, 2]]))
    assert [task.vocab[t] for t in targets[:, 0]] == ["A", "B", "C", "A"]
    assert read_names(task) == ("answer", "eos")
    with pytest.raises(HeadcoopError, match=r"bad token 'A' at position 4 .*need 'B'"):
        task.parse("abb=A")


def test_plurality_splits_extrapolate():
    task = Plurality(max_train=10)
    assert task.split("train").max() <= 10
    assert task.split("val").min() >= 11 and task.split("test").min() >= 21


def test_histogram_counts_each_token_so_far():
    task = Histogram(letters=3, length=6)
    examples = torch.tensor([[0, 1, 0, 0, 2, 1]])  # a b a a c b
    counts = [task.vocab[t] for t in task.targets(examples)[0]]
    assert counts == ["1", "1", "2", "3", "1", "2"]
    assert task.decision == 5 and task.readouts[-1].candidates == tuple("123456")
    assert task.format(task.parse("abaacb")) == "abaacb"
    with pytest.raises(HeadcoopError, match="bad token 'd' at position 2"):
        task.parse("abdacb")
    with pytest.raises(HeadcoopError, match="has 3 letters"):
        task.parse("aba")
    with pytest.raises(HeadcoopError, match="no bags"):
        task.bags(examples)


def test_histogram_trains_on_full_sequences_well_above_chance():
    task = Histogram(size=1500)
    model = train(
        task, ModelConfig(d_model=32, n_heads=4, d_head=8), TrainConfig(epochs=12, lr=1e-2)
    )
    result = evaluate(model, task, task.split("test"))
    chance = 0.35  # the most frequent count of the last letter, 1 + Binomial(7, 1/4)
    assert result["pos8"] > chance + 0.15
    with pytest.raises(HeadcoopError, match="not exact"):
        predict(model, task, task.split("test")[:4], mode="bag")


def test_bad_task_declarations_are_named():
    with pytest.raises(HeadcoopError, match="two or more distinct candidates"):
        Readout("answer", ("4",))

    class NoDecision:
        name, vocab = "broken", ("a", "b")

    with pytest.raises(HeadcoopError, match="lacks readouts, decision"):
        check_task(NoDecision())
    with pytest.raises(HeadcoopError, match="bad parameters for task 'plurality'"):
        make_task("plurality", colour="red")
    with pytest.raises(HeadcoopError, match="plurality: size must be an integer in"):
        make_task("plurality", size=0)


def test_a_registered_task_is_built_by_name(monkeypatch):
    monkeypatch.setattr("headcoop.tasks.base._TASKS", dict(registered_tasks()))

    @register_task
    class Tiny(Plurality):
        name = "tiny_plurality_for_tests"

    assert isinstance(make_task("tiny_plurality_for_tests", size=5), Tiny)
