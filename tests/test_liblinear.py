"""s-acc as scikit-learn's LinearSVC with its defaults gives it: the named variant beside the
exact optimum, in heads.csv and pairs.csv, in Table 1 and in the claims on heads and pairs."""

import warnings
from dataclasses import replace

import pandas as pd
import pytest
import torch
from sklearn.exceptions import ConvergenceWarning
from sklearn.svm import LinearSVC

from headcoop import Count01, ModelConfig, SplitSpec, analyze, build_model
from headcoop.metrics.separation import liblinear_s_acc, separation_accuracy
from headcoop.paper.claims import CLAIMS
from headcoop.paper.evidence import Evidence, Reading
from headcoop.paper.plots_runs import table1_frame


def _problem(seed: int = 0, n: int = 400):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 3, 2, generator=gen)  # 3 heads of d_head 2
    y = (x[:, 0, 0] + 0.3 * x[:, 1, 1] + 0.2 * torch.randn(n, generator=gen) > 0).long()
    return x, y


def test_liblinear_s_acc_is_linearsvc_with_its_defaults_on_each_set():
    x, y = _problem()
    test_x, test_y = _problem(1)
    masks = torch.tensor([[True, False, False], [True, True, False], [False, True, True]])
    found = liblinear_s_acc(x, y, test_x, test_y, masks)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        for k, mask in enumerate(masks):
            svc = LinearSVC(C=1000.0).fit(x[:, mask].flatten(1).double().numpy(), y.numpy())
            expected = svc.score(test_x[:, mask].flatten(1).double().numpy(), test_y.numpy())
            assert found[k].item() == pytest.approx(expected)
    exact = separation_accuracy(x, y, test_x, test_y, masks)
    assert (found - exact).abs().max() < 0.05  # the same problem, solved less exactly


def test_heads_and_pairs_carry_the_variant():
    spec = SplitSpec(300, (0, 20), (0, 20))
    task = Count01(splits={"train": spec, "val": spec, "test": spec})
    result = analyze(build_model(ModelConfig(n_heads=3), len(task.vocab), seed=0), task)
    heads, pairs = result.heads_frame(), result.pairs_frame()
    assert "s_acc_liblinear" in heads and "s_acc_liblinear" in pairs
    assert "s_acc_liblinear" not in result.subsets.columns  # not over all subsets
    assert heads["s_acc_liblinear"].between(0, 1).all() and len(pairs) == 3


LIBLINEAR = Reading(liblinear=True)


def _evidence(s_acc, liblinear, pair_s_acc=(0.9,), pair_liblinear=(0.5,)) -> Evidence:
    heads = pd.DataFrame({"s_acc": s_acc, "s_acc_liblinear": liblinear, "class": "mixed"})
    heads["w01"], heads["w02"] = 1.0, 2.0
    pairs = pd.DataFrame({"heads": ["0 1"], "s_acc": pair_s_acc, "s_acc_liblinear": pair_liblinear})
    empty = pd.DataFrame()
    return Evidence(heads, pairs, empty, empty, chance=0.5, class_shares=[0.5, 0.5], accuracy=1.0)


def test_the_claims_on_heads_and_pairs_are_judged_under_liblinear_too():
    evidence = _evidence([1.0, 0.99], [0.97, 0.6])
    swapped = evidence.under(LIBLINEAR)
    assert swapped.heads["class"].tolist() == ["mixed", "mixed"]
    assert swapped.pairs["s_acc"].tolist() == [0.5]
    by_id = {c.id: c for c in CLAIMS}
    assert by_id["classes.successful"].value(evidence) == 0.0  # the frame's own class column
    assert by_id["classes.successful"].value(swapped) == 0.0
    assert by_id["pairs.below_stronger"].value(evidence, LIBLINEAR) == 1.0  # 0.5 < 0.97
    assert by_id["pairs.below_stronger"].value(evidence) == 1.0  # 0.9 < 1.0
    variants = {c.id for c in CLAIMS if c.rests_on_s_acc}
    assert {"classes.successful", "pairs.below_stronger", "attention.w01"} <= variants
    one_successful = _evidence([1.0, 0.99], [0.99, 0.6])
    assert by_id["attention.w01"].value(one_successful, LIBLINEAR) == 1.0
    before = replace(  # evidence measured before the variant existed: no verdict under it
        one_successful,
        heads=one_successful.heads.drop(columns="s_acc_liblinear"),
        pairs=one_successful.pairs.drop(columns="s_acc_liblinear"),
    )
    assert pd.isna(by_id["attention.w01"].value(before, LIBLINEAR))


def test_table1_gives_both_shares():
    table = pd.DataFrame(
        {
            "d_model": 1,
            "n_heads": 1,
            "seed": [0, 1, 2, 3],
            "test_accuracy": 1.0,
            "s_acc": [1.0, 1.0, 0.99, 0.5],
            "s_acc_liblinear": [1.0, 0.99, 0.97, 0.5],
        }
    )
    (row,) = table1_frame(table).to_dict("records")
    assert (row["share perfect"], row["share perfect (liblinear)"]) == (0.5, 0.25)
    assert (row["share >= 98%"], row["share >= 98% (liblinear)"]) == (0.75, 0.5)
