import pytest
import torch

from headcoop.errors import HeadcoopError
from headcoop.tasks import Count01, SplitSpec, make_task, task_from_config
from headcoop.tasks.count01 import EOS, EQUALS, FIVE, FOUR, VOCAB


def test_vocabulary_is_the_papers_eight_tokens():
    assert VOCAB == ("[BOS]", "0", "1", "2", "=", "4", "5", "[EOS]")


@pytest.mark.parametrize(
    ("text", "answer"),
    [("0121=4", "4"), ("01=5", "5"), ("=5", "5"), ("1=4", "4"), ("0=5", "5"), ("2221=4", "4")],
)
def test_parse_and_format_round_trip(text, answer):
    task = Count01()
    ids = task.parse(text)
    assert ids[0] == VOCAB.index("[BOS]") and ids[-1] == EOS
    assert VOCAB[ids[-2]] == answer
    assert task.format(ids) == text
    assert task.parse(f"[BOS]{text}[EOS]") == ids


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("0130=4", "bad token '3' at position 2"),
        ("0120=4", "bad token '4' at position 5"),  # two 0s, one 1: the answer is 5
        ("01=55", "bad token '5' at position 4"),
        ("0x=5", "bad token 'x' at position 1"),
        ("0[BOS]1=5", "bad token '[BOS]' at position 1"),
        ("012", "ends too early at position 3"),
        ("012=", "ends too early at position 4"),
    ],
)
def test_parse_names_the_offending_position_and_token(text, fragment):
    with pytest.raises(HeadcoopError, match=fragment.replace("[", r"\[").replace("]", r"\]")):
        Count01().parse(text)


def test_ties_answer_five():
    assert Count01().examples(["0011=5"]).tolist() == [[2, 2, 0]]
    with pytest.raises(HeadcoopError, match="wrong answer"):
        Count01().parse("0011=4")


def test_paper_splits_have_the_papers_sizes_and_ranges():
    task = Count01()
    expected = {
        "train": (7000, 0, 100, 100),
        "val": (1500, 101, 150, 150),
        "test": (1500, 151, 200, 200),
    }
    for name, (size, lo, hi, hi2) in expected.items():
        counts = task.split(name)
        assert counts.shape == (size, 3)
        assert counts[:, :2].min() == lo and counts[:, :2].max() == hi
        assert counts[:, 2].min() == 0 and counts[:, 2].max() == hi2


def test_splits_are_deterministic_and_differ_by_seed():
    assert torch.equal(Count01(seed=3).split("train"), Count01(seed=3).split("train"))
    assert not torch.equal(Count01(seed=3).split("train"), Count01(seed=4).split("train"))
    assert not torch.equal(Count01().split("val"), Count01().split("test"))


def test_targets_follow_the_counting_rule():
    counts = torch.tensor([[3, 4, 0], [4, 3, 9], [5, 5, 1], [0, 0, 0], [0, 1, 0]])
    targets = Count01().targets(counts)
    assert targets[:, 0].tolist() == [FOUR, FIVE, FIVE, FIVE, FOUR]
    assert (targets[:, 1] == EOS).all()


def test_sequences_hold_the_counted_tokens_in_shuffled_order():
    task = Count01()
    counts = torch.tensor([[5, 0, 2], [0, 3, 0], [2, 2, 7], [0, 0, 0]])
    batch = task.sequences(counts)
    for row, (n0, n1, n2) in zip(batch.tokens, counts.tolist(), strict=True):
        length = n0 + n1 + n2 + 3
        text = task.format([*row[:length].tolist(), EOS])
        assert task.examples([text]).tolist() == [[n0, n1, n2]]
    assert (batch.tokens[torch.arange(4), batch.read_pos[:, 0]] == EQUALS).all()
    assert torch.equal(batch.targets, task.targets(counts))
    shuffled = task.sequences(torch.tensor([[50, 50, 50]])).tokens[0, 1:151]
    assert not torch.equal(shuffled, shuffled.sort().values)


def test_bags_put_counts_on_one_position_per_token_type():
    batch = Count01().bags(torch.tensor([[7, 8, 9]]))
    assert [VOCAB[i] for i in batch.tokens[0]] == ["[BOS]", "0", "1", "2", "=", "4"]
    assert batch.multiplicity.tolist() == [[1, 7, 8, 9, 1, 1]]
    assert batch.read_pos.tolist() == [[4, 5]]


def test_task_config_round_trips_and_checks_the_vocabulary():
    task = Count01(seed=5, splits={**Count01().splits, "train": SplitSpec(10, (1, 2), (0, 0))})
    assert task_from_config(task.to_config()) == task
    bad = {**task.to_config(), "vocab": ["a", "b"]}
    with pytest.raises(HeadcoopError, match="vocabulary mismatch"):
        task_from_config(bad)
    with pytest.raises(HeadcoopError, match="unknown task"):
        make_task("count02")


def test_bad_split_specs_are_rejected():
    with pytest.raises(HeadcoopError, match="n01"):
        SplitSpec(10, n01=(5, 2), n2=(0, 1))
    with pytest.raises(HeadcoopError, match="size"):
        SplitSpec(0, n01=(0, 2), n2=(0, 1))
