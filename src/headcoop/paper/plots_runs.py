"""The paper's figures of many models: the grid, interventions, training dynamics, Table 1
and the minimal solution.

Every function takes DataFrames (as `headcoop.paper.compute.FigureData` returns them) and
returns a `plotly.graph_objects.Figure`; nothing here trains or measures.
"""

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from headcoop.heads.colours import seed_colour
from headcoop.metrics.classes import SUCCESSFUL


def fig02_grid(grid: pd.DataFrame) -> go.Figure:
    """Mean and standard deviation over seeds of test accuracy on the heads × d_model grid."""
    models = grid.drop_duplicates(["d_model", "n_heads", "seed"])
    stats = models.groupby(["d_model", "n_heads"])["test_accuracy"].agg(["mean", "std", "count"])
    mean = stats["mean"].unstack("n_heads")
    std = stats["std"].unstack("n_heads")
    n_seeds = int(stats["count"].max())
    fig = make_subplots(
        rows=1,
        cols=2,
        subplot_titles=("mean test accuracy", "standard deviation"),
        horizontal_spacing=0.12,
    )
    for col, (table, scale) in enumerate(((mean, "Viridis"), (std, "Reds")), start=1):
        fig.add_trace(
            go.Heatmap(
                z=table.values,
                x=[str(h) for h in table.columns],
                y=[str(d) for d in table.index],
                colorscale=scale,
                text=np.round(table.values, 3),
                texttemplate="%{text}",
                colorbar={"x": 0.44 if col == 1 else 1.0},
            ),
            row=1,
            col=col,
        )
        fig.update_xaxes(title_text="heads", type="category", row=1, col=col)
        fig.update_yaxes(title_text="d_model", type="category", row=1, col=col)
    fig.update_layout(title=f"Fig 2: model accuracy on Count01 over {n_seeds} seeds")
    return fig


def fig_interventions(curves: pd.DataFrame, sweep: str, title: str) -> go.Figure:
    """s-acc under a fixed attention ratio: mean over heads with a ±1 std band."""
    frame = curves[curves["sweep"] == sweep].sort_values("ratio")
    upper, lower = frame["mean"] + frame["std"], frame["mean"] - frame["std"]
    fig = go.Figure(
        [
            go.Scatter(
                x=pd.concat([frame["ratio"], frame["ratio"][::-1]]),
                y=pd.concat([upper, lower[::-1]]),
                fill="toself",
                fillcolor="rgba(31,119,180,0.2)",
                line={"width": 0},
                name="± 1 std over heads",
            ),
            go.Scatter(x=frame["ratio"], y=frame["mean"], mode="lines+markers", name="mean s-acc"),
        ]
    )
    fig.update_xaxes(type="log", title_text=f"fixed {sweep}")
    fig.update_yaxes(title_text="s-acc")
    fig.update_layout(title=title)
    return fig


def fig10_weighted(pooled: pd.DataFrame, first_epoch: int, r: float) -> go.Figure:
    """Head-weighted s-acc against model accuracy, one dot per pooled checkpoint (as
    `headcoop.heads.dynamics.weighted_s_acc_correlation` pools them)."""
    fig = go.Figure()
    for i, (seed, frame) in enumerate(pooled.groupby("run")):
        fig.add_trace(
            go.Scatter(
                x=frame["weighted_s_acc"],
                y=frame["accuracy"],
                mode="markers",
                name=f"seed {seed}",
                marker={"color": seed_colour(i), "size": 6},
                text=[f"epoch {e}" for e in frame["epoch"]],
            )
        )
    fig.update_xaxes(title_text="head-weighted s-acc, Σ hw_i · s-acc_i")
    fig.update_yaxes(title_text="model test accuracy")
    fig.update_layout(title=f"Fig 10: checkpoints from epoch {first_epoch} on; Pearson r = {r:.3f}")
    return fig


