"""The claims search: an Optuna study over the lab's factors, kept in a journal that a rerun
extends and a killed run resumes, seeded by the grid, and its files."""

import json

import pandas as pd
import pytest

from headcoop.cli import main
from headcoop.paper.claims import CLAIMS
from headcoop.paper.plan import Plan, load_selected
from headcoop.paper.search import QUICK_SPACE, SearchRun, open_study, search, trial_setting

SEARCH = ["claims", "--quick", "--no-png", "--quiet"]


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """A quick grid, then a search of 8 trials, in one lab directory and cache."""
    root = tmp_path_factory.mktemp("search")
    out, cache = root / "lab", root / "cache"
    where = ["--out", str(out), "--cache", str(cache)]
    assert main([*SEARCH, *where]) == 0  # the grid
    assert main([*SEARCH, "--search", "8", *where]) == 0
    return out, cache, where


def test_the_search_writes_its_files(lab):
    out, _, _ = lab
    trials = pd.read_csv(out / "trials.csv")
    assert (trials["source"] == "search").sum() == 8
    assert set(QUICK_SPACE.distributions()) <= set(trials.columns)
    assert {c.id for c in CLAIMS} <= set(trials.columns)
    calibration = [c.id for c in CLAIMS if c.calibration]
    assert trials["held"].round(6).tolist() == trials[calibration].sum(axis=1).round(6).tolist()
    pareto = pd.read_csv(out / "pareto.csv")
    assert len(pareto) >= 1 and set(pareto["trial"]) <= set(trials["trial"])
    for _, row in pareto.iterrows():  # no finished trial dominates a Pareto trial
        better = (trials["held"] >= row["held"]) & (trials["cost"] <= row["cost"])
        strictly = (trials["held"] > row["held"]) | (trials["cost"] < row["cost"])
        assert not (better & strictly).any()
    importance = pd.read_csv(out / "importance.csv")
    assert set(importance["factor"]) <= set(QUICK_SPACE.distributions())
    selected = load_selected(out)
    best = pareto.sort_values(["held", "cost"], ascending=[False, True]).iloc[0]
    assert selected["setting"] == best["setting"]
    assert Plan.calibrated(selected).train.epochs == selected["train"]["epochs"]


def test_the_grid_seeds_the_study(lab):
    out, _, _ = lab
    trials = pd.read_csv(out / "trials.csv")
    grid = pd.read_csv(out / "claims.csv")
    seeded = trials[trials["source"] == "grid"]
    assert len(seeded) >= 1 and set(seeded["setting"]) <= set(grid["setting"])
    shares = grid.pivot_table(index="setting", columns="claim", values="holds")
    for _, row in seeded.iterrows():
        assert row[CLAIMS[0].id] == pytest.approx(shares.loc[row["setting"], CLAIMS[0].id])


def test_a_larger_search_keeps_the_trials_and_adds(lab):
    out, _, where = lab
    before = pd.read_csv(out / "trials.csv")
    assert main([*SEARCH, "--search", "10", *where]) == 0
    after = pd.read_csv(out / "trials.csv")
    assert (after["source"] == "search").sum() == 10
    kept = after[after["trial"].isin(before["trial"])].reset_index(drop=True)
    pd.testing.assert_frame_equal(kept, before)
    assert after.loc[after["source"] == "search", "setting"].is_unique  # new settings asked


def test_a_killed_search_asks_its_running_trials_again(lab):
    """A trial left running (its process killed after asking) is failed and asked again with
    the same parameters before any new one."""
    from optuna.trial import TrialState

    out, cache, _ = lab
    plan = Plan.quick()
    study = open_study(plan, out)
    orphan = study.ask(QUICK_SPACE.distributions())  # then the process "dies"
    done = sum(t.user_attrs.get("source") == "search" for t in study.get_trials(
        states=(TrialState.COMPLETE,)))  # fmt: skip
    study = search(plan, cache, out, done + 1, SearchRun(batch=1))
    again = [t for t in study.get_trials() if t.params == orphan.params]
    states = sorted(t.state.name for t in again)
    assert states == ["COMPLETE", "FAIL"]
    assert trial_setting(plan, orphan.params).name in {t.user_attrs.get("setting") for t in again}
    finished = study.get_trials(states=(TrialState.COMPLETE,))
    settings = [t.user_attrs["setting"] for t in finished if t.user_attrs["source"] == "search"]
    assert len(settings) == len(set(settings))  # a resumed search asks no setting twice


def test_two_plans_never_share_a_study(lab, tmp_path):
    out, _, _ = lab
    quick, paper = open_study(Plan.quick(), out), open_study(Plan.paper(), out)
    assert quick.study_name != paper.study_name and not paper.get_trials()
    summary = json.loads((out / "summary_search.json").read_text())
    assert summary["trials"] >= 8 and summary["machine"]["cores"] >= 1


def test_an_extended_search_asks_new_settings(tmp_path):
    """Two trials, then two more in a fresh sampler (as a new process has): the sampler's
    state comes from the study, so the later trials are not the first ones again."""
    plan, out, cache = Plan.quick(), tmp_path / "lab", tmp_path / "cache"
    search(plan, cache, out, 2, SearchRun(batch=2))
    study = search(plan, cache, out, 4, SearchRun(batch=2))
    params = [tuple(sorted(t.params.items())) for t in study.get_trials()]
    assert len(params) == 4 and len(set(params)) == 4
