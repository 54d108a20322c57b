"""The paper's figures of one model's heads: logits, pairs, subsets, ratios, output spaces.

Every function takes DataFrames (as `headcoop.paper.compute.FigureData` returns them) and
returns a `plotly.graph_objects.Figure`; nothing here trains or measures.
"""

import math

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from headcoop.heads.analysis import HeadAnalysis
from headcoop.heads.colours import CLASS_COLOURS, TOKEN_COLOURS, seed_colour
from headcoop.metrics.subsets import pair_members


def fig01_logits(logits: pd.DataFrame) -> go.Figure:
    """Each single head's logits of the decision tokens and [EOS] (head-only, the paper's
    z_{t,i} + b_t), by current token -> true next token."""
    heads = sorted(logits["head"].unique())
    tokens = list(dict.fromkeys(logits["token"]))
    cols = 4
    rows = -(-len(heads) // cols)
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=[f"head {h}" for h in heads])
    groups = logits["current"] + " → " + logits["next"]
    for i, head in enumerate(heads):
        of_head = logits["head"] == head
        for k, token in enumerate(tokens):
            chosen = of_head & (logits["token"] == token)
            fig.add_trace(
                go.Box(
                    x=groups[chosen],
                    y=logits.loc[chosen, "logit"],
                    name=f"logit of '{token}'",
                    marker_color=seed_colour(k),
                    boxpoints=False,
                    offsetgroup=token,
                    legendgroup=token,
                    showlegend=i == 0,
                ),
                row=i // cols + 1,
                col=i % cols + 1,
            )
    fig.update_layout(
        title="Fig 1: single heads' logits by current → true next token (test sample)",
        boxmode="group",
        height=260 * rows + 120,
        width=1300,
    )
    return fig


def pair_matrix(heads: pd.DataFrame, pairs: pd.DataFrame, column: str) -> np.ndarray:
    """A heads × heads matrix: ``column`` of single heads on the diagonal, of pairs elsewhere."""
    n = len(heads)
    matrix = np.full((n, n), np.nan)
    matrix[np.arange(n), np.arange(n)] = heads[column].to_numpy()
    i, j = pair_members(list(pairs["heads"]), n).T.numpy()
    matrix[i, j] = matrix[j, i] = pairs[column].to_numpy()
    return matrix


def pair_gain(heads: pd.DataFrame, pairs: pd.DataFrame) -> np.ndarray:
    """s-acc of single heads on the diagonal; off it, a pair's s-acc minus its stronger head's."""
    matrix = pair_matrix(heads, pairs, "s_acc")
    single = heads["s_acc"].to_numpy()
    stronger = np.maximum(single[:, None], single[None, :])
    off = ~np.eye(len(single), dtype=bool)
    matrix[off] = matrix[off] - stronger[off]
    return matrix


def fig03_pairs(heads: pd.DataFrame, pairs: pd.DataFrame, title: str = "Fig 3") -> go.Figure:
    """(a) l-acc, (b) ROC AUC, (c) s-acc of single heads and the gain of pairs."""
    panels = (
        ("(a) l-acc", pair_matrix(heads, pairs, "l_acc"), "Viridis", None),
        ("(b) ROC AUC", pair_matrix(heads, pairs, "roc_auc"), "Viridis", None),
        ("(c) s-acc (diagonal) and pair gain", pair_gain(heads, pairs), "RdBu", 0.0),
    )
    fig = make_subplots(
        rows=1, cols=3, subplot_titles=[p[0] for p in panels], horizontal_spacing=0.1
    )
    for col, (_, matrix, scale, mid) in enumerate(panels, start=1):
        right = fig.layout[f"xaxis{col if col > 1 else ''}"].domain[1]
        fig.add_trace(_head_heatmap(matrix, scale, mid, x=right + 0.005), row=1, col=col)
        fig.update_yaxes(autorange="reversed", row=1, col=col)
    fig.update_layout(title=f"{title}: single heads and pairs", height=430, width=1250)
    return fig


