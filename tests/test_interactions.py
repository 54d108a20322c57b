"""Interactions of a set function, on games whose answers are known, and against the
definitions computed the slow way (Shapley by permutations, dividends by alternating sums)."""

import itertools
import json
import math

import pytest
import torch

from headcoop.errors import HeadcoopError
from headcoop.metrics.interactions import (
    banzhaf_values,
    dividends,
    pair_interactions,
    set_sizes,
    shapley_values,
    spectrum,
    values_of,
)
from headcoop.metrics.subsets import all_subsets


def game(n: int, value) -> torch.Tensor:
    """v(S) for every set, in all_subsets order, from ``value(set of heads)``."""
    return torch.tensor(
        [value({i for i in range(n) if m[i]}) for m in all_subsets(n).tolist()],
        dtype=torch.float64,
    )


def test_an_additive_game_has_no_dividend_beyond_single_heads():
    weights = [0.3, -0.1, 0.5, 0.2]
    m = dividends(game(4, lambda s: 1.0 + sum(weights[i] for i in s)))
    sizes = set_sizes(4)
    assert torch.allclose(m[sizes >= 2], torch.zeros(1, dtype=torch.float64))
    assert m[0] == pytest.approx(1.0)
    assert torch.allclose(shapley_values(m), torch.tensor(weights, dtype=torch.float64))
    assert torch.allclose(pair_interactions(m), torch.zeros(4, 4, dtype=torch.float64))


def test_a_pair_that_is_needed_together_holds_all_the_mass():
    m = dividends(game(4, lambda s: float({1, 3} <= s)))
    assert m[0b1010] == pytest.approx(1.0) and m.abs().sum() == pytest.approx(1.0)
    assert shapley_values(m).tolist() == pytest.approx([0.0, 0.5, 0.0, 0.5])
    assert pair_interactions(m)[1, 3] == pytest.approx(1.0)
    assert banzhaf_values(m).tolist() == pytest.approx([0.0, 0.5, 0.0, 0.5])


def test_a_majority_vote_of_three_heads():
    m = dividends(game(3, lambda s: float(len(s) >= 2)))
    assert [m[0b011], m[0b101], m[0b110], m[0b111]] == pytest.approx([1.0, 1.0, 1.0, -2.0])
    assert shapley_values(m).tolist() == pytest.approx([1 / 3] * 3)
    assert pair_interactions(m)[0, 1] == pytest.approx(1.0 - 2.0 / 2)  # 0: +1 - 2/2


def _shapley_by_permutations(v: torch.Tensor, n: int) -> list[float]:
    phi = [0.0] * n
    for order in itertools.permutations(range(n)):
        code = 0
        for head in order:
            phi[head] += float(v[code | 1 << head] - v[code])
            code |= 1 << head
    return [p / math.factorial(n) for p in phi]


def test_the_fast_transforms_equal_the_definitions_on_random_games():
    torch.manual_seed(0)
    values = torch.rand(3, 2**5, dtype=torch.float64)  # three games at once
    m = dividends(values)
    assert torch.allclose(values_of(m), values)
    masks = all_subsets(5)
    for k in (0, 7, 19, 31):  # alternating sums over subsets
        subsets = [j for j in range(32) if (masks[j] <= masks[k]).all()]
        expected = sum((-1) ** int(masks[k].sum() - masks[j].sum()) * values[1, j] for j in subsets)
        assert m[1, k] == pytest.approx(float(expected))
    phi = shapley_values(m)
    assert phi[2].tolist() == pytest.approx(_shapley_by_permutations(values[2], 5))
    assert phi.sum(-1).tolist() == pytest.approx((values[:, -1] - values[:, 0]).tolist())
    total, absolute = spectrum(m)
    assert total.sum(-1).tolist() == pytest.approx(values[:, -1].tolist())
    assert (absolute >= total.abs() - 1e-12).all()


