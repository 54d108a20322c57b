"""`make figures QUICK=1`: the whole pipeline end to end, and the report in a real browser."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

import headcoop.paper.compute as compute
from headcoop.heads import plots as plots_heads
from headcoop.paper import plots_runs
from headcoop.paper.claims import BY_ID
from headcoop.paper.comparison import compare_with_paper
from headcoop.paper.figures import make_figures
from headcoop.paper.items import ITEMS as REPORT_ITEMS
from headcoop.paper.plan import Plan

ITEMS = [f"fig{n:02d}" for n in range(1, 16)] + ["table1", "cooperation", "appendix_a"]
CHROMIUM = shutil.which("chromium")


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> Path:
    """Run `headcoop figures --quick` (what `make figures QUICK=1` runs) into a fresh cache."""
    root = tmp_path_factory.mktemp("figures")
    command = [sys.executable, "-m", "headcoop.cli", "figures", "--quick", "--quiet"]
    command += ["--out", str(root / "out"), "--cache", str(root / "cache")]
    command += ["--claims", str(root / "no-lab")]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "report:" in done.stdout
    return root


def test_every_item_is_written_with_its_data(report):
    out = report / "out"
    for item in ITEMS:
        assert (out / f"{item}.html").stat().st_size > 1000, item
        if CHROMIUM:
            assert (out / f"{item}.png").stat().st_size > 1000, item
    assert (out / "plotly.min.js").exists()
    table1 = pd.read_csv(out / "table1.csv")
    assert len(table1) == len(Plan.quick().table1)
    assert {"share perfect (liblinear)", "share >= 98% (liblinear)"} <= set(table1.columns)
    for name in ("fig02_grid.csv", "table1_models.csv", "fig10_14_trajectories.csv"):
        assert not pd.read_csv(out / "data" / name).empty
    summary = json.loads((out / "summary.json").read_text())
    plan = Plan.quick()
    assert sum(summary["head_classes_by_seed"]["0"].values()) == plan.model.n_heads
    assert len(summary["table1"]) == len(plan.table1)
    assert summary["random_heads"]["n"] == plan.random_heads
    assert -1 <= summary["pearson_r_weighted_s_acc_accuracy"] <= 1
    assert ("skipped" in summary["png"]) == (CHROMIUM is None)
    assert set(summary["seconds"]["stages"]) >= {"Table 1", "Fig 2 grid", "trajectories"}
    assert summary["machine"]["cores"] >= 1 and summary["machine"]["torch"]
    index = (out / "index.html").read_text()
    for seed in plan.main_seeds:  # each main model's explorer, linked from the report
        page = out / "explore" / f"seed_{seed}" / "explorer.html"
        assert f'href="explore/seed_{seed}/explorer.html"' in index
        assert page.read_text().count('"name":"L0H') >= plan.model.n_heads


def test_the_report_lists_every_item_once_from_the_registry():
    assert [item.slug for item in REPORT_ITEMS] == ITEMS


def test_the_comparison_judges_the_registrys_claims_on_every_main_model(report):
    summary = json.loads((report / "out" / "summary.json").read_text())
    n_models = len(Plan.quick().main_seeds)
    assert set(summary["claims"]) == set(BY_ID)
    assert all(len(judged["values"]) == n_models for judged in summary["claims"].values())

    def row(claim_id: str, rows: list[dict]) -> dict:
        (found,) = [r for r in rows if r["paper"].startswith(BY_ID[claim_id].finding)]
        return found

    eos = row("eos.pairs", summary["paper_comparison"])
    assert {"verdict", "verdict_direct", "measured_direct"} <= set(eos)
    assert "verdict_direct" not in row("classes.successful", summary["paper_comparison"])
    assert "verdict_liblinear" in row("classes.successful", summary["paper_comparison"])
    assert "verdict_liblinear" not in eos  # rests on l-acc, not on s-acc
    judged = summary["claims"]["eos.pairs"]
    judged["holds"], judged["holds_direct"] = [False] * n_models, [True] * n_models
    eos = row("eos.pairs", compare_with_paper(summary))
    assert (eos["verdict"], eos["verdict_direct"]) == ("disagrees", "agrees")
    (semantics,) = [r for r in summary["paper_comparison"] if r["paper"].startswith("on the sem")]
    (syntax,) = [r for r in summary["paper_comparison"] if r["paper"].startswith("only the syn")]
    verdicts = {m: row["verdict"] for m, row in summary["cooperation"].items()}
    ensemble = all(verdicts[m] == "substitutes" for m in ("s_acc", "l_acc", "roc_auc"))
    assert semantics["verdict"] == ("agrees" if ensemble else "disagrees")
    together = verdicts["eos_l_acc"] == "complements"
    assert syntax["verdict"] == ("agrees" if together else "disagrees")
    html = (report / "out" / "index.html").read_text()
    assert "with the direct path kept" in html and "direct path (embedding" in html
    assert "make claims" in html  # no lab in this cache: the report says how to run it


def test_a_rerun_reads_the_cache_instead_of_training(report, tmp_path, monkeypatch):
    def no_training(*args, **kwargs):
        raise AssertionError("cached work was redone")

    monkeypatch.setattr(compute, "train_stack", no_training)
    monkeypatch.setattr(compute, "run_sweep", no_training)
    monkeypatch.setattr(compute, "analyze", no_training)
    summary = make_figures(Plan.quick(), tmp_path, report / "cache", png=False)
    assert summary["png"].startswith("PNGs were not asked for")
    assert (tmp_path / "index.html").exists()


def render(page: Path, profile: Path) -> tuple[str, list[str]]:
    """The DOM of ``page`` after headless Chromium ran its scripts, and its console lines."""
    flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
        "--enable-logging=stderr",
        "--v=0",
        "--virtual-time-budget=30000",
        "--dump-dom",
    ]
    done = subprocess.run(
        [CHROMIUM, *flags, page.resolve().as_uri()], capture_output=True, text=True, timeout=120
    )
    return done.stdout, [line for line in done.stderr.splitlines() if ":CONSOLE" in line]


@pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium (make test installs it)")
def test_the_report_renders_every_figure_without_console_errors(report, tmp_path):
    dom, console = render(report / "out" / "index.html", tmp_path / "profile")
    assert console == []
    rendered = dom.count('class="plotly-graph-div js-plotly-plot"')  # plotly marks drawn plots
    assert rendered == len(ITEMS)


@pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium (make test installs it)")
def test_the_browser_check_sees_a_script_error(tmp_path):
    page = tmp_path / "bad.html"
    page.write_text("<html><body><script>throw new Error('boom')</script></body></html>")
    _, console = render(page, tmp_path / "profile")
    assert any("boom" in line for line in console)


def test_pair_gain_is_a_pair_minus_its_stronger_head():
    heads = pd.DataFrame({"head": [0, 1, 2], "s_acc": [0.6, 0.9, 0.7]})
    pairs = pd.DataFrame({"heads": ["0 1", "0 2", "1 2"], "s_acc": [0.95, 0.65, 0.85]})
    gain = plots_heads.pair_gain(heads, pairs)
    assert gain[0, 0] == 0.6 and gain[1, 1] == 0.9
    assert gain[0, 1] == pytest.approx(0.05) and gain[1, 0] == pytest.approx(0.05)
    assert gain[1, 2] == pytest.approx(-0.05) and gain[0, 2] == pytest.approx(-0.05)


def test_separator_segments_stay_inside_the_plot_box():
    line = pd.Series({"w_x": 1.0, "w_y": -1.0, "b": 0.0})  # y = x
    xs, ys = plots_heads._separator_segment(line, -1.0, 2.0, 0.0, 1.0)
    assert xs == [0.0, 1.0] and ys == [0.0, 1.0]
    assert (
        plots_heads._separator_segment(
            pd.Series({"w_x": 0.0, "w_y": 1.0, "b": -5.0}), 0.0, 1.0, 0.0, 1.0
        )
        is None
    )


def test_table1_counts_successful_and_perfect_heads():
    rows = [
        (2, 1, s, 0, a) for s, a in [(0, 1.0), (1, 0.99), (2, 0.5)]
    ]  # d, heads, seed, head, s-acc
    rows += [(2, 2, 0, h, a) for h, a in [(0, 1.0), (1, 0.97)]]
    frame = pd.DataFrame(rows, columns=["d_model", "n_heads", "seed", "head", "s_acc"])
    frame["test_accuracy"] = 1.0
    table = plots_runs.table1_frame(frame).set_index("heads per exp")
    assert table.loc[1, "number of exps"] == 3 and table.loc[1, "total heads"] == 3
    assert table.loc[1, "heads with s-acc >= 98%"] == 2 and table.loc[1, "perfect heads"] == 1
    assert table.loc[2, "total heads"] == 2 and table.loc[2, "heads with s-acc >= 98%"] == 1


def test_the_comparison_agrees_when_a_claim_holds_on_most_models(report):
    summary = json.loads((report / "out" / "summary.json").read_text())
    finding = BY_ID["classes.successful"].finding

    def verdict() -> str:
        (row,) = [r for r in compare_with_paper(summary) if r["paper"].startswith(finding)]
        return row["verdict"]

    summary["claims"]["classes.successful"]["holds"] = [True, False]
    assert verdict() == "disagrees"  # one of two is not most
    summary["claims"]["classes.successful"]["holds"] = [True, True, False]
    assert verdict() == "agrees"
