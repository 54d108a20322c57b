"""Tracing attention signals from head to head, and checking each traced edge by intervention.

For every firing of a head (`headcoop.trace.components.firings`) at the task's scored
positions, the components that carry the score are selected, each side's projection on them
is split into its sources, and the largest sources are kept until they pass `SHARE` of the
total. A kept source that is an earlier head becomes an edge (upstream head -> this head,
through the query or the key side); if that head itself fires at the position it was read
from, its own firing is traced in turn. Edge weights are mean contributions over the firings
of the downstream head.

Each edge between heads is then tested: the upstream head's output, projected on the selected
components' directions, is removed from what the downstream head reads (on the traced side
only), and the change of the downstream score and of the task's logit margin is measured,
beside removing as many of the head's other components chosen at random (the control).
"""

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import torch
from jaxtyping import Float, Int

from headcoop.compat import Model, attention_scores, score_hooks
from headcoop.errors import HeadcoopError
from headcoop.tasks.base import Task
from headcoop.trace.components import (
    QKSVD,
    augmented_qk,
    contributions,
    fires,
    firings,
    head_input,
    qk_svd,
    residual_sources,
    score_terms,
    selected_components,
    strongest,
)

SHARE = 0.7
"""Upstream contributors are kept, largest first, until they pass this share of a side's total
(the original method's value)."""


@dataclass
class Trace:
    """What `trace` found.

    Attributes:
        firings: one record per traced firing: prompt, layer, head, query and key position,
            score, the selected components and their number (the sparsity), every
            component's term and singular value.
        edges: (source, (layer, head), side) -> (firing index, contribution) for each firing
            of the target head where the source was kept.
        components: the same keys -> how often each component was selected.
    """

    firings: list[dict[str, Any]] = field(default_factory=list)
    edges: dict[tuple, list[tuple[int, float]]] = field(default_factory=lambda: defaultdict(list))
    components: dict[tuple, dict[int, int]] = field(
        default_factory=lambda: defaultdict(lambda: defaultdict(int))
    )

    def graph(self) -> dict[str, Any]:
        """Nodes and edges as JSON: an edge's weight is its mean contribution over the target
        head's traced firings."""
        fired = defaultdict(int)
        for record in self.firings:
            fired[(record["layer"], record["head"])] += 1
        offsets = defaultdict(list)
        for record in self.firings:
            offsets[f"L{record['layer']}H{record['head']}"].append(
                record["query_pos"] - record["key_pos"]
            )
        edges, nodes = [], {}
        for (source, target, side), values in self.edges.items():
            for node in (f"L{target[0]}H{target[1]}", source):
                nodes.setdefault(node, _node(node, offsets.get(node, [])))
            target_id = f"L{target[0]}H{target[1]}"
            edges.append(
                {
                    "source": source,
                    "target": target_id,
                    "side": side,
                    "mean_contribution": sum(v for _, v in values) / fired[target],
                    "kept_in": len(values),
                    "firings": fired[target],
                    "components": dict(self.components[(source, target, side)]),
                }
            )
        edges.sort(key=lambda e: -e["mean_contribution"])
        return {"share": SHARE, "nodes": list(nodes.values()), "edges": edges}


class _Run:
    """One forward pass over the prompts, with what tracing reads from it computed once: each
    head's SVD, each layer's head input, sources and attention scores."""

    def __init__(self, model: Model, tokens: torch.Tensor) -> None:
        self.model = model
        self.logits, self.cache = model.run_with_cache(tokens)
        self._svd: dict[tuple[int, int], QKSVD] = {}
        self._inputs: dict[int, torch.Tensor] = {}
        self._sources: dict[int, dict[str, torch.Tensor]] = {}
        self._scores: dict[int, torch.Tensor] = {}

    def svd(self, layer: int, head: int) -> QKSVD:
        if (layer, head) not in self._svd:
            self._svd[(layer, head)] = qk_svd(self.model, layer, head)
        return self._svd[(layer, head)]

    def inputs(self, layer: int) -> torch.Tensor:
        if layer not in self._inputs:
            self._inputs[layer] = head_input(self.model, self.cache, layer)
        return self._inputs[layer]

    def sources(self, layer: int) -> dict[str, torch.Tensor]:
        if layer not in self._sources:
            self._sources[layer] = residual_sources(self.model, self.cache, layer)
        return self._sources[layer]

    def scores(self, layer: int) -> Float[torch.Tensor, "batch head query key"]:
        if layer not in self._scores:
            self._scores[layer] = attention_scores(self.model, self.cache, layer)
        return self._scores[layer]