def test_a_game_must_have_one_value_per_set():
    with pytest.raises(HeadcoopError, match="2\\^n values"):
        dividends(torch.zeros(6))


def test_analyze_writes_the_interactions_of_every_metric(tmp_path):
    """What `headcoop analyze` writes on a Count01 checkpoint: the three files, Shapley values
    that sum to v(all) - v(none), dividends that are the alternating sums of subsets.csv.gz."""
    import pandas as pd

    from headcoop.cli import main

    from .test_robustness import SMALL

    run, out = tmp_path / "run", tmp_path / "analysis"
    assert main(["train", "--out", str(run), "--epochs", "2", *SMALL]) == 0
    assert main(["analyze", str(run), "--out", str(out), "--quiet"]) == 0
    subsets = pd.read_csv(out / "subsets.csv.gz", dtype={"heads": str}, keep_default_na=False)
    dividends_ = pd.read_csv(
        out / "interactions.csv.gz", dtype={"heads": str}, keep_default_na=False
    )
    shapley = pd.read_csv(out / "shapley.csv")
    pairs = pd.read_csv(out / "pair_interactions.csv")
    games = {f"{m}{s}" for m in ("l_acc", "roc_auc") for s in ("", "_direct", "_mean")}
    assert set(shapley["metric"]) == games | {"s_acc", "eos_l_acc"}  # eos: Count01's syntax
    assert len(pairs) == 8 * 1  # SMALL has two heads: one pair per metric
    value = {h: row for h, row in zip(subsets["heads"], subsets.to_dict("records"), strict=True)}
    for metric, phi in shapley.groupby("metric")["shapley"]:
        assert phi.sum() == pytest.approx(value["0 1"][metric] - value[""][metric], abs=1e-6)
        mine = dividends_[dividends_["metric"] == metric].set_index("heads")["dividend"]
        both = value["0 1"][metric] - value["0"][metric] - value["1"][metric] + value[""][metric]
        assert mine["0 1"] == pytest.approx(both, abs=1e-9)
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["interaction_spectrum"]) == set(shapley["metric"])
    page = (out / "report.html").read_text()
    for section in ("interaction spectrum", "pair interactions", "shapley values"):
        assert f'id="{section.replace(" ", "_")}"' in page, section
    assert "do the heads compete or cooperate?" in page


def test_the_exact_transforms_agree_with_shapiq():
    """shapiq's ExactComputer (Moebius, SV, BV, SII of order 2) on a random game of 5 heads."""
    import numpy as np
    import shapiq

    torch.manual_seed(1)
    values = torch.rand(2**5, dtype=torch.float64)
    bits = 1 << np.arange(5)
    computer = shapiq.ExactComputer(
        game=lambda coalitions: values[(coalitions * bits).sum(1)].numpy(), n_players=5
    )
    m = dividends(values)
    moebius, sv, bv = computer("Moebius"), computer("SV"), computer("BV")
    sii = computer("SII", order=2)
    for code in range(1, 32):
        assert m[code] == pytest.approx(moebius[tuple(np.flatnonzero(code & bits))], abs=1e-12)
    assert shapley_values(m).tolist() == pytest.approx([sv[(i,)] for i in range(5)], abs=1e-12)
    assert banzhaf_values(m).tolist() == pytest.approx([bv[(i,)] for i in range(5)], abs=1e-12)
    pairs = pair_interactions(m)
    for i, j in itertools.combinations(range(5), 2):
        assert pairs[i, j] == pytest.approx(sii[(i, j)], abs=1e-12)


def _synergy_game(masks: torch.Tensor) -> dict[str, torch.Tensor]:
    """20 heads: head k adds k / 100, heads 3 and 7 add 1 together; a second metric, doubled."""
    heads = masks.double()
    value = heads @ (torch.arange(20, dtype=torch.float64) / 100) + heads[:, 3] * heads[:, 7]
    return {"v": value, "twice": 2 * value}


