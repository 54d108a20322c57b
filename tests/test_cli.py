import json
import subprocess
import sys

import pytest

from headcoop.cli import main

SMALL_COUNT01 = json.dumps(
    {
        "train": {"size": 200, "n01": [0, 30], "n2": [0, 30]},
        "val": {"size": 100, "n01": [31, 40], "n2": [0, 40]},
        "test": {"size": 100, "n01": [41, 50], "n2": [0, 50]},
    }
)


def test_help_does_not_import_torch_or_transformer_lens():
    code = (
        "import sys, contextlib, io\n"
        "from headcoop.cli import main\n"
        "with contextlib.suppress(SystemExit), contextlib.redirect_stdout(io.StringIO()):\n"
        "    main(['train', '--help'])\n"
        "print(sorted({'torch', 'transformer_lens'} & set(sys.modules)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (
            ["train", "--out", "x", "--epochs", "0"],
            "--epochs: expected an integer in [1, 100000], got '0'",
        ),
        (
            ["train", "--out", "x", "--d-model", "abc"],
            "--d-model: expected an integer in [1, 16384], got 'abc'",
        ),
        (
            ["train", "--out", "x", "--lr", "-1"],
            "--lr: expected a finite number in (0, 1e+06], got '-1'",
        ),
        (
            ["train", "--out", "x", "--lr", "0"],
            "--lr: expected a finite number in (0, 1e+06], got '0'",
        ),
        (
            ["train", "--out", "x", "--lr", "inf"],
            "--lr: expected a finite number in (0, 1e+06], got 'inf'",
        ),
        (["train", "--out", "x", "--dropout", "1"], "expected a finite number in [0, 1), got '1'"),
        (
            ["train", "--out", "x", "--seed", "18446744073709551616"],
            "--seed: expected an integer in [0, 4294967295]",
        ),
        (["train"], "the following arguments are required: --out"),
        (["eval", "x", "--split", "dev"], "invalid choice: 'dev'"),
    ],
)
def test_bad_flags_give_one_line_and_exit_2(argv, fragment, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    err = capsys.readouterr().err
    assert exit_info.value.code == 2
    assert fragment in err and len(err.strip().splitlines()) == 1


def test_bad_values_that_pass_the_parser_give_one_line_and_exit_1(tmp_path, capsys):
    assert main(["train", "--out", str(tmp_path), "--d-model", "1", "--quiet"]) == 1
    err = capsys.readouterr().err.strip()
    assert err == (
        "headcoop train: error: model config: layernorm needs d_model >= 2 (use --no-layernorm)"
    )


def test_missing_and_corrupt_checkpoints_give_one_line_and_exit_1(tmp_path, capsys):
    assert main(["eval", str(tmp_path / "none")]) == 1
    (tmp_path / "config.json").write_text("[]")
    assert main(["eval", str(tmp_path)]) == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines == [
        f"headcoop eval: error: no checkpoint at {tmp_path / 'none'}: it does not exist",
        f"headcoop eval: error: {tmp_path / 'config.json'} is corrupt: expected a JSON object",
    ]


def test_train_then_eval_on_bags_and_full_sequences(tmp_path, capsys):
    out = tmp_path / "run"
    argv = ["train", "--out", str(out), "--epochs", "2", "--d-model", "8", "--n-heads", "2"]
    assert main([*argv, "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert f"final checkpoint: {out / 'epoch_0002'}" in printed
    assert "test accuracy (1500 examples, bag engine): answer" in printed

    assert main(["eval", str(out), "--split", "val", "--json"]) == 0
    bag = json.loads(capsys.readouterr().out)
    assert main(["eval", str(out), "--split", "val", "--json", "--full"]) == 0
    full = json.loads(capsys.readouterr().out)
    assert (bag["mode"], full["mode"]) == ("auto", "full")
    assert bag["answer"] == pytest.approx(full["answer"], abs=1 / 1500)
    assert bag["eos"] == full["eos"]


def test_eval_reports_a_vocabulary_mismatch(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--out", str(out), "--epochs", "1", "--d-model", "4", "--quiet"]) == 0
    config_path = out / "epoch_0001" / "config.json"
    config = json.loads(config_path.read_text())
    config["task"]["vocab"][1] = "zero"
    del config["task_sha256"]  # as a checkpoint written by another tool
    config_path.write_text(json.dumps(config))
    capsys.readouterr()
    assert main(["eval", str(out)]) == 1
    assert "vocabulary mismatch for task 'count01'" in capsys.readouterr().err


def test_tasks_lists_one_task_a_line_name_first(capsys):
    assert main(["tasks"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    names = [line.split("\t")[0] for line in lines]
    assert {"count01", "plurality", "histogram"} <= set(names)
    assert all("\t" in line for line in lines)


@pytest.mark.parametrize(
    ("task", "params", "extra_columns"),
    [
        ("count01", ["splits=" + SMALL_COUNT01], {"w01", "w02", "eos_l_acc_direct"}),
        ("plurality", ["size=200"], {"w_ab", "w_ac", "eos_l_acc"}),
        ("histogram", ["size=200", "length=4"], {"pos1_l_acc", "pos3_l_acc_direct"}),
    ],
)
def test_every_task_trains_and_analyses_from_the_command_line(
    task, params, extra_columns, tmp_path, capsys
):
    run, out = tmp_path / "run", tmp_path / "analysis"
    argv = ["train", "--task", task, "--epochs", "3", "--out", str(run), "--quiet"]
    argv += [arg for p in params for arg in ("--task-param", p)]
    argv += ["--d-model", "8", "--n-heads", "3"]
    assert main(argv) == 0
    assert main(["analyze", str(run), "--out", str(out), "--quiet"]) == 0
    import pandas as pd

    heads = pd.read_csv(out / "heads.csv")
    columns = {"l_acc", "roc_auc", "s_acc", "l_acc_direct", "roc_auc_direct", "class"}
    assert columns | extra_columns <= set(heads.columns)
    assert len(heads) == 3
    assert len(pd.read_csv(out / "pairs.csv")) == 3
    assert (out / "subsets.csv.gz").exists()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["task"] == task and "direct_path" in summary


def test_a_bad_task_param_gives_one_line(tmp_path, capsys):
    argv = ["train", "--task", "plurality", "--task-param", "size", "--out", str(tmp_path)]
    assert main(argv) == 1
    assert capsys.readouterr().err.strip() == (
        "headcoop train: error: --task-param needs KEY=VALUE, got 'size'"
    )