def fig14_dynamics(random_heads: pd.DataFrame, trajectories: pd.DataFrame, seed: int) -> go.Figure:
    """(left) s-acc of random heads at initialisation; (right) s-acc of each head over
    training, line width by the head's mean weight and marker size by its weight then."""
    fig = make_subplots(
        rows=1,
        cols=2,
        subplot_titles=(
            f"{len(random_heads):,} heads at initialisation",
            f"heads of seed {seed} over training",
        ),
    )
    fig.add_trace(
        go.Histogram(x=random_heads["s_acc"], nbinsx=50, name="random heads", showlegend=False),
        row=1,
        col=1,
    )
    fig.update_xaxes(title_text="s-acc", row=1, col=1)
    fig.update_yaxes(title_text="heads", row=1, col=1)
    mine = trajectories[trajectories["run"] == seed]
    top = mine["head_weight"].max()
    for head, frame in mine.groupby("head"):
        width = 0.5 + 5 * frame["head_weight"].mean() / top
        fig.add_trace(
            go.Scatter(
                x=frame["epoch"],
                y=frame["s_acc"],
                mode="lines+markers",
                line={"width": width},
                marker={"size": 2 + 8 * frame["head_weight"] / top},
                name=f"head {head}",
            ),
            row=1,
            col=2,
        )
    fig.update_xaxes(title_text="epoch", row=1, col=2)
    fig.update_yaxes(title_text="s-acc", row=1, col=2)
    fig.update_layout(title="Fig 14: s-acc at initialisation and during training", width=1200)
    return fig


def table1_frame(table1: pd.DataFrame) -> pd.DataFrame:
    """Table 1 from the per-head sweep results: one line per (d_model, heads per model)."""
    rows = []
    for (d_model, n_heads), frame in table1.groupby(["d_model", "n_heads"], sort=False):
        rows.append(
            {
                "embedding dim": d_model,
                "number of exps": frame["seed"].nunique(),
                "heads per exp": n_heads,
                "total heads": len(frame),
                "heads with s-acc >= 98%": int((frame["s_acc"] >= SUCCESSFUL).sum()),
                "perfect heads": int((frame["s_acc"] >= 1.0).sum()),
                "share >= 98%": (frame["s_acc"] >= SUCCESSFUL).mean(),
                "share perfect": (frame["s_acc"] >= 1.0).mean(),
                "mean model accuracy": frame.drop_duplicates("seed")["test_accuracy"].mean(),
            }
        )
        if "s_acc_liblinear" in frame:  # the same shares as LinearSVC's defaults give them
            liblinear = frame["s_acc_liblinear"]
            rows[-1]["share >= 98% (liblinear)"] = (liblinear >= SUCCESSFUL).mean()
            rows[-1]["share perfect (liblinear)"] = (liblinear >= 1.0).mean()
    return pd.DataFrame(rows).sort_values(
        ["embedding dim", "heads per exp"], ascending=[False, True]
    )


def table_figure(frame: pd.DataFrame, title: str) -> go.Figure:
    """A DataFrame as a plotly table (numbers rounded for reading)."""
    cells = [
        [f"{v:.3f}" if isinstance(v, float) else str(v) for v in frame[c]] for c in frame.columns
    ]
    header, row = 64, 30  # a header of long column names wraps onto three lines
    table = go.Table(
        header={"values": list(frame.columns), "height": header},
        cells={"values": cells, "height": row},
    )
    fig = go.Figure(table)
    fig.update_layout(
        title=title, height=header + row * len(frame) + 140, margin={"t": 80, "b": 40}
    )
    return fig


def fig_minimal(minimal: pd.DataFrame) -> go.Figure:
    """Appendix A: test accuracy of the hand-set minimal model by N, on the test split and
    with the number of 2s in every test example raised."""
    fig = go.Figure()
    for i, (n2, frame) in enumerate(minimal.groupby("n2", sort=False)):
        label = "test split" if str(n2) == "test split" else f"n2 = {int(float(n2)):,}"
        fig.add_trace(
            go.Scatter(
                x=frame["N"],
                y=frame["answer_accuracy"],
                mode="lines+markers",
                name=label,
                marker={"color": seed_colour(i)},
            )
        )
    fig.update_xaxes(title_text="N (embedding scale)")
    fig.update_yaxes(title_text="test accuracy of the answer")
    fig.update_layout(title="Appendix A: the minimal solution (d_model 1, one head, d_head 1)")
    return fig
