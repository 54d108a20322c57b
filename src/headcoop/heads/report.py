"""report.html for one analysed model, of any task and depth: its key numbers, single heads
under every definition, heads and pairs (the paper's Fig 3), sets by size (Fig 4) and the
attention ratios (Fig 5, where the task has two), and the interactions of heads (spectrum,
pairs, Shapley values, the verdict of each metric), drawn from the saved analysis alone by
the figure functions `make figures` uses (`headcoop.heads.plots`, `interaction_plots`)."""

import html
from pathlib import Path
from typing import Any

import pandas as pd

from headcoop import pages
from headcoop.files import write_atomic
from headcoop.heads import interaction_plots, plots
from headcoop.heads.analysis import HeadAnalysis
from headcoop.metrics.definitions import Definition
from headcoop.metrics.interactions import FLAT_GAIN, VERDICT_CUT

SINGLE_METRICS = ("s_acc", *(d.column("l_acc") for d in Definition))
"""The single-head metrics the report draws: s-acc, and l-acc under every definition."""
GAME_METRICS = ("l_acc", "roc_auc", "s_acc")
"""The games whose pair interactions the report draws (every game is in the files)."""


def write_report(found: HeadAnalysis, out: str | Path, png: bool = False) -> Path:
    """Write ``out/report.html`` from an analysis as `headcoop.heads.analyze.read_analysis`
    gives it (with PNGs of its figures beside it if ``png``); returns the page's path."""
    out = Path(out)
    heads, pairs, summary = found.heads_frame(), found.pairs_frame(), found.summary
    figures = {"single_heads": _single_heads(heads), "pairs": plots.fig03_pairs(heads, pairs)}
    if found.subsets is not None:
        figures["sets_by_size"] = plots.fig04_subsets(found.subsets_frame())
    if summary.get("attention_ratios"):
        figures["attention_ratios"] = _ratios(heads, summary["attention_ratios"])
    figures |= _interactions(found)
    paths = [out / f"{name}.png" for name in figures]
    note = pages.write_pngs(list(figures.values()), paths) if png else ""
    sections = "".join(
        f"<section><h2>{html.escape(name.replace('_', ' '))}</h2>"
        f"{pages.figure_div(figure, name)}</section>"
        for name, figure in figures.items()
    )
    body = f"""<h1>Heads of {html.escape(str(summary.get("checkpoint", "a model")))}</h1>
<p>Task {html.escape(summary["task"])}, decision {html.escape(summary["decision"])}; test
accuracy {html.escape(_accuracy(summary))}; heads by class: {html.escape(str(summary["classes"]))}.
{html.escape(note)}</p>{sections}
{_verdicts(found)}
<section><h2>heads</h2>{pages.table(heads.to_dict(orient="records"))}</section>
<section><h2>what produced this page</h2>{pages.provenance(summary)}</section>"""
    pages.write_plotly_js(out)
    write_atomic(out / "report.html", pages.page("headcoop: heads", body))
    return out / "report.html"


def _accuracy(summary: dict[str, Any]) -> str:
    return ", ".join(f"{k} {v:.3f}" for k, v in summary["accuracy"].items())


def _single_heads(heads: pd.DataFrame) -> Any:
    import plotly.graph_objects as go

    figure = go.Figure(
        [go.Bar(name=m, x=heads["name"], y=heads[m]) for m in SINGLE_METRICS if m in heads]
    )
    return figure.update_layout(
        title="single heads: s-acc and l-acc under each definition",
        yaxis_title="accuracy",
        barmode="group",
        height=420,
    )


def _ratios(heads: pd.DataFrame, ratios: list[str]) -> Any:
    """The paper's Fig 5 where the task has two ratios and each head has one value of each;
    bars with their spread over the test inputs otherwise."""
    import plotly.graph_objects as go

    if len(ratios) >= 2 and f"{ratios[0]}_spread" not in heads:
        return plots.fig05_ratios(heads, "Fig 5", (ratios[0], ratios[1]))
    bars = []
    for r in ratios:
        spread = heads.get(f"{r}_spread")
        error = None if spread is None else {"type": "data", "array": spread}
        bars.append(go.Bar(name=r, x=heads["name"], y=heads[r], error_y=error))
    figure = go.Figure(bars)
    return figure.update_layout(
        title="attention ratios at the decision", yaxis_type="log", barmode="group"
    )


def _interactions(found: HeadAnalysis) -> dict[str, Any]:
    """The spectrum (where every set was measured), the pair matrix and the Shapley values."""
    if found.interactions is None:
        return {}
    heads, shapley = found.heads_frame(), found.tables["shapley"]
    games = [m for m in GAME_METRICS if m in set(shapley["metric"])]
    figures = {}
    if "interaction_spectrum" in found.summary:
        spectrum = found.summary["interaction_spectrum"]
        figure = interaction_plots.spectrum_figure(spectrum, list(spectrum))
        figures["interaction_spectrum"] = figure
    pairs = found.tables["pair_interactions"]
    figures["pair_interactions"] = interaction_plots.pair_matrix_figure(heads, pairs, games)
    figures["shapley_values"] = interaction_plots.shapley_figure(heads, shapley, games)
    return figures


def _verdicts(found: HeadAnalysis) -> str:
    if found.interactions is None:
        return ""
    table = found.verdicts().round(4)
    estimate = found.summary.get("interaction_estimate")
    how = (
        f"Estimated from {estimate['sets']} sets by {estimate['estimator']}; largest error "
        f"(half the gap of two independent halves): {estimate['error']}."
        if estimate
        else "Exact, from every set of heads."
    )
    return f"""<section><h2>do the heads compete or cooperate?</h2><p>The cooperation index
is the mean pair interaction in units of |v(all) - v(none)| / (n - 1): -1 for a pure ensemble
(any one head does the work), 0 for additive heads, +1 when only all heads together do it;
none where the metric moves less than {FLAT_GAIN} from no heads to all.
Verdict: substitutes at or below -{VERDICT_CUT:.2f}, complements at or above {VERDICT_CUT:.2f},
mixed between. {html.escape(how)}</p>{pages.table(table.to_dict(orient="records"))}</section>"""
