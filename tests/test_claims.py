"""The claims lab: claims as data, their statistics, the grid, and the lab end to end."""

import json
import math

import pandas as pd
import pytest

import headcoop.training.sweep as sweep
from headcoop.cli import main
from headcoop.config import TrainConfig
from headcoop.metrics.definitions import Definition
from headcoop.paper.claims import BY_ID, CLAIMS
from headcoop.paper.evidence import Evidence, Reading
from headcoop.paper.lab import Setting, factorial_settings, one_factor_settings, setting
from headcoop.paper.plan import LabGrid, Plan


def evidence(**changes) -> Evidence:
    """Evidence of a made-up 4-head model: heads 0 and 1 successful, 2 failed, 3 mixed."""
    heads = pd.DataFrame(
        {
            "head": [0, 1, 2, 3],
            "s_acc": [0.99, 0.985, 0.52, 0.8],
            "class": ["successful", "successful", "failed", "mixed"],
            "l_acc": [0.5, 0.5, 0.9, 0.6],
            "l_acc_direct": [0.95, 0.5, 0.5, 0.5],
            "roc_auc": [0.6] * 4,
            "roc_auc_direct": [0.7] * 4,
            "w01": [0.8, 1.6, 30.0, 1.0],
            "w02": [20.0, 40.0, 1.0, 5.0],
            "eos_l_acc": [1.0, 1.0, 0.99, 1.0],
            "eos_l_acc_direct": [1.0] * 4,
        }
    )
    pairs = pd.DataFrame(
        {
            "heads": ["0 1", "0 2", "0 3", "1 2", "1 3", "2 3"],
            "s_acc": [0.995, 0.98, 0.99, 0.99, 0.99, 0.85],
            "l_acc": [0.85, 0.5, 0.5, 0.5, 0.5, 0.5],
            "l_acc_direct": [0.9] * 6,
            "eos_l_acc": [1.0, 1.0, 1.0, 0.9, 1.0, 1.0],
            "eos_l_acc_direct": [1.0] * 6,
        }
    )
    subsets = pd.DataFrame(
        {
            "size": [1, 2, 3, 4],
            "s_acc": [0.82, 0.97, 0.99, 0.999],
            "roc_auc": [0.6, 0.8, 0.9, 0.97],
            "l_acc": [0.6, 0.7, 0.92, 0.98],
            "l_acc_direct": [0.6, 0.95, 0.99, 1.0],
            "roc_auc_direct": [0.7, 0.9, 0.95, 1.0],
        }
    )
    ratios = (1e-3, 0.1, 1.0, 10.0, 1e3, 1e-3, 1e3)
    interventions = pd.DataFrame(
        {
            "sweep": ["w01"] * 5 + ["w02"] * 2,
            "ratio": ratios,
            "mean": [0.6, 0.96, 0.99, 0.97, 0.5, 0.9, 0.99],
            "std": [0.1, 0.01, 0.005, 0.02, 0.1, 0.05, 0.01],
        }
    )
    base = Evidence(heads, pairs, subsets, interventions, 0.5, [0.5, 0.5], 0.995, 50, [0.99] * 4)
    return Evidence(**{**base.__dict__, **changes})


def test_claims_have_unique_ids_and_calibration_claims_come_first():
    assert len(BY_ID) == len(CLAIMS)
    flags = [c.calibration for c in CLAIMS]
    assert flags == sorted(flags, reverse=True) and sum(flags) >= 15
    for claim in CLAIMS:
        assert claim.low <= claim.high and claim.rationale and claim.section


def test_a_claim_holds_within_its_bounds_and_never_on_nan():
    claim = BY_ID["classes.successful"]
    assert claim.holds(0.3) and claim.holds(0.7) and not claim.holds(0.71)
    assert not claim.holds(math.nan)
    assert claim.band() == "[0.3, 0.7]" and BY_ID["attention.w02"].band() == ">= 10"


def test_statistics_read_the_evidence_by_the_papers_definitions():
    e = evidence()
    value = {c.id: c.value(e) for c in CLAIMS}
    assert value["classes.successful"] == 0.5 and value["classes.mixed"] == 0.25
    assert value["l_acc.single_heads"] == 2  # 0.9 and 0.6 are more than 5 points above 0.5
    assert value["l_acc.pairs"] == 1
    assert value["subsets.s_acc"] == 0.999 and value["subsets.roc_auc"] == 0.97
    assert value["subsets.l_acc_strong"] == 3 / 4  # size 3 is the first mean >= 0.9
    assert math.isnan(value["subsets.l_acc_perfect"])  # no size reaches 0.999
    assert value["attention.w01"] == pytest.approx(1.2)  # median of 0.8 and 1.6
    assert value["attention.w02"] == 30.0
    assert value["interventions.w01_plateau"] == 0.96
    assert value["interventions.w01_drop"] == pytest.approx(0.99 - 0.55)
    assert value["interventions.w02_gain"] == pytest.approx(0.09)
    assert value["interventions.w02_variance"] == pytest.approx(0.04)
    assert value["eos.single_heads"] == 0.75 and value["eos.pairs"] == 5 / 6
    assert value["training.bipolar"] == 0.0
    assert value["pairs.below_stronger"] == 1 / 6  # pair 0 2: 0.98 below head 0's 0.99


