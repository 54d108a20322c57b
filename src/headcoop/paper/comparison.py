"""Statements of the paper's text next to what we measured, each with its criterion.

The registry's claims are judged on each main model; the statements about sweeps (the Fig 2
grid, Table 1, appendix A, Fig 10) on the sweeps. A statement that rests on l-acc is judged
under the paper's definition (head-only logits) and again with the direct path kept; where the
two verdicts differ, the definition decides the conclusion, and the report says so.
"""

from collections.abc import Callable
from typing import Any

import pandas as pd

from headcoop.paper.claims import CLAIMS, Claim


def compare_with_paper(summary: dict[str, Any]) -> list[dict[str, str]]:
    """One row per statement: paper, measured, criterion, verdict (under the paper's
    definition) and, for statements that rest on l-acc, measured_direct and verdict_direct.

    The registry's claims (`headcoop.paper.claims`) come first, each judged on every main
    model (it agrees when it holds on most of them); then the statements about sweeps, which
    no single model can show."""
    rows = [_claim_row(claim, summary["claims"][claim.id]) for claim in CLAIMS]

    def add(claim: str, criterion: str, judge: Callable[[], tuple[str, Any]]) -> None:
        """``judge()`` gives (what we measured, whether it agrees or None)."""
        measured, agrees = judge()
        rows.append(
            {
                "paper": claim,
                "measured": measured,
                "criterion": criterion,
                "verdict": _verdict(agrees),
            }
        )

    _accuracy_statements(summary, add)
    _sweep_statements(summary, add)
    return rows


def _claim_row(claim: Claim, judged: dict[str, list]) -> dict[str, str]:
    """A registry claim on the main models: each model's statistic, and the verdict."""

    def measured(values: list[float], holds: list[bool]) -> tuple[str, bool]:
        shown = ", ".join(f"{v:.3g}" for v in values)
        return f"{claim.statistic}: {shown} (holds on {sum(holds)} of {len(holds)} models)", (
            2 * sum(holds) > len(holds)
        )

    text, agrees = measured(judged["values"], judged["holds"])
    row = {
        "paper": f"{claim.finding} (Sec. {claim.section}; the paper: {claim.paper})",
        "measured": text,
        "criterion": f"{claim.band()} on most models",
        "verdict": _verdict(agrees),
    }
    if claim.rests_on_l_acc:
        text, agrees = measured(judged["values_direct"], judged["holds_direct"])
        row |= {"measured_direct": text, "verdict_direct": _verdict(agrees)}
    return row


def _verdict(agrees: Any) -> str:
    """``agrees``: a truth value (Python or numpy), or None when not comparable."""
    return "agrees" if agrees else "disagrees" if agrees is not None else "not comparable"


def _accuracy_statements(summary: dict[str, Any], add: Callable) -> None:
    grid = summary["grid_main_config_accuracy"]
    add(
        "d_model 32 with 16 heads almost always reaches near perfect test accuracy (Sec. 5.1)",
        "every seed >= 0.98",
        lambda: (
            f"mean {grid['mean']:.4f}, worst {grid['min']:.4f} over {grid['seeds']} seeds"
            if grid["seeds"]
            else "the main model's shape is not in this plan's grid",
            grid["min"] >= 0.98 if grid["seeds"] else None,
        ),
    )
    cells = summary["grid_cell_mean_accuracy"]
    smallest, largest = min(cells, key=_cell_size), max(cells, key=_cell_size)
    add(
        "more heads and a larger embedding make learning more robust (Fig. 2)",
        "largest cell above smallest",
        lambda: (
            f"mean accuracy {cells[smallest]:.3f} at {smallest}, {cells[largest]:.3f} at {largest}",
            cells[largest] > cells[smallest],
        ),
    )


def _sweep_statements(summary: dict[str, Any], add: Callable) -> None:
    t1 = pd.DataFrame(summary["table1"])
    if not t1.empty:
        single = t1[t1["heads per exp"] == 1].sort_values("embedding dim")
        add(
            "a larger embedding greatly raises the chance of perfect d_head = 1 heads (App. B)",
            "largest d above smallest",
            lambda: (
                ", ".join(
                    f"d={d}: {share:.1%}"
                    for d, share in zip(
                        single["embedding dim"], single["share perfect"], strict=True
                    )
                ),
                single["share perfect"].iloc[-1] > single["share perfect"].iloc[0],
            ),
        )
        for d in (1, 2):
            pair = t1[t1["embedding dim"] == d].set_index("heads per exp")
            if len(pair) == 2:
                alone, together = pair["share >= 98%"].iloc[0], pair["share >= 98%"].iloc[-1]
                add(
                    f"at d = {d}, heads trained alone do much better than 64 trained together "
                    "(App. B)",
                    "alone above together",
                    lambda alone=alone, together=together: (
                        f"successful share {alone:.1%} alone vs {together:.1%} in 64-head models",
                        alone > together,
                    ),
                )
    best = max(summary["minimal_solution"], key=lambda r: (r["n2"] == "test split", r["N"]))
    add(
        "the appendix-A construction solves Count01 (App. A)",
        "accuracy >= 0.999 at the largest N",
        lambda: (
            f"test accuracy {best['answer_accuracy']:.4f} at N = {best['N']:g}",
            best["answer_accuracy"] >= 0.999,
        ),
    )
    r = summary["pearson_r_weighted_s_acc_accuracy"]
    add(
        "weighted s-acc and model accuracy correlate (Fig. 10; the value is withheld)",
        "r > 0",
        lambda: (f"Pearson r = {r:.3f}", r > 0),
    )


def _cell_size(cell: str) -> tuple[int, int]:
    d, h = cell[1:].split("_h")
    return int(d) * int(h), int(d)
