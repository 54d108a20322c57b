import json

import pandas as pd
import pytest
import torch

from headcoop import Count01, HeadAnalysis, SplitSpec, build_model
from headcoop.cli import main
from headcoop.config import ModelConfig, TrainConfig
from headcoop.engine.batches import read_logits
from headcoop.engine.run import evaluate
from headcoop.errors import HeadcoopError
from headcoop.heads.analyze import analyze
from headcoop.metrics.classes import SUCCESSFUL
from headcoop.training.trainer import train
from tests.hooks import paper_logits_by_hook

HEAD_COLUMNS = [
    "head",
    "layer",
    "name",
    "s_acc",
    "l_acc",
    "roc_auc",
    "l_acc_direct",
    "roc_auc_direct",
    "l_acc_mean",
    "roc_auc_mean",
    "w01",
    "w02",
    "head_weight",
    "eos_l_acc",
    "eos_l_acc_direct",
    "eos_l_acc_mean",
    "class",
    "s_acc_liblinear",
    *("s_acc_low", "s_acc_high", "l_acc_low", "l_acc_high", "roc_auc_low", "roc_auc_high"),
    *("l_acc_low_direct", "l_acc_high_direct", "roc_auc_low_direct", "roc_auc_high_direct"),
    *("l_acc_low_mean", "l_acc_high_mean", "roc_auc_low_mean", "roc_auc_high_mean"),
]


@pytest.fixture(scope="module")
def result(trained, task):
    return analyze(trained, task)


def test_per_head_table(result):
    frame = result.heads_frame()
    assert list(frame.columns) == HEAD_COLUMNS
    assert len(frame) == 16
    assert frame["head_weight"].sum() == pytest.approx(1.0)
    assert ((frame["class"] == "successful") == (frame["s_acc"] >= SUCCESSFUL)).all()
    assert frame[["s_acc", "l_acc", "roc_auc", "eos_l_acc"]].stack().between(0, 1).all()


def test_all_subsets_agree_with_singles_pairs_and_the_model(result, trained, task):
    subsets = result.subsets.to_pandas()
    assert len(subsets) == 2**16
    by_heads = subsets.set_index("heads")
    heads = result.heads_frame()
    for metric in ("l_acc", "roc_auc", "s_acc"):
        singles = by_heads.loc[[str(h) for h in range(16)], metric].to_numpy()
        assert singles == pytest.approx(heads[metric].to_numpy(), abs=1e-6)
    everything = by_heads.loc[" ".join(map(str, range(16))), "l_acc_direct"]
    assert everything == pytest.approx(evaluate(trained, task, task.split("test"))["answer"])
    assert by_heads.loc["", "roc_auc_direct"] == pytest.approx(0.5)


def test_eos_l_acc_of_single_heads_follows_both_definitions(result, trained, task):
    """Pinned against hooks on the running model: the paper's head-only logits (embedding
    removed, LN scale frozen) and plain ablation of the other heads (direct path kept)."""
    examples = task.split("test")
    bags = task.bags(examples)
    eos = bags.targets[:, 1]
    heads = result.heads_frame()
    for head in range(16):
        keep = torch.zeros(16)
        keep[head] = 1.0
        paper = paper_logits_by_hook(trained, bags, keep)[:, 1]
        ablated = read_logits(
            trained, bags, [("blocks.0.attn.hook_z", lambda z, hook, k=keep: z * k[:, None])]
        )[:, 1]
        for column, logits in (("eos_l_acc", paper), ("eos_l_acc_direct", ablated)):
            accuracy = (logits.argmax(-1) == eos).float().mean().item()
            assert heads.loc[head, column] == pytest.approx(accuracy, abs=1e-6), (head, column)


def test_pairs_table(result):
    pairs = result.pairs_frame()
    assert len(pairs) == 120 and set(pairs["size"]) == {2}
    assert pairs["heads"].iloc[0] == "0 1"


def test_summary_counts_every_head_and_sizes_the_direct_path(result):
    assert sum(result.summary["classes"].values()) == 16
    assert 0.5 <= result.summary["majority_share"] < 0.6
    direct = result.summary["direct_path"]
    assert 0 < direct["decision_share"] < 1
    assert set(direct["accuracy_alone"]) == {"answer", "eos"}


def test_analyze_needs_a_task_for_a_bare_model(trained):
    with pytest.raises(HeadcoopError, match="needs a task"):
        analyze(trained)


def test_cli_writes_tables_and_summary(task, tmp_path, capsys):
    model = train(task, ModelConfig(d_model=8, n_heads=4), TrainConfig(epochs=2), out=tmp_path)
    out = tmp_path / "analysis"
    assert main(["analyze", str(tmp_path), "--out", str(out), "--quiet"]) == 0
    assert "heads: " in capsys.readouterr().out
    heads = pd.read_csv(out / "heads.csv")
    assert list(heads.columns) == HEAD_COLUMNS
    assert len(heads) == 4
    subsets = pd.read_csv(out / "subsets.csv.gz", keep_default_na=False)
    assert len(subsets) == 2**4 and subsets["size"].max() == 4
    assert len(pd.read_csv(out / "pairs.csv")) == 6
    summary = json.loads((out / "summary.json").read_text())
    assert summary["accuracy"]["answer"] == pytest.approx(
        evaluate(model, task, task.split("test"))["answer"]
    )
    assert set(summary["seconds"]) == {
        "cache",
        "singles_and_pairs",
        "all_subsets",
        "game_intervals",
    }


def test_a_saved_analysis_loads_back_equal(result, tmp_path):
    loaded = HeadAnalysis.load(result.save(tmp_path / "analysis"))
    assert loaded == result
    assert torch.equal(loaded.subsets.masks, result.subsets.masks)
    assert torch.equal(loaded.interactions.dividend, result.interactions.dividend)
    assert loaded.verdicts().equals(result.verdicts())
    changed = dict(result.heads, s_acc=[0.5, *result.heads["s_acc"][1:]])
    assert HeadAnalysis(changed, result.pairs, result.subsets, result.summary) != result


ROUND_TRIP_SHAPES = {
    "two layers, positions": ModelConfig(
        d_model=16, n_heads=2, d_head=4, n_layers=2, positional=True, n_ctx=48
    ),
    "one layer, MLP": ModelConfig(d_model=16, n_heads=3, d_head=4, d_mlp=24),
}


@pytest.mark.parametrize("shape", ROUND_TRIP_SHAPES)
@pytest.mark.parametrize("subsets", ["all", "sampled", "none"])
def test_every_kind_of_analysis_round_trips(shape, subsets, tmp_path):
    """Deeper models, MLPs, and analyses with every set, sampled sets (estimated
    interactions) or none."""
    spec = SplitSpec(60, n01=(0, 8), n2=(0, 8))
    task = Count01(splits={"train": spec, "val": spec, "test": spec})
    model = build_model(ROUND_TRIP_SHAPES[shape], len(task.vocab), seed=2)
    result = analyze(model, task, subsets=subsets)
    assert (result.subsets is None) == (subsets == "none")
    loaded = HeadAnalysis.load(result.save(tmp_path / "analysis"))
    assert loaded == result
    assert (loaded.interactions is None) == (result.interactions is None)