def test_interactions_of_many_heads_are_estimated_within_their_stated_error():
    from headcoop.metrics.interactions import ESTIMATOR, estimated_interactions

    found = estimated_interactions(_synergy_game, 20, budget=4000)
    shapley = torch.arange(20, dtype=torch.float64) / 100
    shapley[[3, 7]] += 0.5
    pairs = torch.zeros(20, 20, dtype=torch.float64)
    pairs[3, 7] = pairs[7, 3] = 1.0
    assert found.metrics == ("v", "twice") and found.dividend is None
    assert found.about["estimator"] == ESTIMATOR and found.about["sets"] == 4000
    for k, scale in enumerate((1.0, 2.0)):
        assert (found.shapley[k] - scale * shapley).abs().max() < 0.05 * scale
        assert (found.pairs[k] - scale * pairs).abs().max() < 0.1 * scale
    assert "interaction_estimate" in found.summary()
    assert set(found.frames()) == {"shapley", "pair_interactions"}


def test_analyze_estimates_interactions_where_sets_are_sampled(tmp_path):
    """With no time for every set, the Shapley values and pair interactions come from the
    estimator; with a budget that covers every set of 3 heads, they equal the exact ones."""
    from headcoop import Count01, ModelConfig, SplitSpec, build_model
    from headcoop.heads.analyze import analyze

    spec = SplitSpec(300, (0, 20), (0, 20))
    task = Count01(splits={"train": spec, "val": spec, "test": spec})
    model = build_model(ModelConfig(n_heads=3), len(task.vocab), seed=0)
    exact = analyze(model, task, subsets_budget=None)
    estimated = analyze(model, task, subsets_budget=0.0)
    assert estimated.summary["subsets"]["measured"] == "sampled"
    assert "interaction_estimate" in estimated.summary
    for k, metric in enumerate(estimated.interactions.metrics):
        row = exact.interactions.metrics.index(metric)
        assert torch.allclose(estimated.interactions.shapley[k], exact.interactions.shapley[row])
        assert torch.allclose(estimated.interactions.pairs[k], exact.interactions.pairs[row])


@pytest.mark.parametrize(
    ("value", "expected", "verdict_"),
    [
        (lambda s: float(len(s) > 0), -1.0, "substitutes"),  # any head alone suffices
        (lambda s: len(s) / 6, 0.0, "mixed"),  # additive
        (lambda s: float(len(s) == 6), 1.0, "complements"),  # all heads needed
    ],
)
def test_the_cooperation_index_of_the_reference_games(value, expected, verdict_):
    from headcoop.metrics.interactions import cooperation_index, verdict

    v = game(6, value)
    index = cooperation_index(pair_interactions(dividends(v)), v[-1] - v[0])
    assert index.item() == pytest.approx(expected, abs=1e-12)
    assert verdict(index.item()) == verdict_


def test_a_metric_that_does_not_move_has_no_verdict():
    from headcoop.metrics.interactions import cooperation_index, verdict

    v = torch.full((16,), 0.5, dtype=torch.float64)
    index = cooperation_index(pair_interactions(dividends(v)), v[-1] - v[0])
    assert verdict(index.item()) == "flat"


def test_verdicts_read_the_saved_frames():
    """From the frames analyze saves: an ensemble of substitutes and a pair needed together."""
    from headcoop.metrics.interactions import Interactions, verdicts

    ensemble = game(4, lambda s: float(len(s) > 0))
    together = game(4, lambda s: float(len(s) == 4))
    frames = Interactions.of({"ensemble": ensemble, "together": together}).frames()
    found = verdicts(frames["shapley"], frames["pair_interactions"]).set_index("metric")
    assert found.loc["ensemble", "gain"] == pytest.approx(1.0)
    assert found.loc["ensemble", "cooperation_index"] == pytest.approx(-1.0)
    assert found["verdict"].tolist() == ["substitutes", "complements"]
    assert found.loc["together", "mean_pair_interaction"] == pytest.approx(1 / 3)
