"""Figures of the interactions of heads, from the files `analyze` saves: the spectrum of the
dividends by set size, the pair-interaction matrix and the Shapley values against s-acc and
head weight. Every report of one model (`headcoop.heads.report`) and the paper study's
"Do heads compete or cooperate?" item draw them with these functions."""

import pandas as pd
import plotly.graph_objects as go
from plotly.colors import qualitative
from plotly.subplots import make_subplots

from headcoop.heads.analysis import HeadAnalysis
from headcoop.metrics.interactions import VERDICT_CUT, pair_matrix

COLOURS = qualitative.Plotly + qualitative.D3
"""One colour per metric, the same in every panel of a figure."""


def spectrum_figure(spectrum: dict[str, dict[str, list[float]]], metrics: list[str]) -> go.Figure:
    """Per set size (1 up), the sum of the dividends (signed) and the share of their absolute
    mass, one line per metric: mass at size 1 means additive heads; negative mass at sizes 2+
    means substitutes, positive mass complements."""
    figure = make_subplots(rows=1, cols=2, subplot_titles=SPECTRUM_TITLES)
    add_spectrum(figure, spectrum, metrics, row=1)
    return figure.update_layout(title="Harsanyi dividends by set size", height=420)


SPECTRUM_TITLES = ("sum of dividends by set size", "share of |dividends| by set size")


def add_spectrum(
    figure: go.Figure, spectrum: dict[str, dict[str, list[float]]], metrics: list[str], row: int
) -> None:
    """The two panels of `spectrum_figure`, in columns 1 and 2 of ``row``."""
    for metric, colour in zip(metrics, COLOURS, strict=False):
        total, absolute = spectrum[metric]["sum"][1:], spectrum[metric]["sum_abs"][1:]
        sizes = list(range(1, len(total) + 1))
        mass = sum(absolute) or 1.0
        style = {"name": metric, "legendgroup": metric, "mode": "lines+markers"}
        style["line_color"] = colour
        figure.add_trace(go.Scatter(x=sizes, y=total, **style), row=row, col=1)
        shares = [a / mass for a in absolute]
        figure.add_trace(go.Scatter(x=sizes, y=shares, showlegend=False, **style), row=row, col=2)
    for col in (1, 2):
        figure.update_xaxes(title_text="set size", dtick=2, row=row, col=col)


def pair_matrix_figure(
    heads: pd.DataFrame, pairs: pd.DataFrame, metrics: list[str], title: str = ""
) -> go.Figure:
    """The Shapley interaction index of every pair of heads, one matrix per metric (red:
    complements, blue: substitutes; each matrix on its own symmetric scale)."""
    figure = make_subplots(rows=1, cols=len(metrics), subplot_titles=metrics)
    add_pair_matrices(figure, heads, pairs, metrics, row=1)
    height = 360 if len(heads) <= 8 else 460
    return figure.update_layout(title=title or "pair interactions (Shapley index)", height=height)


def add_pair_matrices(
    figure: go.Figure, heads: pd.DataFrame, pairs: pd.DataFrame, metrics: list[str], row: int
) -> None:
    """One matrix per metric in columns 1, 2, ... of ``row``."""
    names = heads["name"].tolist() if "name" in heads else heads["head"].astype(str).tolist()
    for k, metric in enumerate(metrics):
        matrix = pair_matrix(pairs[pairs["metric"] == metric], len(names)).tolist()
        scale = max(abs(v) for line in matrix for v in line) or 1.0
        figure.add_trace(
            go.Heatmap(
                z=matrix,
                x=names,
                y=names,
                zmin=-scale,
                zmax=scale,
                colorscale="RdBu_r",
                showscale=False,
                hovertemplate="%{y} + %{x}: %{z:.4f}<extra>" + metric + "</extra>",
            ),
            row=row,
            col=k + 1,
        )
        figure.update_yaxes(autorange="reversed", row=row, col=k + 1)


def shapley_figure(heads: pd.DataFrame, shapley: pd.DataFrame, metrics: list[str]) -> go.Figure:
    """Each head's Shapley value for each metric against its s-acc alone and its head weight:
    does the head the separator finds useful carry the model's answer?"""
    names = heads["name"] if "name" in heads else heads["head"].astype(str)
    figure = make_subplots(rows=1, cols=2, shared_yaxes=True)
    for metric, colour in zip(metrics, COLOURS, strict=False):
        phi = shapley[shapley["metric"] == metric].sort_values("head")["shapley"].tolist()
        style = {"mode": "markers", "name": metric, "legendgroup": metric, "text": names}
        style["marker_color"] = colour
        figure.add_trace(go.Scatter(x=heads["s_acc"], y=phi, **style), row=1, col=1)
        figure.add_trace(
            go.Scatter(x=heads["head_weight"], y=phi, showlegend=False, **style), row=1, col=2
        )
    figure.update_xaxes(title_text="s-acc of the head alone", row=1, col=1)
    figure.update_xaxes(title_text="head weight", row=1, col=2)
    figure.update_yaxes(title_text="Shapley value", row=1, col=1)
    return figure.update_layout(title="Shapley values of single heads", height=420)


def cooperation_figure(found: HeadAnalysis, metrics: list[str], title: str) -> go.Figure:
    """Of three ``metrics`` of one analysis: the spectrum and each metric's cooperation index
    (top), the pair matrices (bottom)."""
    figure = make_subplots(
        rows=2,
        cols=3,
        subplot_titles=(*SPECTRUM_TITLES, "cooperation index", *metrics),
        vertical_spacing=0.14,
    )
    add_spectrum(figure, found.summary["interaction_spectrum"], metrics, row=1)
    found_verdicts = found.verdicts().set_index("metric")
    index = found_verdicts.loc[metrics, "cooperation_index"]
    bars = go.Bar(
        x=metrics,
        y=index,
        marker_color=COLOURS[: len(metrics)],
        text=found_verdicts.loc[metrics, "verdict"],
        textposition="outside",
        showlegend=False,
    )
    figure.add_trace(bars, row=1, col=3)
    for cut in (-VERDICT_CUT, VERDICT_CUT):
        figure.add_hline(y=cut, line_dash="dot", row=1, col=3)
    figure.update_yaxes(range=[-1.2, 1.2], row=1, col=3)
    add_pair_matrices(
        figure, found.heads_frame(), found.tables["pair_interactions"], metrics, row=2
    )
    return figure.update_layout(title=title, height=820)
