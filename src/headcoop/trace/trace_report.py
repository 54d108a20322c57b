"""`headcoop trace`: the attention decomposition of a checkpoint, written to files.

- terms.csv: each score's split into singular components (the traced firings of a model with
  positions; the (query token, key token) pairs of a position-free one-layer model);
- graph.json: the traced head-to-head graph, edges weighted by their mean contribution;
- interventions.csv: every head-to-head edge removed along its components, against the same
  number of random components (no rows for one-layer models, which have no upstream heads);
- ratios.csv: for position-free models with attention ratios (Count01's w01, w02), each
  component's part of each head's log ratio;
- summary.json and trace.html: the numbers and the graph.
"""

import json
import logging
import time
from pathlib import Path
from typing import Any

import pandas as pd
import plotly.graph_objects as go
import torch

from headcoop import pages
from headcoop.compat import Model
from headcoop.engine.bags import bag_exact
from headcoop.files import write_atomic
from headcoop.loading.checkpoint import load_with_task
from headcoop.runinfo import machine
from headcoop.tasks.base import Task
from headcoop.trace.components import qk_svd, sparsity
from headcoop.trace.tracing import (
    SHARE,
    Trace,
    intervene,
    ratio_components,
    token_inputs,
    trace,
)

INTERVENTION_COLUMNS = (
    "source", "target", "side", "removed", "firings", "mean_contribution", "score_change",
    "margin_change",
)  # fmt: skip


def trace_checkpoint(
    checkpoint: str | Path,
    out: str | Path,
    prompts: int = 64,
    share: float = SHARE,
    task: Task | None = None,
) -> dict[str, Any]:
    """Decompose and trace the checkpoint's attention on ``prompts`` test examples; write the
    files of the module docstring into ``out``; return the summary."""
    clock = time.perf_counter()
    model, task, _ = load_with_task(checkpoint, task)
    out = Path(out)
    summary: dict[str, Any] = {"checkpoint": str(checkpoint), "task": task.name}
    if bag_exact(model):  # position-free, one layer: scores depend on the two tokens alone
        terms = token_pair_terms(model, task)
        summary["sparsity"] = _sparsity_stats(terms, ["head", "query", "key"])
        if task.attention_ratios:
            ratios = pd.DataFrame(ratio_components(model, task))
            write_atomic(out / "ratios.csv", ratios.to_csv(index=False))
            summary["ratios"] = ratio_summary(ratios, model, task)
        graph: dict[str, Any] = {"share": share, "nodes": [], "edges": []}
        effects = pd.DataFrame(columns=INTERVENTION_COLUMNS)  # one layer: no upstream heads
    else:
        examples = task.split("test")[:prompts]
        found = trace(model, task, examples, share=share)
        terms = firing_terms(found)
        summary["sparsity"] = _sparsity_stats(terms, ["firing"])
        graph = found.graph()
        effects = pd.DataFrame(
            intervene(model, task, examples, found), columns=INTERVENTION_COLUMNS
        )
        summary["edges"] = _edge_summary(graph, effects)
    write_atomic(out / "interventions.csv", effects.to_csv(index=False))
    write_atomic(out / "terms.csv", terms.to_csv(index=False))
    write_atomic(out / "graph.json", json.dumps(graph, indent=1) + "\n")
    pages.write_figure(graph_figure(graph, f"attention trace of {checkpoint}"), out / "trace.html")
    summary["machine"] = machine()
    summary["seconds"] = round(time.perf_counter() - clock, 1)
    write_atomic(out / "summary.json", json.dumps(summary, indent=2) + "\n")
    return summary


def token_pair_terms(model: Model, task: Task) -> pd.DataFrame:
    """Each head's score of every query token on every key token, split by component
    (position-free one-layer models, where that is all a score depends on)."""
    x = token_inputs(model)  # [vocab d_in]
    rows = []
    for head in range(model.cfg.n_heads):
        svd = qk_svd(model, 0, head)
        terms = torch.einsum("qk,vk,k->qvk", x @ svd.U, x @ svd.V, svd.S)  # [query key comp]
        for q, query in enumerate(task.vocab):
            for v, key in enumerate(task.vocab):
                for k, term in enumerate(terms[q, v].tolist()):
                    rows.append(
                        {"head": head, "query": query, "key": key, "component": k,
                         "sigma": float(svd.S[k]), "term": term}
                    )  # fmt: skip
    return pd.DataFrame(rows)


def firing_terms(found: Trace) -> pd.DataFrame:
    """The component terms of every traced firing, with the selected ones marked."""
    position = ("prompt", "layer", "head", "query_pos", "key_pos")
    rows = [
        {**{f: record[f] for f in position}, "firing": index, "component": k, "sigma": sigma,
         "term": term, "selected": k in record["components"]}
        for index, record in enumerate(found.firings)
        for k, (term, sigma) in enumerate(zip(record["terms"], record["sigma"], strict=True))
    ]  # fmt: skip
    if not rows:
        logging.getLogger(__name__).warning("no head fires on these prompts: nothing to trace")
    columns = [*position, "firing", "component", "sigma", "term", "selected"]
    return pd.DataFrame(rows, columns=columns)