@torch.no_grad()
def trace(
    model: Model,
    task: Task,
    examples: torch.Tensor,
    layer: int | None = None,
    share: float = SHARE,
) -> Trace:
    """Trace every firing of the heads of ``layer`` (the last by default) whose query is one of
    the task's scored positions, recursing into upstream heads that fire where they are read.

    Raises:
        HeadcoopError: a rotary model, whose scores are not the bilinear form of W_Q and W_K
            that the decomposition splits.
    """
    if model.cfg.positional_embedding_type == "rotary":
        raise HeadcoopError(
            "trace cannot decompose rotary attention (its scores move with position)"
        )
    batch = task.sequences(examples)
    run = _Run(model, batch.tokens)
    layer = model.cfg.n_layers - 1 if layer is None else layer
    result = Trace()
    scored = set(batch.read_pos[0].tolist())
    for head in range(model.cfg.n_heads):
        pattern = run.cache[f"blocks.{layer}.attn.hook_pattern"][:, head]
        for b, i, j in firings(pattern, run.scores(layer)[:, head]).tolist():
            if i in scored:
                _trace_firing(run, layer, head, (b, i, j), share, result)
    return result


def _trace_firing(
    run: _Run, layer: int, head: int, firing: tuple[int, int, int], share: float, result: Trace
) -> None:
    b, i, j = firing
    svd, x = run.svd(layer, head), run.inputs(layer)
    terms = score_terms(svd, x[b, i], x[b, j])  # [component]
    chosen = selected_components(terms)
    result.firings.append(
        {
            "prompt": b,
            "layer": layer,
            "head": head,
            "query_pos": i,
            "key_pos": j,
            "score": float(terms.sum()),
            "components": torch.nonzero(chosen).flatten().tolist(),
            "sparsity": int(chosen.sum()),
            "terms": terms.tolist(),
            "sigma": svd.S.tolist(),
        }
    )
    sources = run.sources(layer)
    for side, position in (("query", i), ("key", j)):
        parts = contributions(svd, sources, x, firing, chosen, side)
        for source in strongest(parts, share):
            key = (source, (layer, head), side)
            result.edges[key].append((len(result.firings) - 1, parts[source]))
            for k in torch.nonzero(chosen).flatten().tolist():
                result.components[key][k] += 1
            upstream = _as_head(source)
            if upstream is not None:
                _recurse(run, *upstream, b, position, share, result)


def _recurse(
    run: _Run, layer: int, head: int, b: int, position: int, share: float, result: Trace
) -> None:
    """Trace an upstream head's own firing at ``position``, if it fires there."""
    row = run.cache[f"blocks.{layer}.attn.hook_pattern"][b, head, position]
    scores = run.scores(layer)[b, head, position]
    j = int(row.argmax())
    if fires(row, scores)[j]:
        _trace_firing(run, layer, head, (b, position, j), share, result)


def _as_head(source: str) -> tuple[int, int] | None:
    if not (source.startswith("L") and "H" in source):
        return None
    layer, head = source[1:].split("H")
    return int(layer), int(head)


