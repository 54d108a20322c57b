"""The key numbers of a report, from the cached measurements (written to summary.json).

Counts that rest on l-acc are given under every judged definition of a set's logits (the
paper's head-only logits, and ablation with the direct path kept: `Definition.judged_ones`), so
that the comparison with the paper can show where the definition changes a conclusion.
"""

import json
from typing import Any

import pandas as pd
import torch

from headcoop.heads import plots as plots_heads
from headcoop.heads.dynamics import weighted_s_acc_correlation
from headcoop.metrics.classes import CHANCE_MARGIN, HEAD_CLASSES, SUCCESSFUL, class_shares
from headcoop.metrics.definitions import Definition
from headcoop.paper import plots_runs
from headcoop.paper.claims import BIAS_TOLERANCE, CLAIMS
from headcoop.paper.compute import FigureData
from headcoop.paper.evidence import Evidence


def key_numbers(data: FigureData) -> dict[str, Any]:
    """Every number the report states, from ``data`` (computed on first use)."""
    plan = data.plan
    analyses = {s: data.analysis(s) for s in plan.main_seeds}
    first = analyses[plan.main_seeds[0]]
    heads, pairs = first.heads_frame(), first.pairs_frame()
    chance = first.summary["majority_share"]
    classes = {str(s): a.summary["classes"] for s, a in analyses.items()}
    total = {c: sum(v[c] for v in classes.values()) for c in HEAD_CLASSES}
    trajectories = data.trajectories()
    _, r = weighted_s_acc_correlation(trajectories, plan.first_epoch)
    last = trajectories[trajectories["epoch"] == trajectories["epoch"].max()]
    curves = data.interventions()
    random_heads = data.random_heads()
    table1 = plots_runs.table1_frame(data.table1())
    summary = {
        "plan": plan.key(),
        "accuracy_by_seed": {str(s): a.summary["accuracy"] for s, a in analyses.items()},
        "head_classes_by_seed": classes,
        "head_class_shares": {c: n / sum(total.values()) for c, n in total.items()},
        "direct_path_by_seed": {str(s): a.summary["direct_path"] for s, a in analyses.items()},
        "majority_share": chance,
        "n_heads": len(heads),
        "n_pairs": len(pairs),
        "pairs_below_stronger_single_s_acc": int(
            (plots_heads.pair_gain(heads, pairs) < -1e-9).sum() // 2
        ),
        "pearson_r_weighted_s_acc_accuracy": r,
        "final_epoch_mixed_share": class_shares(torch.tensor(last["s_acc"].values), chance)[
            "mixed"
        ],
        **_grid_numbers(data.grid(), plan),
        "random_heads": {
            "n": len(random_heads),
            "mean_s_acc": float(random_heads["s_acc"].mean()),
            "share_at_least_0.98": float((random_heads["s_acc"] >= SUCCESSFUL).mean()),
        },
        "intervention_s_acc": _intervention_numbers(curves),
        "table1": json.loads(table1.to_json(orient="records")),
        "minimal_solution": json.loads(data.minimal().to_json(orient="records")),
    }
    summary["claims"] = judge_claims([data.evidence(s) for s in plan.main_seeds])
    shares = list(first.summary["class_shares"].values())
    for definition in Definition.judged_ones():
        summary |= l_acc_counts(heads, pairs, chance, shares, definition)
    if first.subsets is not None:
        by_size = first.subsets_frame().groupby("size")[["s_acc", "roc_auc", "l_acc"]].mean()
        summary["subset_means_by_size"] = json.loads(by_size.to_json(orient="index"))
    if first.interactions is not None:
        found = first.verdicts()
        found = json.loads(found.set_index("metric").to_json(orient="index"))
        errors = first.summary.get("cooperation", {})  # intervals and the null, if measured
        summary["cooperation"] = {
            metric: errors.get(metric, {}) | row for metric, row in found.items()
        }
    return summary


def judge_claims(evidence: list[Evidence]) -> dict[str, dict[str, list]]:
    """Every claim of the registry on each model: its statistic and whether it holds, under
    the paper's definitions and under each of the claim's other readings (`Claim.readings`),
    keyed by the reading's suffix (``values_direct``, ``holds_liblinear``)."""
    judged = {}
    for claim in CLAIMS:
        values = [claim.value(e) for e in evidence]
        judged[claim.id] = {"values": values, "holds": [claim.holds(v) for v in values]}
        for reading in claim.readings():
            found = [claim.value(e, reading) for e in evidence]
            judged[claim.id] |= {
                f"values{reading.suffix}": found,
                f"holds{reading.suffix}": [claim.holds(v) for v in found],
            }
    return judged


def l_acc_counts(
    heads: pd.DataFrame,
    pairs: pd.DataFrame,
    chance: float,
    shares: list[float],
    definition: Definition,
) -> dict[str, int]:
    """The counts that rest on l-acc, under ``definition`` (each key ends in its suffix)."""
    suffix = definition.suffix
    l_acc, pair_l_acc = heads[f"l_acc{suffix}"], pairs[f"l_acc{suffix}"]
    one_class = pd.concat([(l_acc - s).abs() < BIAS_TOLERANCE for s in shares], axis=1).any(axis=1)
    return {
        f"single_heads_above_chance_l_acc{suffix}": int((l_acc > chance + CHANCE_MARGIN).sum()),
        f"pairs_above_chance_l_acc{suffix}": int((pair_l_acc > chance + CHANCE_MARGIN).sum()),
        f"single_heads_answering_one_class{suffix}": int(one_class.sum()),
        f"eos_perfect_single_heads{suffix}": int((heads[f"eos_l_acc{suffix}"] >= 1.0).sum()),
        f"eos_perfect_pairs{suffix}": int((pairs[f"eos_l_acc{suffix}"] >= 1.0).sum()),
    }


def _grid_numbers(grid: pd.DataFrame, plan: Any) -> dict[str, Any]:
    main_cell = grid[
        (grid["d_model"] == plan.model.d_model) & (grid["n_heads"] == plan.model.n_heads)
    ]
    main_cell = main_cell.drop_duplicates("seed")["test_accuracy"]
    models = grid.drop_duplicates(["d_model", "n_heads", "seed"])
    cells = models.groupby(["d_model", "n_heads"])["test_accuracy"].mean()
    return {
        "grid_main_config_accuracy": {
            "mean": float(main_cell.mean()),
            "min": float(main_cell.min()),
            "seeds": len(main_cell),
        },
        "grid_cell_mean_accuracy": {f"d{d}_h{h}": float(v) for (d, h), v in cells.items()},
    }


def _intervention_numbers(curves: pd.DataFrame) -> dict[str, float]:
    w01 = curves[curves["sweep"] == "w01"].set_index("ratio")["mean"]
    w02 = curves[curves["sweep"] == "w02"].set_index("ratio")["mean"]
    return {
        "w01=1": float(w01.iloc[(w01.index.to_series() - 1).abs().argmin()]),
        "w01 smallest": float(w01.iloc[0]),
        "w01 largest": float(w01.iloc[-1]),
        "w02 smallest": float(w02.iloc[0]),
        "w02 largest": float(w02.iloc[-1]),
    }