def ratio_summary(ratios: pd.DataFrame, model: Model, task: Task) -> dict[str, Any]:
    """Per head and ratio: how many components carry the log ratio and the largest one's
    share; and their means over successful, mixed and failed heads."""
    from headcoop.heads.analyze import analyze

    classes = analyze(model, task, subsets=False).heads["class"]
    per_head = []
    for (head, name), frame in ratios.groupby(["head", "ratio"]):
        parts = torch.tensor(frame["log_ratio_part"].to_numpy())
        total = float(parts.sum())
        per_head.append(
            {
                "head": int(head),
                "class": classes[int(head)],
                "ratio": name,
                "log_ratio": total,
                "components": int(sparsity(parts)),
                "top_share": float(parts.abs().max() / parts.abs().sum().clamp(min=1e-12)),
                "top_component": int(parts.abs().argmax()),
            }
        )
    frame = pd.DataFrame(per_head)
    by_class = frame.groupby(["ratio", "class"])[["components", "top_share", "log_ratio"]].mean()
    return {
        "per_head": per_head,
        "by_class": {f"{r} {c}": v for (r, c), v in by_class.to_dict(orient="index").items()},
    }


def graph_figure(graph: dict[str, Any], title: str) -> go.Figure:
    """The traced graph: sources and heads by layer, edges as lines whose width follows the
    mean contribution; hovering an edge shows its side and components."""
    nodes = {n["id"]: n for n in graph["nodes"]}
    by_layer: dict[int, list[str]] = {}
    for name, node in nodes.items():
        by_layer.setdefault(node["layer"], []).append(name)
    where = {
        name: (layer, k - (len(names) - 1) / 2)
        for layer, names in by_layer.items()
        for k, name in enumerate(sorted(names))
    }
    top = max((e["mean_contribution"] for e in graph["edges"]), default=1.0) or 1.0
    fig = go.Figure()
    for edge in graph["edges"]:
        (x0, y0), (x1, y1) = where[edge["source"]], where[edge["target"]]
        text = (
            f"{edge['source']} → {edge['target']} ({edge['side']}): "
            f"{edge['mean_contribution']:.2f}, components {edge['components']}"
        )
        fig.add_trace(
            go.Scatter(
                x=[x0, (x0 + x1) / 2, x1],
                y=[y0, (y0 + y1) / 2 + (0.15 if edge["side"] == "key" else -0.15), y1],
                mode="lines",
                line={"width": 0.5 + 8 * max(edge["mean_contribution"], 0) / top,
                      "color": "#d62728" if edge["side"] == "key" else "#1f77b4"},
                hovertext=text,
                hoverinfo="text",
                showlegend=False,
            )
        )  # fmt: skip
    fig.add_trace(
        go.Scatter(
            x=[where[n][0] for n in nodes],
            y=[where[n][1] for n in nodes],
            mode="markers+text",
            text=list(nodes),
            textposition="top center",
            marker={"size": 14, "color": "#333"},
            hovertext=[json.dumps(node) for node in nodes.values()],
            hoverinfo="text",
            showlegend=False,
        )
    )
    fig.update_xaxes(title_text="layer (-1: embeddings and biases)", dtick=1)
    fig.update_yaxes(visible=False)
    fig.update_layout(title=f"{title}: blue query side, red key side", height=520)
    return fig


def _sparsity_stats(terms: pd.DataFrame, keys: list[str]) -> dict[str, Any]:
    counts = [
        int(sparsity(torch.tensor(frame["term"].to_numpy()))) for _, frame in terms.groupby(keys)
    ]
    series = pd.Series(counts)
    return {
        "scores": len(series),
        "mean": float(series.mean()) if len(series) else None,
        "median": float(series.median()) if len(series) else None,
        "histogram": {int(k): int(v) for k, v in series.value_counts().sort_index().items()},
    }


def _edge_summary(graph: dict[str, Any], effects: pd.DataFrame) -> list[dict[str, Any]]:
    """Head-to-head edges with their intervention effects, strongest first."""
    if effects.empty:
        return []
    rows = []
    for edge in graph["edges"]:
        mine = effects[
            (effects["source"] == edge["source"])
            & (effects["target"] == edge["target"])
            & (effects["side"] == edge["side"])
        ]
        if mine.empty:
            continue
        effect = mine.set_index("removed")
        rows.append(
            {
                **{k: edge[k] for k in ("source", "target", "side", "mean_contribution")},
                **{
                    f"{column}_{removed}": float(effect.loc[removed, column])
                    for removed in effect.index
                    for column in ("score_change", "margin_change")
                },
            }
        )
    return rows
