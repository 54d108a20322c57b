"""What `analyze` measures is decided from sizes, never from a clock: the same inputs give the
same plan, and the same files, at any load; ``--subsets`` forces the choice."""

import json
import time

import pytest

from headcoop import Count01, ModelConfig, SplitSpec, build_model
from headcoop.cli import main
from headcoop.errors import HeadcoopError
from headcoop.heads import analyze as analyze_module
from headcoop.heads.analyze import analyze
from headcoop.heads.subset_plan import SetSizes, plan_subsets
from headcoop.loading.checkpoint import save_checkpoint

PAPER = SetSizes(16, 16, 2, 7000, 1500, 1, 2, 3)
"""The paper's model on Count01's default splits: two classes, one separator."""
SUCCESSOR_WIDE = SetSizes(16, 16, 8, 6000, 6000, 145, 145, 3)
"""145 classes and 16 heads: every set's ROC AUC would take hours."""
INDUCTION_24 = SetSizes(16, 16, 2, 4000, 4000, 24, 24, 3)
"""24 classes: l-acc and ROC AUC of every set fit, s-acc of every set does not."""


def test_the_paper_model_measures_every_set_with_s_acc():
    plan = plan_subsets(True, PAPER)
    assert plan.every_set and plan.s_acc and plan.about["measured"] == "all"
    assert plan.about["reason"] == "within the budget"


def test_many_classes_sample_the_sets_or_leave_s_acc_to_pairs():
    wide = plan_subsets(True, SUCCESSOR_WIDE)
    assert wide.about["measured"] == "sampled" and "over the budget" in wide.about["reason"]
    assert len(wide.masks) < 2**16
    classes = plan_subsets(True, INDUCTION_24)
    assert classes.every_set and not classes.s_acc and "s-acc" in classes.about["reason"]


def test_a_forced_choice_wins_over_the_cost_model():
    assert plan_subsets("sampled", PAPER).about["measured"] == "sampled"
    forced = plan_subsets("all", SUCCESSOR_WIDE)
    assert forced.every_set and forced.s_acc and forced.about["budget_seconds"] is None
    assert plan_subsets("none", PAPER).masks is None
    with pytest.raises(HeadcoopError, match="subsets must be one of"):
        plan_subsets("some", PAPER)


def test_forward_passes_cost_more_where_fewer_sets_share_one():
    """The ablation engine runs one pass per distinct set of earlier heads: a last layer of
    fewer heads shares each pass among fewer sets."""
    one_layer = SetSizes(8, 8, 2, 1000, 1000, 1, 2, 3, pass_flops=1e9, tail_flops=1e6)
    two_layers = SetSizes(8, 4, 2, 1000, 1000, 1, 2, 3, pass_flops=1e9, tail_flops=1e6)
    assert two_layers.logit_seconds() > 10 * one_layer.logit_seconds()


def _small_task() -> Count01:
    spec = SplitSpec(300, (0, 20), (0, 20))
    return Count01(splits={"train": spec, "val": spec, "test": spec})


def test_a_slow_machine_gives_the_same_analysis(monkeypatch):
    """Every clock reading a thousand seconds after the last (a machine loaded past any
    budget) changes the timings in summary.json and nothing else."""
    task = _small_task()
    model = build_model(ModelConfig(n_heads=4), len(task.vocab), seed=0)
    idle = analyze(model, task)
    now = [time.perf_counter()]

    def crawling() -> float:
        now[0] += 1000.0
        return now[0]

    monkeypatch.setattr(analyze_module.time, "perf_counter", crawling)
    loaded = analyze(model, task)
    assert loaded.summary["seconds"]["cache"] >= 1000  # the clock was slowed
    assert loaded.summary["subsets"] == idle.summary["subsets"]
    assert loaded.subsets.to_pandas().equals(idle.subsets.to_pandas())


def test_subsets_flag_forces_sampled_sets_and_stores_the_reason(tmp_path):
    task = _small_task()
    model = build_model(ModelConfig(n_heads=5), len(task.vocab), seed=0)
    save_checkpoint(tmp_path / "ck", model, {"task": task.to_config()})
    out = tmp_path / "out"
    args = ["analyze", str(tmp_path / "ck"), "--out", str(out), "--quiet"]
    assert main([*args, "--subsets", "sampled"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["subsets"]["measured"] == "sampled"
    assert "asked for sampled" in summary["subsets"]["reason"]
    assert summary["subsets"]["sets"] == 2**5 - 1  # every size has fewer sets than the sample


def test_the_paper_models_own_sizes_give_every_set_with_s_acc():
    """The sizes `analyze` reads off the paper's model and Count01's default splits."""
    from headcoop.engine.cache import collect
    from headcoop.heads.set_scorer import SetScorer, set_sizes
    from headcoop.metrics.attribution import SetLogits

    task = Count01()
    model = build_model(ModelConfig(), len(task.vocab), seed=0)
    train, test = (collect(model, task, task.split(s)) for s in ("train", "test"))
    scorer = SetScorer(
        task, train, test, SetLogits.of(model, task, train, test, task.split("test"))
    )
    sizes = set_sizes(model, scorer)
    assert sizes == PAPER
    plan = plan_subsets(True, sizes)
    assert plan.every_set and plan.s_acc and plan.about["estimate_seconds"] < 300
