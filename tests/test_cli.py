import json
import subprocess
import sys

import pytest

from headcoop.cli import main


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
        (["train", "--out", "x", "--epochs", "0"], "--epochs: expected a positive integer, got 0"),
        (["train", "--out", "x", "--d-model", "abc"], "expected a positive integer, got 'abc'"),
        (["train", "--out", "x", "--lr", "-1"], "expected a non-negative number"),
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
    config_path.write_text(json.dumps(config))
    capsys.readouterr()
    assert main(["eval", str(out)]) == 1
    assert "vocabulary mismatch for task 'count01'" in capsys.readouterr().err
