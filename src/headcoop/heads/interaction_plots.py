"""Figures of the interactions of heads, from the files `analyze` saves: the spectrum of the
dividends by set size, the pair-interaction matrix and the Shapley values against s-acc and
head weight. Every report of one model (`headcoop.heads.report`) and the paper study's
"Do heads compete or cooperate?" item draw them with these functions."""

import pandas as pd
import plotly.graph_objects as go
from plotly.colors import qualitative
from plotly.subplots import make_subplots

COLOURS = qualitative.Plotly + qualitative.D3
"""One colour per metric, the same in every panel of a figure."""


def spectrum_figure(spectrum: dict[str, dict[str, list[float]]], metrics: list[str]) -> go.Figure:
    """Per set size (1 up), the sum of the dividends (signed) and the share of their absolute
    mass, one line per metric: mass at size 1 means additive heads; negative mass at sizes 2+
    means substitutes, positive mass complements."""
    figure = make_subplots(
        rows=1,
        cols=2,
        subplot_titles=("sum of dividends by set size", "share of |dividends| by set size"),
    )
    for metric, colour in zip(metrics, COLOURS, strict=False):
        total, absolute = spectrum[metric]["sum"][1:], spectrum[metric]["sum_abs"][1:]
        sizes = list(range(1, len(total) + 1))
        mass = sum(absolute) or 1.0
        style = {"name": metric, "legendgroup": metric, "mode": "lines+markers"}
        style["line_color"] = colour
        figure.add_trace(go.Scatter(x=sizes, y=total, **style), row=1, col=1)
        shares = [a / mass for a in absolute]
        figure.add_trace(go.Scatter(x=sizes, y=shares, showlegend=False, **style), row=1, col=2)
    figure.update_xaxes(title_text="set size", dtick=1)
    return figure.update_layout(title="Harsanyi dividends by set size", height=420)


def pair_matrix_figure(
    heads: pd.DataFrame, pairs: pd.DataFrame, metrics: list[str], title: str = ""
) -> go.Figure:
    """The Shapley interaction index of every pair of heads, one matrix per metric (red:
    complements, blue: substitutes; each matrix on its own symmetric scale)."""
    names = heads["name"].tolist() if "name" in heads else heads["head"].astype(str).tolist()
    figure = make_subplots(rows=1, cols=len(metrics), subplot_titles=metrics)
    for k, metric in enumerate(metrics):
        matrix = _pair_matrix(pairs[pairs["metric"] == metric], len(names))
        scale = max(abs(v) for row in matrix for v in row) or 1.0
        figure.add_trace(
            go.Heatmap(
                z=matrix,
                x=names,
                y=names,
                zmin=-scale,
                zmax=scale,
                colorscale="RdBu_r",
                showscale=k == len(metrics) - 1,
                hovertemplate="%{y} + %{x}: %{z:.4f}<extra>" + metric + "</extra>",
            ),
            row=1,
            col=k + 1,
        )
    figure.update_yaxes(autorange="reversed")
    height = 360 if len(names) <= 8 else 460
    return figure.update_layout(title=title or "pair interactions (Shapley index)", height=height)


def _pair_matrix(pairs: pd.DataFrame, n: int) -> list[list[float]]:
    matrix = [[0.0] * n for _ in range(n)]
    for heads, value in zip(pairs["heads"], pairs["interaction"], strict=True):
        i, j = map(int, str(heads).split())
        matrix[i][j] = matrix[j][i] = float(value)
    return matrix


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
