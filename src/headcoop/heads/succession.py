"""Successor heads: succession scores of each head's effective OV circuit, from weights alone.

After Gould et al. (2023). A head's effective OV circuit maps an item's input through the
head's value and output matrices to the unembedding: in an attention-only model the input is
the item's embedding (normalised by the layer's LayerNorm, if any, and with the mean positional
embedding added where positions are learned), which takes the role that MLP0 plays in a
language model; in a two-layer model the virtual path through each layer-0 head is a further
candidate. The circuit is a TransformerLens `FactoredMatrix` (``model.OV``); only the block of
one domain's rows and columns is ever multiplied out.

A head *succeeds* on an item when, among its domain's tokens, the item's successor gets the
largest logit; its succession score is the share of (domain, item) pairs where it succeeds.
A task offers ordered domains through a ``domains`` attribute: name -> (tokens in order,
cyclic).
"""

from typing import Any

import pandas as pd
import torch
from jaxtyping import Float, Int
from transformer_lens import FactoredMatrix

from headcoop.compat import Model

SUCCESSOR_THRESHOLD = 0.4
"""A head whose pooled succession score reaches this is a successor head (the bound a public
re-implementation of the method uses; the paper's own is not stated)."""


def head_inputs(
    model: Model, token_ids: Int[torch.Tensor, " token"], layer: int = 0
) -> Float[torch.Tensor, "token d_model"]:
    """What a layer-0 head reads for each token on its own: the embedding, plus the mean
    positional embedding where positions are learned, through the layer's LayerNorm."""
    x = model.W_E[token_ids]
    if model.pos_embed.W_pos.any():
        x = x + model.W_pos.mean(0)
    if model.cfg.normalization_type is not None:
        ln = model.blocks[layer].ln1
        x = x - x.mean(-1, keepdim=True)
        x = x / (x.pow(2).mean(-1, keepdim=True) + model.cfg.eps).sqrt() * ln.w + ln.b
    return x.detach()


def effective_ov(
    model: Model,
    inputs: Float[torch.Tensor, "row d_model"],
    columns: Int[torch.Tensor, " column"],
    path: tuple[tuple[int, int], ...],
) -> FactoredMatrix:
    """inputs -> the OV circuits of the heads on ``path`` ((layer, head) in order) -> the
    unembedding's ``columns``: a `FactoredMatrix` [row column]."""
    (layer, head), *rest = path
    circuit = inputs @ model.OV[layer, head]
    for layer, head in rest:
        circuit = circuit @ model.OV[layer, head]
    return circuit @ model.W_U[:, columns].detach()


def domain_scores(
    logits: Float[torch.Tensor, "item token"], cyclic: bool
) -> Float[torch.Tensor, " asked"]:
    """1 where an item's successor has its row's largest logit, else 0, for every item of a
    domain that has a successor (rows in domain order; the last item only if cyclic).

    >>> domain_scores(torch.tensor([[0.0, 2.0, 1.0], [0.0, 0.0, 3.0], [0.0, 5.0, 0.0]]), True)
    tensor([1., 1., 0.])
    """
    n = logits.shape[0]
    asked = n if cyclic else n - 1
    following = (torch.arange(asked) + 1) % n
    return (logits[:asked].argmax(-1) == following).float()


def paths(model: Model) -> list[tuple[tuple[int, int], ...]]:
    """Every head of every layer on its own, and in a model with two or more layers every
    virtual path from a layer-0 head through a layer-1 head."""
    single = [
        ((layer, head),) for layer in range(model.cfg.n_layers) for head in range(model.cfg.n_heads)
    ]
    if model.cfg.n_layers < 2:
        return single
    heads = range(model.cfg.n_heads)
    return single + [((0, h0), (1, h1)) for h0 in heads for h1 in heads]


@torch.no_grad()
def succession_scores(
    model: Model,
    task: Any,
    inputs: Float[torch.Tensor, "d_vocab d_model"] | None = None,
) -> pd.DataFrame:
    """Succession scores of every head (and virtual path): one row per (path, domain), plus
    the pooled score over all pairs under domain 'all'.

    Args:
        model: the model.
        task: a task with ``domains`` (name -> (tokens in order, cyclic)).
        inputs: what the heads read for each vocabulary token; by default `head_inputs`.
            Feature ablations and steering pass edited inputs.

    Returns:
        A DataFrame with columns layer, head, path, domain, score, successes, pairs.
    """
    if inputs is None:
        inputs = head_inputs(model, torch.arange(model.cfg.d_vocab))
    rows = []
    for path in paths(model):
        layer, head = path[-1]
        name = " -> ".join(f"L{lay}H{h}" for lay, h in path)
        hits = []
        for domain, (tokens, cyclic) in task.domains.items():
            ids = torch.tensor([task.vocab.index(t) for t in tokens])
            logits = effective_ov(model, inputs[ids], ids, path).AB  # [item token]
            hit = domain_scores(logits, cyclic)
            hits.append(hit)
            rows.append(_row(layer, head, name, domain, hit))
        rows.append(_row(layer, head, name, "all", torch.cat(hits)))
    return pd.DataFrame(rows)


def successor_heads(scores: pd.DataFrame) -> pd.DataFrame:
    """The heads (and virtual paths) whose pooled score reaches `SUCCESSOR_THRESHOLD`."""
    pooled = scores[scores["domain"] == "all"]
    return pooled[pooled["score"] >= SUCCESSOR_THRESHOLD]


def _row(layer: int, head: int, path: str, domain: str, hit: torch.Tensor) -> dict[str, Any]:
    return {
        "layer": layer,
        "head": head,
        "path": path,
        "domain": domain,
        "score": float(hit.mean()),
        "successes": int(hit.sum()),
        "pairs": len(hit),
    }