def _node(name: str, offsets: list[int]) -> dict[str, Any]:
    """A graph node; a head's traced firings give its typical offset (query minus key
    position: 1 for a previous-token head)."""
    head = _as_head(name)
    node = {"id": name, "layer": -1 if head is None else head[0]}
    if offsets:
        node["firings"] = len(offsets)
        node["median_offset"] = sorted(offsets)[len(offsets) // 2]
    return node


@torch.no_grad()
def intervene(
    model: Model,
    task: Task,
    examples: torch.Tensor,
    found: Trace,
    max_firings: int = 16,
    seed: int = 0,
) -> list[dict[str, Any]]:
    """For every head-to-head edge, the mean change of the downstream score and of the logit
    margin when the upstream head's output is removed along the selected components, and the
    same for as many random other components of the head (the control), over at most
    ``max_firings`` of the target head's firings where the edge was kept.

    ``examples`` must be the ones `trace` ran on.
    """
    batch = task.sequences(examples)
    run = _Run(model, batch.tokens)
    gen = torch.Generator().manual_seed(seed)
    fired = defaultdict(int)
    for record in found.firings:
        fired[(record["layer"], record["head"])] += 1
    rows = []
    for (source, target, side), values in found.edges.items():
        upstream = _as_head(source)
        if upstream is None:
            continue
        records = [found.firings[index] for index, _ in values[:max_firings]]
        chosen = [torch.tensor(r["components"]) for r in records]
        control = []
        for picked in chosen:
            others = torch.tensor([k for k in range(model.cfg.d_head) if k not in picked])
            control.append(others[torch.randperm(len(others), generator=gen)[: len(picked)]])
        for name, components in (("selected", chosen), ("random", control)):
            usable = [(r, c) for r, c in zip(records, components, strict=True) if len(c)]
            if not usable:
                continue
            score, margin = _remove(run, batch, upstream, target, side, usable)
            rows.append(
                {
                    "source": source,
                    "target": f"L{target[0]}H{target[1]}",
                    "side": side,
                    "removed": name,
                    "firings": len(usable),
                    "mean_contribution": sum(v for _, v in values) / fired[target],
                    "score_change": score,
                    "margin_change": margin,
                }
            )
    return rows


def _remove(
    run: _Run,
    batch: Any,
    upstream: tuple[int, int],
    target: tuple[int, int],
    side: str,
    cases: list[tuple[dict[str, Any], torch.Tensor]],
) -> tuple[float, float]:
    """For each (firing, components): remove the upstream head's output along the components'
    directions from what the target head reads on ``side`` at the firing's position (LayerNorm
    scale held). All firings run as one batch, one edited prompt a row. Returns the mean change
    of the target score and of the logit margin at the query position."""
    model = run.model
    layer, head = target
    svd = run.svd(layer, head)
    query_map, key_map = augmented_qk(model, layer, head)
    read_map = (query_map if side == "query" else key_map)[:-1]  # [d_model d_head]
    source = run.sources(layer)[f"L{upstream[0]}H{upstream[1]}"]
    rows, queries, keys, positions, shifts, targets = [], [], [], [], [], []
    for record, components in cases:
        b, i, j = record["prompt"], record["query_pos"], record["key_pos"]
        position = i if side == "query" else j
        directions = (svd.U if side == "query" else svd.V)[:-1, components]  # [d_model k]
        basis, _ = torch.linalg.qr(directions)
        part = source[b, position, :-1]
        shifts.append(-(basis @ (basis.T @ part)) @ read_map)  # [d_head]
        read = torch.nonzero(batch.read_pos[b] == i).flatten()
        targets.append(
            int(batch.targets[b, read[0]]) if len(read) else int(run.logits[b, i].argmax())
        )
        rows.append(b)
        queries.append(i)
        keys.append(j)
        positions.append(position)
    n = torch.arange(len(rows))
    rows_t, queries_t, keys_t = torch.tensor(rows), torch.tensor(queries), torch.tensor(keys)
    shift = torch.stack(shifts)  # [case d_head]
    hook_name = f"blocks.{layer}.attn.hook_{'q' if side == 'query' else 'k'}"

    def edit(activation: torch.Tensor, hook: Any) -> torch.Tensor:
        activation = activation.clone()
        activation[n, torch.tensor(positions), head] += shift
        return activation

    with model.hooks(fwd_hooks=[(hook_name, edit)]):
        logits, edited = model.run_with_cache(
            batch.tokens[rows_t], names_filter=list(score_hooks(layer))
        )
    logits = logits[n, queries_t]
    edited_scores = attention_scores(model, edited, layer)[n, head, queries_t, keys_t]
    clean_logits = run.logits[rows_t, queries_t]
    clean_scores = run.scores(layer)[rows_t, head, queries_t, keys_t]
    target_t = torch.tensor(targets)
    margin_change = _margin(logits, target_t) - _margin(clean_logits, target_t)
    return float((edited_scores - clean_scores).mean()), float(margin_change.mean())


def _margin(
    logits: Float[torch.Tensor, "case d_vocab"], target: Int[torch.Tensor, " case"]
) -> Float[torch.Tensor, " case"]:
    """The correct token's logit minus the largest other logit."""
    correct = logits.gather(1, target[:, None])[:, 0]
    others = logits.scatter(1, target[:, None], float("-inf"))
    return correct - others.amax(-1)


def ratio_components(model: Model, task: Task) -> list[dict[str, Any]]:
    """For position-free one-layer models: each singular component's part of each head's
    logarithmic attention ratios (Count01: log w01 and log w02 at '=').

    log w_ab at query q = (s(q, a) - s(q, b)) / scale = sum_k sigma_k (x~_q . u_k)
    (v_k . (x~_a - x~_b)) / scale, with x~_t the input of a lone token t. The parts add up to
    the log of `headcoop.metrics.attention.weight_ratio`.
    """
    rows = []
    for head in range(model.cfg.n_heads):
        svd = qk_svd(model, 0, head)
        x = token_inputs(model)  # [vocab d_in]
        for name, (query, numerator, denominator) in task.attention_ratios.items():
            q, a, b = (task.vocab.index(t) for t in (query, numerator, denominator))
            parts = svd.S * (x[q] @ svd.U) * ((x[a] - x[b]) @ svd.V) / svd.attn_scale
            total = float(parts.sum())
            for k, part in enumerate(parts.tolist()):
                rows.append(
                    {
                        "head": head,
                        "ratio": name,
                        "component": k,
                        "sigma": float(svd.S[k]),
                        "log_ratio_part": part,
                        "log_ratio": total,
                    }
                )
    return rows


def token_inputs(model: Model) -> Float[torch.Tensor, "d_vocab d_in"]:
    """[x; 1] of each token standing alone at position 0 (position-free models)."""
    tokens = torch.arange(model.cfg.d_vocab)[:, None]
    reads = ("blocks.0.ln1.hook_normalized", "blocks.0.hook_resid_pre")
    _, cache = model.run_with_cache(tokens, names_filter=list(reads))
    return head_input(model, cache, 0)[:, 0]