def fig_pair_replicas(analyses: dict[int, HeadAnalysis], panel: str, title: str) -> go.Figure:
    """Fig 3a (``panel='l_acc'``) or 3c (``'gain'``) for several seeds side by side."""
    seeds = list(analyses)
    fig = make_subplots(rows=1, cols=len(seeds), subplot_titles=[f"seed {s}" for s in seeds])
    for col, seed in enumerate(seeds, start=1):
        heads, pairs = analyses[seed].heads_frame(), analyses[seed].pairs_frame()
        if panel == "gain":
            trace = _head_heatmap(pair_gain(heads, pairs), "RdBu", 0.0, showscale=col == 1)
        else:
            trace = _head_heatmap(
                pair_matrix(heads, pairs, panel), "Viridis", None, showscale=col == 1
            )
        fig.add_trace(trace, row=1, col=col)
        fig.update_yaxes(autorange="reversed", row=1, col=col)
    fig.update_layout(title=title, height=430, width=400 * len(seeds))
    return fig


def fig04_subsets(subsets: pd.DataFrame) -> go.Figure:
    """s-acc, ROC AUC and l-acc of every subset of heads, by subset size (box statistics;
    the metrics measured on the sets, where s-acc was left to single heads and pairs)."""
    names = (("s_acc", "s-acc"), ("roc_auc", "ROC AUC"), ("l_acc", "l-acc"))
    metrics = [(column, label) for column, label in names if column in subsets]
    fig = make_subplots(rows=1, cols=len(metrics), subplot_titles=[m[1] for m in metrics])
    grouped = subsets.groupby("size")
    for col, (column, label) in enumerate(metrics, start=1):
        q = grouped[column].quantile([0.0, 0.25, 0.5, 0.75, 1.0]).unstack()
        fig.add_trace(
            go.Box(
                x=q.index.astype(str),
                q1=q[0.25],
                median=q[0.5],
                q3=q[0.75],
                lowerfence=q[0.0],
                upperfence=q[1.0],
                mean=grouped[column].mean(),
                name=label,
                showlegend=False,
            ),
            row=1,
            col=col,
        )
        fig.update_xaxes(title_text="subset size", row=1, col=col)
    fig.update_layout(
        title=f"Fig 4: all {len(subsets):,} subsets of heads (min, quartiles, max, mean)"
    )
    return fig


def fig05_ratios(
    heads: pd.DataFrame, title: str = "Fig 5", ratios: tuple[str, str] = ("w01", "w02")
) -> go.Figure:
    """Heads in the plane of two attention ratios (Count01: w01, w02), log axes, coloured by
    s-acc."""
    fig = go.Figure(_ratio_scatter(heads, showscale=True, ratios=ratios))
    fig.update_xaxes(type="log", title_text=RATIO_LABELS.get(ratios[0], ratios[0]))
    fig.update_yaxes(type="log", title_text=RATIO_LABELS.get(ratios[1], ratios[1]))
    fig.update_layout(title=f"{title}: attention ratios of heads, coloured by s-acc")
    return fig


RATIO_LABELS = {
    "w01": "w01 (weight of '0' / weight of '1' at '=')",
    "w02": "w02 (weight of '0' / weight of '2' at '=')",
}


def fig_ratio_replicas(analyses: dict[int, HeadAnalysis], title: str) -> go.Figure:
    seeds = list(analyses)
    fig = make_subplots(rows=1, cols=len(seeds), subplot_titles=[f"seed {s}" for s in seeds])
    for col, seed in enumerate(seeds, start=1):
        fig.add_trace(
            _ratio_scatter(analyses[seed].heads_frame(), showscale=col == 1), row=1, col=col
        )
        fig.update_xaxes(type="log", title_text="w01", row=1, col=col)
        fig.update_yaxes(type="log", title_text="w02", row=1, col=col)
    fig.update_layout(title=title, width=420 * len(seeds))
    return fig


