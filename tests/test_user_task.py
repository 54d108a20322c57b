"""A researcher's own task with bugs: each failure is one line naming the file, the method and
the error; ``--debug`` shows the whole stack."""

import textwrap

import pytest

from headcoop import ModelConfig, build_model
from headcoop.cli import main
from headcoop.errors import HeadcoopError
from headcoop.loading.checkpoint import save_checkpoint
from headcoop.tasks import Count01, load_task

BUGS = """
import torch
from headcoop.tasks.count01 import Count01


class Empty(Count01):
    def split(self, name):
        return torch.zeros(0, 3, dtype=torch.long)


class Raises(Count01):
    def split(self, name):
        raise RuntimeError("my split is broken")


class ShortBags(Count01):
    def bags(self, examples):
        b = super().bags(examples)
        return type(b)(b.tokens[:, :-1], b.read_pos, b.targets, b.multiplicity)


class FewTargets(Count01):
    def targets(self, examples):
        return super().targets(examples)[:-1]


class BadInit(Count01):
    def __init__(self):
        raise ValueError("no such setting")
"""

CASES = {
    "Empty": "split(): 'test' has no examples",
    "Raises": "in split(): RuntimeError: my split is broken",
    "ShortBags": "bags(): ",  # the batch refused by its own type check, or by Batch.check
    "FewTargets": "in bags(): RuntimeError: ",  # Count01's bags read the short targets
    "BadInit": "in __init__(): ValueError: no such setting",
}


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    where = tmp_path_factory.mktemp("user_task")
    (where / "bugs.py").write_text(textwrap.dedent(BUGS))
    model = build_model(ModelConfig(n_heads=2), len(Count01().vocab), seed=0)
    save_checkpoint(where / "ck", model, {"task": Count01().to_config()})
    return where


@pytest.mark.parametrize("name", sorted(CASES))
def test_a_broken_user_task_is_one_line_naming_file_method_and_error(checkpoint, capsys, name):
    task = f"{checkpoint / 'bugs.py'}:{name}"
    assert main(["eval", str(checkpoint / "ck"), "--task", task]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "Traceback" not in err
    assert f"bugs.py:{name}" in err and CASES[name] in err


def test_debug_shows_the_users_own_frame(checkpoint, capsys):
    task = f"{checkpoint / 'bugs.py'}:Raises"
    with pytest.raises(HeadcoopError) as raised:
        main(["eval", str(checkpoint / "ck"), "--task", task, "--debug"])
    assert isinstance(raised.value.__cause__, RuntimeError)  # the user's stack is kept


def test_a_guarded_task_still_answers_as_its_class_does(checkpoint):
    task = load_task(f"{checkpoint / 'bugs.py'}:ShortBags")
    plain = Count01()
    examples = plain.split("test")[:7]
    assert task.vocab == plain.vocab and task.decision == plain.decision
    assert task.targets(examples).equal(plain.targets(examples))
    assert task.sequences(examples).tokens.equal(plain.sequences(examples).tokens)
    assert task.to_config() == plain.to_config()


def test_what_a_method_returns_is_checked_before_any_engine_reads_it(checkpoint):
    task = load_task(f"{checkpoint / 'bugs.py'}:FewTargets")
    with pytest.raises(HeadcoopError, match=r"targets\(\): gave \(6, 2\), not .* \(7, 2\)"):
        task.targets(Count01().split("test")[:7])
