"""Nothing lost, nothing silent: bad output places, existing runs, divergence and bad values
each end in one line and a non-zero exit, before any work is done."""

import hashlib
import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from headcoop.cli import build_parser, main
from headcoop.config import ModelConfig
from headcoop.engine.run import evaluate
from headcoop.errors import HeadcoopError
from headcoop.loading.checkpoint import load_checkpoint, run_checkpoints
from headcoop.model import build_model
from headcoop.paper.plots_runs import table_figure
from headcoop.tasks import Count01

TINY = json.dumps(
    {
        "train": {"size": 64, "n01": [0, 10], "n2": [0, 10]},
        "val": {"size": 32, "n01": [11, 15], "n2": [0, 15]},
        "test": {"size": 32, "n01": [16, 20], "n2": [0, 20]},
    }
)
SMALL = ["--task-param", f"splits={TINY}", "--d-model", "4", "--n-heads", "2", "--quiet"]


def one_line_error(capsys, fragment: str) -> None:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert fragment in err, err
    assert "Traceback" not in err


def bad_places(tmp_path):
    a_file = tmp_path / "a_file"
    a_file.write_text("not a directory")
    return [
        (a_file, "is a file, not a directory"),
        (a_file / "below", "lies under"),
        ("/proc/headcoop-cannot-write-here", "cannot be written"),
    ]


def test_train_checks_its_output_place_before_training(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("headcoop.training.trainer.train_models", _must_not_run)
    for place, fragment in bad_places(tmp_path):
        assert main(["train", "--out", str(place), "--epochs", "1", *SMALL]) == 1
        one_line_error(capsys, fragment)


def test_analyze_checks_its_output_place_before_analysing(tmp_path, capsys, monkeypatch):
    run = tmp_path / "run"
    assert main(["train", "--out", str(run), "--epochs", "1", *SMALL]) == 0
    capsys.readouterr()
    monkeypatch.setattr("headcoop.heads.analyze.analyze", _must_not_run)
    for place, fragment in bad_places(tmp_path):
        assert main(["analyze", str(run), "--out", str(place), "--quiet"]) == 1
        one_line_error(capsys, fragment)


def test_figures_checks_out_and_cache_before_measuring(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("headcoop.paper.figures.make_figures", _must_not_run)
    for place, fragment in bad_places(tmp_path):
        for flag in ("--out", "--cache"):
            others = ["--cache", str(tmp_path / "c")] if flag == "--out" else []
            others += ["--out", str(tmp_path / "o")] if flag == "--cache" else []
            argv = ["figures", "--quick", "--quiet", flag, str(place), *others]
            assert main(argv) == 1
            one_line_error(capsys, fragment)


def test_an_existing_run_is_refused_without_resume_or_overwrite(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "--out", str(run), "--epochs", "3", "--seed", "7", *SMALL]) == 0
    capsys.readouterr()
    assert main(["train", "--out", str(run), "--epochs", "2", *SMALL]) == 1
    one_line_error(capsys, "already holds a training run (last epoch 3)")
    assert [e for e, _ in run_checkpoints(run)] == [1, 2, 3]

    assert main(["train", "--out", str(run), "--epochs", "2", "--overwrite", *SMALL]) == 0
    epochs = run_checkpoints(run)
    assert [e for e, _ in epochs] == [1, 2]  # the old run is gone whole
    seeds = {load_checkpoint(path)[1]["train"]["seed"] for _, path in epochs}
    assert seeds == {0} and load_checkpoint(run)[1]["train"]["epoch"] == 2


def test_resume_and_overwrite_exclude_each_other(capsys):
    with pytest.raises(SystemExit) as info:
        main(["train", "--out", "x", "--resume", "--overwrite"])
    assert info.value.code == 2
    one_line_error(capsys, "not allowed with argument")


@pytest.mark.parametrize("flags", [["--lr", "1e6"], ["--weight-decay", "1e9"]])
def test_divergence_stops_with_one_line_and_keeps_finite_checkpoints(flags, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "--out", str(run), "--epochs", "5", *flags, *SMALL]) == 1
    one_line_error(capsys, "training diverged at epoch")
    for _, path in run_checkpoints(run):
        load_checkpoint(path)  # every checkpoint kept is finite (it would refuse otherwise)
    assert not (run / "final").exists()


def test_a_checkpoint_with_a_nan_weight_is_refused_by_name(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "--out", str(run), "--epochs", "1", *SMALL]) == 0
    capsys.readouterr()
    weights = run / "epoch_0001" / "model.safetensors"
    state = load_file(weights)
    state["blocks.0.attn.W_V"][0, 0, 0] = float("nan")
    save_file(state, weights)
    config_file = weights.parent / "config.json"  # saved as written, checksum and all
    config = json.loads(config_file.read_text())
    config["weights_sha256"] = hashlib.sha256(weights.read_bytes()).hexdigest()
    config_file.write_text(json.dumps(config))
    for command in (["eval", str(run)], ["analyze", str(run), "--out", str(tmp_path / "a")]):
        assert main(command) == 1
        one_line_error(capsys, "tensor 'blocks.0.attn.W_V' holds NaN or infinite values")


def test_full_sequences_longer_than_the_context_are_refused():
    task = Count01()
    model = build_model(ModelConfig(n_ctx=64), len(task.vocab), seed=0)
    examples = torch.tensor([[3, 4, 5], [40, 40, 0]])  # the second is 83 tokens long
    with pytest.raises(HeadcoopError, match="example 1 is 83 tokens long, beyond the model's"):
        evaluate(model, task, examples, mode="full")
    assert evaluate(model, task, examples)["answer"] in (0.0, 0.5, 1.0)  # bags have no limit


def test_a_parse_error_quotes_a_window_not_the_whole_input():
    text = "0" * 1_000_000 + "x" + "1" * 1_000_000 + "=4"
    with pytest.raises(HeadcoopError) as info:
        Count01().parse(text)
    message = str(info.value)
    assert "bad token 'x' at position 1000000" in message and len(message) < 200


def test_every_train_setting_shows_its_default():
    train = build_parser()._subparsers._group_actions[0].choices["train"]
    text = train.format_help()
    for flag in ("--epochs", "--d-model", "--n-heads", "--d-head", "--batch-size", "--lr"):
        action = next(a for a in train._actions if flag in a.option_strings)
        assert action.help and "%(default)" not in action.help
        assert flag in text
    assert text.count("(default:") >= 14


def test_table_figures_are_tall_enough_for_every_row():
    import pandas as pd

    frame = pd.DataFrame({f"a long column name {i}": range(8) for i in range(9)})
    fig = table_figure(frame, "t")
    table = fig.data[0]
    margin = fig.layout.margin
    needed = table.header.height + len(frame) * table.cells.height + margin.t + margin.b
    assert fig.layout.height >= needed


def _must_not_run(*args, **kwargs):
    raise AssertionError("work started before the output place was checked")