DIRECT = Reading(Definition.DIRECT)


def test_the_direct_definition_swaps_every_l_acc_and_auc_column():
    e = evidence()
    claim = BY_ID["subsets.l_acc_perfect"]
    assert math.isnan(claim.value(e)) and claim.value(e, DIRECT) == 1.0  # only all 4 heads
    assert BY_ID["l_acc.single_heads"].value(e, DIRECT) == 1
    assert BY_ID["classes.successful"].value(e, DIRECT) == 0.5  # s-acc has one definition


def test_claims_without_their_evidence_do_not_hold():
    e = evidence(snapshot_s_acc=None, heads=evidence().heads.assign(s_acc=0.6))
    for claim_id in ("training.bipolar", "attention.w01", "attention.w02"):
        assert math.isnan(BY_ID[claim_id].value(e)) and not BY_ID[claim_id].holds(math.nan)


def test_evidence_survives_json():
    e = evidence()
    back = Evidence.from_result(
        json.loads(json.dumps(e.to_json())) | {"snapshots": {"7": {"s_acc": [0.1] * 4}}, "seed": 3}
    )
    pd.testing.assert_frame_equal(back.pairs, e.pairs)
    assert back.snapshot_epoch == 7 and back.snapshot_s_acc == [0.1] * 4


def test_one_factor_settings_change_one_factor_each():
    plan = Plan()
    settings = one_factor_settings(plan)
    assert settings[0] == Setting("default") and len({s.name for s in settings}) == len(settings)
    assert all(len(s.changes) == 1 for s in settings[1:])
    assert len(settings) == 1 + sum(len(levels) - 1 for _, levels in plan.lab.factors)
    model, train = setting({"layernorm": False, "optimizer": "sgd"}).configs(plan)
    assert not model.layernorm and train.optimizer == "sgd" and train.lr == TrainConfig().lr


def test_the_factorial_crosses_the_factors_that_gain_most_at_their_best_levels():
    effects = pd.DataFrame(
        {
            "factor": ["lr", "lr", "weight_decay", "dropout", "epochs"],
            "level": [3e-3, 1e-2, 1.0, 0.0, 200],
            "gain": [2.0, 1.0, 1.5, -1.0, 0.5],
        }
    )
    names = {s.name for s in factorial_settings(Plan(lab=LabGrid(factorial=2)), effects)}
    assert names == {"lr=0.003 weight_decay=1.0"}
    three = factorial_settings(Plan(lab=LabGrid(factorial=3)), effects)
    assert len(three) == 4 and all(len(s.changes) > 1 for s in three)  # 2^3 minus 4 known
    assert not any("dropout" in s.name for s in three)  # a factor that only loses is left out


def test_the_quick_lab_writes_every_output_and_reruns_from_its_cache(tmp_path, monkeypatch):
    """What `make claims QUICK=1` runs."""
    out, cache = tmp_path / "claims", tmp_path / "cache"
    args = ["claims", "--quick", "--out", str(out), "--cache", str(cache), "--quiet", "--no-png"]
    assert main(args) == 0
    claims = pd.read_csv(out / "claims.csv")
    assert list(claims.columns) == [
        *("setting", "seed", "claim", "statistic", "paper", "holds", "holds_liblinear")
    ]
    settings = pd.read_csv(out / "settings.csv")
    plan = Plan.quick()
    assert len(claims) == len(settings) * len(plan.lab.seeds) * len(CLAIMS)
    assert set(claims["setting"]) == set(settings["setting"]) and "default" in set(
        claims["setting"]
    )
    assert set(settings["kind"]) <= {"default", "one factor", "factorial"}
    summary = pd.read_csv(out / "summary.csv", index_col=0)
    shares = claims.groupby(["setting", "claim"])["holds"].mean()
    for (name, claim), share in shares.items():
        assert summary.loc[name, claim] == pytest.approx(share)
    selected = json.loads((out / "selected.json").read_text())
    assert summary["calibration_held"].max() == pytest.approx(
        summary.loc[selected["setting"], "calibration_held"]
    )
    assert (out / "heatmap.html").stat().st_size > 0
    assert "claims lab" in (out / "claims.html").read_text()
    factors = pd.read_csv(out / "factors.csv")
    assert set(factors["claim"]) == {c.id for c in CLAIMS}

    def no_training(*args, **kwargs):
        raise AssertionError("a cached setting was trained again")

    monkeypatch.setattr(sweep, "train_stack", no_training)
    assert main(args) == 0
    pd.testing.assert_frame_equal(pd.read_csv(out / "claims.csv"), claims)


def test_the_calibrated_plan_trains_under_the_selected_setting(tmp_path, capsys):
    selected = {
        "setting": "weight_decay=1.0 layernorm=False",
        "layernorm": False,
        "train": {**TrainConfig().key_dict(), "weight_decay": 1.0},
    }
    plan = Plan.calibrated(selected)
    assert not plan.model.layernorm and plan.train.weight_decay == 1.0
    assert plan.table1 == Plan.paper().table1 and plan.key() != Plan.paper().key()
    lab = str(tmp_path / "nowhere")
    assert main(["figures", "--calibrated", lab, "--out", str(tmp_path), "--no-png"]) == 1
    assert "selected.json is missing: run the claims lab first" in capsys.readouterr().err
