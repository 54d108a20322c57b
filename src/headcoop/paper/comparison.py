"""Statements of the paper's text next to what we measured, each with its criterion.

The registry's claims are judged on each main model; the statements about sweeps (the Fig 2
grid, Table 1, appendix A, Fig 10) on the sweeps. Each becomes a `Judgement`. A statement that
rests on l-acc is judged under the paper's definition (head-only logits) and again with the
direct path kept; where the two verdicts differ, the definition decides the conclusion, and
the report says so.
"""

from typing import Any

import pandas as pd

from headcoop.metrics.definitions import Definition
from headcoop.paper.claims import CLAIMS, Judgement


def compare_with_paper(summary: dict[str, Any]) -> list[dict[str, str]]:
    """One row per statement (`Judgement.row`): the registry's claims first, each judged on
    every main model (it agrees when it holds on most of them); then the statements about
    sweeps, which no single model can show."""
    judgements = [claim.judged(summary["claims"][claim.id]) for claim in CLAIMS]
    judgements += _accuracy_statements(summary) + _table1_statements(summary)
    judgements += _minimal_and_fig10_statements(summary) + _cooperation_statements(summary)
    return [j.row() for j in judgements]


def _accuracy_statements(summary: dict[str, Any]) -> list[Judgement]:
    grid, cells = summary["grid_main_config_accuracy"], summary["grid_cell_mean_accuracy"]
    smallest, largest = min(cells, key=_cell_size), max(cells, key=_cell_size)
    main_shape = Judgement(
        paper="d_model 32 with 16 heads almost always reaches near perfect test accuracy "
        "(Sec. 5.1)",
        measured=f"mean {grid['mean']:.4f}, worst {grid['min']:.4f} over {grid['seeds']} seeds"
        if grid["seeds"]
        else "the main model's shape is not in this plan's grid",
        criterion="every seed >= 0.98",
        agrees=bool(grid["min"] >= 0.98) if grid["seeds"] else None,
    )
    robust = Judgement(
        paper="more heads and a larger embedding make learning more robust (Fig. 2)",
        measured=f"mean accuracy {cells[smallest]:.3f} at {smallest}, "
        f"{cells[largest]:.3f} at {largest}",
        criterion="largest cell above smallest",
        agrees=bool(cells[largest] > cells[smallest]),
    )
    return [main_shape, robust]


def _table1_statements(summary: dict[str, Any]) -> list[Judgement]:
    t1 = pd.DataFrame(summary["table1"])
    if t1.empty:
        return []
    single = t1[t1["heads per exp"] == 1].sort_values("embedding dim")
    shares = zip(single["embedding dim"], single["share perfect"], strict=True)
    judgements = [
        Judgement(
            paper="a larger embedding greatly raises the chance of perfect d_head = 1 heads "
            "(App. B)",
            measured=", ".join(f"d={d}: {share:.1%}" for d, share in shares),
            criterion="largest d above smallest",
            agrees=bool(single["share perfect"].iloc[-1] > single["share perfect"].iloc[0]),
        )
    ]
    for d in (1, 2):
        pair = t1[t1["embedding dim"] == d].set_index("heads per exp")
        if len(pair) == 2:
            alone, together = pair["share >= 98%"].iloc[0], pair["share >= 98%"].iloc[-1]
            judgements.append(
                Judgement(
                    paper=f"at d = {d}, heads trained alone do much better than 64 trained "
                    "together (App. B)",
                    measured=f"successful share {alone:.1%} alone vs {together:.1%} in 64-head "
                    "models",
                    criterion="alone above together",
                    agrees=bool(alone > together),
                )
            )
    return judgements


def _minimal_and_fig10_statements(summary: dict[str, Any]) -> list[Judgement]:
    best = max(summary["minimal_solution"], key=lambda r: (r["n2"] == "test split", r["N"]))
    r = summary["pearson_r_weighted_s_acc_accuracy"]
    return [
        Judgement(
            paper="the appendix-A construction solves Count01 (App. A)",
            measured=f"test accuracy {best['answer_accuracy']:.4f} at N = {best['N']:g}",
            criterion="accuracy >= 0.999 at the largest N",
            agrees=bool(best["answer_accuracy"] >= 0.999),
        ),
        Judgement(
            paper="weighted s-acc and model accuracy correlate (Fig. 10; the value is withheld)",
            measured=f"Pearson r = {r:.3f}",
            criterion="r > 0",
            agrees=bool(r > 0),
        ),
    ]


def _cooperation_statements(summary: dict[str, Any]) -> list[Judgement]:
    """The paper's answer against the interactions of the first main model's heads
    (`headcoop.metrics.interactions`): substitutes on the semantics ('4' or '5' at '='),
    complements on the syntax (the [EOS] after it)."""
    found = summary.get("cooperation")
    if not found:
        return []

    def said(metric: str) -> str:
        row = found[metric]
        index = row["cooperation_index"]  # None where the metric is flat
        low, high = row.get("index_low"), row.get("index_high")  # 95 % over test examples
        interval = f" [{low:+.2f}, {high:+.2f}]" if low is not None and high is not None else ""
        return f"{metric} {'-' if index is None else f'{index:+.2f}'}{interval} ({row['verdict']})"

    def substitutes(metrics: list[str]) -> bool:
        return all(found[m]["verdict"] == "substitutes" for m in metrics)

    semantics = [m for m in ("s_acc", "l_acc", "roc_auc") if m in found]
    others = {
        d.suffix: [m for m in d.columns(("l_acc", "roc_auc")) if m in found]
        for d in Definition.judged_ones()
        if d is not Definition.PAPER
    }
    return [
        Judgement(
            paper="on the semantics of counting the heads act as a pseudo-ensemble (Abstract, "
            "Sec. 6.1)",
            measured="cooperation index: " + ", ".join(map(said, semantics)),
            criterion="substitutes (index <= -1/3) on every metric at '='",
            agrees=substitutes(semantics),
            readings={s: (", ".join(map(said, m)), substitutes(m)) for s, m in others.items() if m},
        ),
        Judgement(
            paper="only the syntax (ending with [EOS]) brings in cooperation among the heads "
            "(Sec. 3)",
            measured="cooperation index: " + said("eos_l_acc")
            if "eos_l_acc" in found
            else "not measured",
            criterion="complements (index >= 1/3) on the [EOS] l-acc",
            agrees=found["eos_l_acc"]["verdict"] == "complements" if "eos_l_acc" in found else None,
        ),
    ]


def _cell_size(cell: str) -> tuple[int, int]:
    d, h = cell[1:].split("_h")
    return int(d) * int(h), int(d)
