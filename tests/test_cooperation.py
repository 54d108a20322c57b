"""The cooperation study: cooperation.csv across tasks, its page, and a rerun that reuses."""

import json

import pandas as pd
import pytest

from headcoop.cli import main
from headcoop.metrics.interactions import verdict


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    out = tmp_path_factory.mktemp("cooperation")
    args = ["cooperation", "--quick", "--seeds", "1", "--tasks", "plurality", "induction"]
    assert main([*args, "--out", str(out)]) == 0
    return out, args


def test_the_table_has_a_row_per_task_seed_and_metric(study):
    out, _ = study
    table = pd.read_csv(out / "cooperation.csv")
    assert set(table["task"]) == {"plurality", "induction"}
    expected = {"l_acc", "roc_auc", "l_acc_direct", "l_acc_mean", "s_acc"}
    for task, rows in table.groupby("task"):
        assert expected <= set(rows["metric"]), task
        assert rows["exact"].all()  # 16 and 8 heads: every set measured
    shares = table.filter(like="share_size_")
    assert shares.sum(axis=1, skipna=True).round(9).eq(1.0).all()
    for index, said in zip(table["cooperation_index"], table["verdict"], strict=True):
        assert verdict(index) == said
    about = json.loads((out / "summary.json").read_text())
    assert about["seeds"] == 1 and "machine" in about and about["seconds"] > 0
    assert set(about["shapes"]) == {"plurality", "induction"}
    assert "Do heads compete or cooperate?" in (out / "cooperation.html").read_text()


def test_a_rerun_reuses_every_model_and_analysis(study, caplog):
    out, args = study
    before = (out / "cooperation.csv").read_text()
    weights = sorted(out.rglob("*.safetensors"))
    stamps = [p.stat().st_mtime_ns for p in weights]
    with caplog.at_level("INFO", logger="headcoop.cooperation"):
        assert main([*args, "--out", str(out)]) == 0
    assert not [r for r in caplog.records if "training" in r.message or "analysing" in r.message]
    assert [p.stat().st_mtime_ns for p in weights] == stamps
    assert (out / "cooperation.csv").read_text() == before


def test_a_task_without_a_usual_shape_is_one_line(tmp_path, capsys):
    code = main(["cooperation", "--quick", "--tasks", "nope", "--out", str(tmp_path / "c")])
    assert code == 1
    err = capsys.readouterr().err
    assert "no usual shape for task(s) nope" in err and len(err.strip().splitlines()) == 1
