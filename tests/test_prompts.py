"""PromptTask and --prompts: a researcher's own token ids as the task, on a model whose
vocabulary is no built-in task's."""

import json

import pandas as pd
import pytest
import torch

from headcoop import PromptTask, analyze
from headcoop.cli import main
from headcoop.errors import HeadcoopError
from tests.test_fields import write_plain

SHAPE = {"n_layers": 2, "d_model": 16, "n_heads": 2, "d_head": 4, "n_ctx": 9, "d_vocab": 37,
         "attn_only": False, "d_mlp": 24}  # fmt: skip


def _rows(n: int = 40) -> list[list[int]]:
    generator = torch.Generator().manual_seed(5)
    lengths = torch.randint(3, 10, (n,), generator=generator).tolist()
    return [torch.randint(0, 37, (k,), generator=generator).tolist() for k in lengths]


def test_ragged_prompts_read_their_last_token_and_split_in_halves():
    rows = _rows()
    task = PromptTask(rows, targets=[r[0] % 2 + 30 for r in rows])
    batch = task.sequences(task.split("test"))
    lengths = task.lengths(task.split("test"))
    assert (batch.read_pos[:, 0] == lengths - 1).all()
    assert len(task.split("train")) == len(task.split("test")) == 20
    assert task.readouts[0].candidates == ("30", "31") and len(task.vocab) == 37


def test_analyze_works_on_any_vocabulary_from_python_and_the_command_line(tmp_path):
    model = write_plain(tmp_path / "ck", SHAPE)
    rows = _rows()
    targets = [r[0] % 3 + 30 for r in rows]
    result = analyze(model, PromptTask(rows, targets), subsets=False)
    assert len(result.heads_frame()) == 4
    lines = [json.dumps({"tokens": r, "target": t}) for r, t in zip(rows, targets, strict=True)]
    (tmp_path / "p.jsonl").write_text("\n".join(lines) + "\n")
    args = ["analyze", str(tmp_path / "ck"), "--prompts", str(tmp_path / "p.jsonl")]
    assert (
        main([*args, "--candidates", "30,31,32,33", "--out", str(tmp_path / "a"), "--quiet"]) == 0
    )
    heads = pd.read_csv(tmp_path / "a" / "heads.csv")
    assert len(heads) == 4 and heads["l_acc"].between(0, 1).all()
    summary = json.loads((tmp_path / "a" / "summary.json").read_text())
    assert summary["task"] == "prompts" and summary["attention_ratios"] == []


@pytest.mark.parametrize(
    ("line", "said"),
    [
        ("not json", "line 2 is not JSON"),
        ('{"tokens": [1, 2]}', 'needs an object with "tokens" and "target"'),
        ('{"tokens": [1, 2], "target": 1, "colour": 3}', "unknown key 'colour'"),
        ('{"tokens": [1, -2], "target": 1}', "whole numbers"),
        ('{"tokens": [1, 2], "target": 1, "position": 5}', "has no position 5"),
    ],
)
def test_a_bad_prompts_file_is_one_line(tmp_path, line, said):
    good = [json.dumps({"tokens": [0, k % 3], "target": k % 2}) for k in range(6)]
    (tmp_path / "p.jsonl").write_text("\n".join([good[0], line, *good[1:]]) + "\n")
    with pytest.raises(HeadcoopError, match=said):
        PromptTask.from_jsonl(tmp_path / "p.jsonl")


def test_a_prompt_longer_than_the_context_or_an_id_outside_the_vocabulary_is_refused(tmp_path):
    model = write_plain(tmp_path / "ck", SHAPE)
    long = [[1] * 12, [2] * 3, [1] * 4, [2] * 5]
    with pytest.raises(HeadcoopError, match="context 9"):
        analyze(model, PromptTask(long, [1, 2, 1, 2]), subsets=False)
    with pytest.raises(HeadcoopError, match="has 37 tokens"):
        analyze(model, PromptTask([[40, 1], [2, 1], [1, 1], [2, 2]], [1, 2, 1, 2]), subsets=False)