def fig_head_outputs(
    outputs: dict[str, pd.DataFrame], heads: pd.DataFrame, chosen: list[int], title: str
) -> go.Figure:
    """Head outputs of train and test samples by class, the value vectors of '0', '1', '2'
    and the fitted separating line, in the output space of each chosen head."""
    cols = min(4, len(chosen))
    rows = math.ceil(len(chosen) / cols)
    s_acc = heads.set_index("head")["s_acc"]
    fig = make_subplots(
        rows=rows,
        cols=cols,
        subplot_titles=[f"head {h} (s-acc {s_acc[h]:.3f})" for h in chosen],
        vertical_spacing=0.3 / rows,
    )
    points, values, lines = outputs["points"], outputs["values"], outputs["separators"]
    for k, head in enumerate(chosen):
        cell = {"row": k // cols + 1, "col": k % cols + 1}
        mine, vectors = points[points["head"] == head], values[values["head"] == head]
        traces = _output_points(mine, first=k == 0) + _value_arrows(vectors, first=k == 0)
        xs = pd.concat([mine["x"], vectors["x"], pd.Series([0.0])])
        ys = pd.concat([mine["y"], vectors["y"], pd.Series([0.0])])
        line = lines[lines["head"] == head].iloc[0]
        segment = _separator_segment(line, xs.min(), xs.max(), ys.min(), ys.max())
        if segment is not None:
            traces.append(
                go.Scatter(
                    x=segment[0],
                    y=segment[1],
                    mode="lines",
                    line={"color": "black", "dash": "dash"},
                    name="separator (s-acc fit)",
                    legendgroup="separator",
                    showlegend=k == 0,
                )
            )
        for trace in traces:
            fig.add_trace(trace, **cell)
    fig.update_layout(title=title, height=380 * rows, width=max(700, 330 * cols))
    return fig


def _output_points(points: pd.DataFrame, first: bool) -> list[go.Scatter]:
    """One head's outputs, one trace per split and class."""
    return [
        go.Scatter(
            x=frame["x"],
            y=frame["y"],
            mode="markers",
            name=f"{split}, next '{label}'",
            legendgroup=f"{split}{label}",
            showlegend=first,
            marker={
                "color": CLASS_COLOURS.get(str(label), "#333"),
                "size": 4,
                "symbol": "circle" if split == "train" else "x",
                "opacity": 0.6,
            },
        )
        for (split, label), frame in points.groupby(["split", "class"])
    ]


def _value_arrows(vectors: pd.DataFrame, first: bool) -> list[go.Scatter]:
    """One head's value vector of each counted token, as an arrow from the origin."""
    return [
        go.Scatter(
            x=[0, v["x"]],
            y=[0, v["y"]],
            mode="lines+markers+text",
            text=["", f"v('{v['token']}')"],
            textposition="top center",
            line={"color": TOKEN_COLOURS.get(str(v["token"]), "#000"), "width": 2},
            marker={"size": [0, 8]},
            name=f"value of '{v['token']}'",
            legendgroup=f"value{v['token']}",
            showlegend=first,
        )
        for _, v in vectors.iterrows()
    ]


def _head_heatmap(
    matrix: np.ndarray,
    scale: str,
    mid: float | None,
    x: float | None = None,
    showscale: bool = True,
) -> go.Heatmap:
    n = len(matrix)
    return go.Heatmap(
        z=matrix,
        x=list(range(n)),
        y=list(range(n)),
        colorscale=scale,
        zmid=mid,
        showscale=showscale,
        colorbar={"x": x, "len": 0.8, "thickness": 12} if x is not None else {"len": 0.8},
        hovertemplate="heads %{y}, %{x}: %{z:.3f}<extra></extra>",
    )


def _ratio_scatter(
    heads: pd.DataFrame, showscale: bool, ratios: tuple[str, str] = ("w01", "w02")
) -> go.Scatter:
    names = heads["name"] if "name" in heads else heads["head"].astype(str)
    return go.Scatter(
        x=heads[ratios[0]],
        y=heads[ratios[1]],
        mode="markers+text",
        text=list(names),
        textposition="top center",
        marker={
            "color": heads["s_acc"],
            "colorscale": "Viridis",
            "cmin": 0.5,
            "cmax": 1.0,
            "size": 11,
            "showscale": showscale,
            "colorbar": {"title": "s-acc"},
        },
        hovertemplate="head %{text}: "
        + f"{ratios[0]} %{{x:.3g}}, {ratios[1]} %{{y:.3g}}<extra></extra>",
        showlegend=False,
    )


def _separator_segment(
    line: pd.Series, x0: float, x1: float, y0: float, y1: float
) -> tuple[list[float], list[float]] | None:
    """The part of w_x x + w_y y + b = 0 inside the box [x0, x1] × [y0, y1] (None if
    the line misses it)."""
    wx, wy, b = float(line["w_x"]), float(line["w_y"]), float(line["b"])
    found = []
    if abs(wy) > 1e-12:
        found += [(x, -(b + wx * x) / wy) for x in (x0, x1)]
    if abs(wx) > 1e-12:
        found += [(-(b + wy * y) / wx, y) for y in (y0, y1)]
    inside = [
        (x, y) for x, y in found if x0 - 1e-9 <= x <= x1 + 1e-9 and y0 - 1e-9 <= y <= y1 + 1e-9
    ]
    if len(inside) < 2:
        return None
    inside.sort()
    return [inside[0][0], inside[-1][0]], [inside[0][1], inside[-1][1]]
