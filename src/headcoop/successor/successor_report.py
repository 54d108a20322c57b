"""`headcoop successor`: succession scores, periodic features and steering of a checkpoint.

Writes succession.csv (layer, head, path, domain, score), features.csv (each feature of the
three methods with its residue shares and its importance: the drop of the best path's score on
the numbers when the feature is ablated), steering.csv (success of the residue arithmetic and of
its random control, per path and modulus), summary.json and successor.html (the figures: score
per head and domain, the best head's effective OV circuit over the months, the residue shares
of the features, steering against its control).
"""

import json
import time
from pathlib import Path
from typing import Any

import pandas as pd
import plotly.graph_objects as go
import torch
from plotly.subplots import make_subplots

from headcoop import pages
from headcoop.engine.run import predict
from headcoop.errors import HeadcoopError
from headcoop.files import write_atomic
from headcoop.heads.succession import (
    SUCCESSOR_THRESHOLD,
    effective_ov,
    head_inputs,
    succession_scores,
    successor_heads,
)
from headcoop.loading.checkpoint import load_with_task
from headcoop.runinfo import machine
from headcoop.successor.periodic import (
    ablation_importance,
    feature_table,
    find_features,
    residue_means,
    steer,
)
from headcoop.tasks.base import Task


def successor_checkpoint(
    checkpoint: str | Path, out: str | Path, task: Task | None = None
) -> dict[str, Any]:
    """Measure the checkpoint's heads as successor heads (on ``task``, by default the
    checkpoint's); write the files of the module docstring into ``out``; return the summary."""
    clock = time.perf_counter()
    model, task, _ = load_with_task(checkpoint, task)
    if not hasattr(task, "domains"):
        raise HeadcoopError(f"task {task.name!r} has no ordered domains to score succession on")
    out = Path(out)
    scores = succession_scores(model, task)
    pooled = scores[scores["domain"] == "all"].sort_values("score", ascending=False)
    best = _parse_path(pooled.iloc[0]["path"])
    numbers = torch.tensor([task.vocab.index(t) for t in task.domains["numbers"][0]])
    x = head_inputs(model, numbers)
    found = find_features(x)
    features = pd.DataFrame(feature_table(x, found))
    features["importance"] = [  # the best path's score drop on the numbers when ablated
        drop for directions in found.values()
        for drop in ablation_importance(model, numbers, directions, best)
    ]  # fmt: skip
    steering = pd.DataFrame(
        [
            {"path": path, "k": k, **steer(model, numbers, _parse_path(path), k)}
            for path in pooled["path"].head(4)
            for k in (2, 5, 10)
        ]
    )
    importance = ablation_importance(model, numbers, residue_means(x, 10), best)
    for name, frame in (("succession", scores), ("features", features), ("steering", steering)):
        write_atomic(out / f"{name}.csv", frame.to_csv(index=False))
    heads = successor_heads(scores)
    summary = {
        "checkpoint": str(checkpoint),
        "test_accuracy_by_domain": accuracy_by_domain(model, task),
        "threshold": SUCCESSOR_THRESHOLD,
        "successor_heads": heads["path"].tolist(),
        "scores": pooled[["path", "score"]].to_dict(orient="records"),
        "by_domain": scores.pivot_table(index="path", columns="domain", values="score").to_dict(),
        "features_present": features[features["present"]]
        .groupby(["method", "best_k"])
        .size()
        .rename("features")
        .reset_index()
        .to_dict(orient="records"),
        "mod10_mean_ablation_drop": sum(importance) / len(importance),
        "steering": steering.to_dict(orient="records"),
        "machine": machine(),
        "seconds": round(time.perf_counter() - clock, 1),
    }
    write_atomic(out / "summary.json", json.dumps(summary, indent=2) + "\n")
    pages.write_figure(
        figure(model, task, scores, features, steering, best), out / "successor.html"
    )
    return summary


def accuracy_by_domain(model: Any, task: Any) -> dict[str, float]:
    """The model's test accuracy on the prompts of each domain."""
    examples = task.split("test")
    correct = predict(model, task, examples)[:, 0].argmax(-1) == task.targets(examples)[:, 0]
    item = examples[:, 0]
    out = {}
    for name, (tokens, _) in task.domains.items():
        ids = torch.tensor([task.vocab.index(t) for t in tokens])
        mine = torch.isin(item, ids)
        out[name] = float(correct[mine].float().mean())
    return out


def _parse_path(path: str) -> tuple[tuple[int, int], ...]:
    return tuple(tuple(int(x) for x in step[1:].split("H")) for step in path.split(" -> "))


def figure(
    model: Any,
    task: Any,
    scores: pd.DataFrame,
    features: pd.DataFrame,
    steering: pd.DataFrame,
    best: tuple[tuple[int, int], ...],
) -> go.Figure:
    """Four panels: succession score per path and domain; the best path's effective OV
    circuit over the months; the features' residue shares; steering against its control."""
    fig = make_subplots(
        rows=2,
        cols=2,
        subplot_titles=(
            "succession score by head and domain",
            "effective OV circuit of the best head, months",
            "residue share of each feature, best modulus",
            "steering success: features vs random directions",
        ),
    )
    table = scores.pivot_table(index="path", columns="domain", values="score")
    fig.add_trace(
        go.Heatmap(z=table.values, x=list(table.columns), y=list(table.index), zmin=0, zmax=1,
                   colorscale="Viridis", colorbar={"x": 0.45, "len": 0.4, "y": 0.8}),
        row=1, col=1,
    )  # fmt: skip
    months = list(task.domains["months"][0])
    ids = torch.tensor([task.vocab.index(t) for t in months])
    with torch.no_grad():
        circuit = effective_ov(model, head_inputs(model, ids), ids, best).AB
    fig.add_trace(
        go.Heatmap(z=circuit.numpy(), x=months, y=months, colorscale="RdBu", zmid=0,
                   colorbar={"x": 1.0, "len": 0.4, "y": 0.8}),
        row=1, col=2,
    )  # fmt: skip
    fig.update_yaxes(title_text="input item", autorange="reversed", row=1, col=2)
    fig.update_xaxes(title_text="output logit", row=1, col=2)
    for method, frame in features.groupby("method"):
        pairs = zip(frame.index, frame["best_k"], strict=True)
        shares = [frame.loc[i, f"share_mod_{k}"] for i, k in pairs]
        fig.add_trace(
            go.Scatter(x=frame["best_k"].astype(str), y=shares, mode="markers", name=method),
            row=2, col=1,
        )  # fmt: skip
    fig.update_yaxes(title_text="residue share", row=2, col=1)
    for name, colour in (("features", "#1f77b4"), ("random", "#7f7f7f")):
        fig.add_trace(
            go.Bar(x=steering["path"] + " mod " + steering["k"].astype(str), y=steering[name],
                   name=f"steering: {name}", marker_color=colour),
            row=2, col=2,
        )  # fmt: skip
    fig.update_layout(title="Successor heads", height=900, width=1300, barmode="group")
    return fig
