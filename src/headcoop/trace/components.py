"""Sparse attention decomposition: attention scores split by the singular components of a
head's query-key matrix, and the signals behind them traced from head to head.

After Franco & Crovella (2024). A head's score of query position i on key position j is a
bilinear form of the two positions' inputs. With the inputs extended by a constant 1 (so that
the biases, and a LayerNorm's weight and bias, fold into one matrix),

    q_i . k_j = x~_i Omega x~_j^T,   Omega = [W_Q; b_Q] [W_K; b_K]^T,   x~ = [x; 1]

where x is the layer's normalised residual (``ln1.hook_normalized``; the residual itself
without LayerNorm). Omega has rank at most d_head; with its SVD (sigma_k, u_k, v_k) the score
splits into one term per component,

    q_i . k_j = sum_k sigma_k (x~_i . u_k)(v_k . x~_j),

which add up to ``hook_attn_scores`` times the attention scale. Few components usually carry
a score (`sparsity`). The residual is itself a sum of sources (embeddings, every earlier head's
output, biases), so each side's projection on the selected components splits into the
sources' contributions (`contributions`), which add back exactly: that says which upstream
head set the score, and through which directions. `headcoop.trace.tracing` builds the graph
of such edges and checks each one by intervention.
"""

from dataclasses import dataclass

import torch
from jaxtyping import Bool, Float, Int
from transformer_lens import ActivationCache, FactoredMatrix

from headcoop.compat import Model, attention_scale

FIRING_PATTERN = 0.5
"""A head *fires* from query i to key j when it puts at least this much attention on j (with a
non-negative score, and j not the first position, which heads use as a resting place)."""


@dataclass(frozen=True)
class QKSVD:
    """The SVD of one head's augmented query-key matrix: Omega = U diag(S) V^T over [x; 1].

    Attributes:
        U, V: left (query-side) and right (key-side) singular vectors, one column each.
        S: singular values, largest first (d_head of them: the rank's bound).
        attn_scale: what TransformerLens divides the scores by.
    """

    layer: int
    head: int
    U: Float[torch.Tensor, "d_in component"]
    S: Float[torch.Tensor, " component"]
    V: Float[torch.Tensor, "d_in component"]
    attn_scale: float


def augmented_qk(
    model: Model, layer: int, head: int
) -> tuple[Float[torch.Tensor, "d_in d_head"], Float[torch.Tensor, "d_in d_head"]]:
    """The query and key maps over [x; 1]: [W_Q; b_Q] and [W_K; b_K], with the layer's
    LayerNorm weight and bias folded in (x is then the normalised residual)."""
    attn, norm = model.blocks[layer].attn, model.cfg.normalization_type
    maps = []
    for W, b in ((attn.W_Q[head], attn.b_Q[head]), (attn.W_K[head], attn.b_K[head])):
        if norm in ("LN", "RMS"):  # a normalization with a weight (and, for LN, a bias)
            ln = model.blocks[layer].ln1
            W, b = ln.w[:, None] * W, (ln.b @ W + b if norm == "LN" else b)
        maps.append(torch.cat([W, b[None]]).detach())
    return maps[0], maps[1]


def qk_svd(model: Model, layer: int, head: int) -> QKSVD:
    """The SVD of the head's augmented query-key matrix, through TransformerLens's
    `FactoredMatrix` (the d_in x d_in matrix is never formed)."""
    query_map, key_map = augmented_qk(model, layer, head)
    U, S, V = FactoredMatrix(query_map, key_map.T).svd()
    return QKSVD(layer, head, U, S, V, attention_scale(model, layer))


def head_input(
    model: Model, cache: ActivationCache, layer: int
) -> Float[torch.Tensor, "batch pos d_in"]:
    """What the layer's heads read, extended by a constant 1: [x; 1]."""
    name = "ln1.hook_normalized" if model.cfg.normalization_type is not None else "hook_resid_pre"
    x = cache[f"blocks.{layer}.{name}"]
    return torch.cat([x, torch.ones_like(x[..., :1])], dim=-1)


def score_terms(
    svd: QKSVD,
    x_query: Float[torch.Tensor, "*pair d_in"],
    x_key: Float[torch.Tensor, "*pair d_in"],
) -> Float[torch.Tensor, "*pair component"]:
    """sigma_k (x~_i . u_k)(v_k . x~_j) for each component: they sum to the score q_i . k_j
    (``hook_attn_scores`` times ``svd.attn_scale``)."""
    return svd.S * (x_query @ svd.U) * (x_key @ svd.V)


def all_pair_terms(
    svd: QKSVD, x: Float[torch.Tensor, "batch pos d_in"]
) -> Float[torch.Tensor, "batch query_pos key_pos component"]:
    """`score_terms` of every (query, key) pair of positions."""
    return torch.einsum("bik,bjk,k->bijk", x @ svd.U, x @ svd.V, svd.S)


def component_order(
    terms: Float[torch.Tensor, "*score component"],
) -> tuple[Int[torch.Tensor, "*score component"], Int[torch.Tensor, " *score"]]:
    """The components of each score, largest first in the direction of its total, and the
    sparsity: how many of them, taken in that order, first reach the total.

    The running sum of the terms (each signed toward the total) first reaches the total's size
    after that many components. Rounding can leave even the full sum a hair short of the total
    (and cancelling terms make any prefix possible); where no prefix reaches it, every component
    is counted.

    >>> order, k = component_order(torch.tensor([[0.1, 3.0, -1.0, 0.5]]))
    >>> order.tolist(), k.tolist()
    ([[1, 3, 0, 2]], [1])
    """
    total = terms.sum(-1, keepdim=True)
    sign = torch.where(total >= 0, 1.0, -1.0).to(terms.dtype)
    signed, order = (terms * sign).sort(dim=-1, descending=True)
    reached = signed.cumsum(-1) >= total * sign
    n = terms.shape[-1]
    first = torch.where(reached.any(-1), reached.int().argmax(-1) + 1, n)
    return order, first


def sparsity(terms: Float[torch.Tensor, "*score component"]) -> Int[torch.Tensor, " *score"]:
    """How many components, largest first, it takes to reach each score (see
    `component_order`)."""
    return component_order(terms)[1]


def selected_components(
    terms: Float[torch.Tensor, "*score component"],
) -> Bool[torch.Tensor, "*score component"]:
    """The components that carry each score: the first `sparsity` of `component_order`."""
    order, k = component_order(terms)
    rank = torch.empty_like(order).scatter_(
        -1, order, torch.arange(order.shape[-1]).expand_as(order)
    )
    return rank < k[..., None]


def firings(
    pattern: Float[torch.Tensor, "batch query_pos key_pos"],
    scores: Float[torch.Tensor, "batch query_pos key_pos"],
) -> Int[torch.Tensor, "firing 3"]:
    """(batch, query, key) of every score where the head fires (`FIRING_PATTERN`)."""
    return torch.nonzero(fires(pattern, scores))


def fires(
    pattern: Float[torch.Tensor, "*query key_pos"], scores: Float[torch.Tensor, "*query key_pos"]
) -> Bool[torch.Tensor, "*query key_pos"]:
    """Where a head fires: attention of at least `FIRING_PATTERN` with a non-negative score,
    on any key but the first position."""
    keys = torch.arange(pattern.shape[-1])
    return (pattern >= FIRING_PATTERN) & (scores >= 0) & (keys >= 1)


def residual_sources(
    model: Model, cache: ActivationCache, layer: int
) -> dict[str, Float[torch.Tensor, "batch pos d_in"]]:
    """The parts of layer ``layer``'s head input [x; 1] by source: the token and positional
    embeddings, each earlier head's output (``L{l}H{h}``), each earlier attention bias
    (``b_O{l}``), each earlier MLP's output (``MLP{l}``), and ``bias``, the constant 1. They add
    up to `head_input` exactly: under a normalization each part is centred (LayerNorm) and
    divided by the layer's own scale, which is what normalising the sum does."""
    parts = {"embed": cache["hook_embed"], "pos_embed": cache["hook_pos_embed"]}
    for lower in range(layer):
        z = cache[f"blocks.{lower}.attn.hook_z"]  # [batch pos head d_head]
        for h in range(model.cfg.n_heads):
            parts[f"L{lower}H{h}"] = z[:, :, h] @ model.W_O[lower, h]
        parts[f"b_O{lower}"] = model.b_O[lower].expand_as(parts["embed"])
        if not model.cfg.attn_only:
            parts[f"MLP{lower}"] = cache[f"blocks.{lower}.hook_mlp_out"]
    norm = model.cfg.normalization_type
    if norm is not None:
        scale = cache[f"blocks.{layer}.ln1.hook_scale"]  # [batch pos 1]
        centre = norm in ("LN", "LNPre")
        parts = {
            k: (v - v.mean(-1, keepdim=True) if centre else v) / scale for k, v in parts.items()
        }
    sources = {
        k: torch.cat([v.detach(), torch.zeros_like(v[..., :1])], -1) for k, v in parts.items()
    }
    bias = torch.zeros_like(next(iter(sources.values())))
    bias[..., -1] = 1.0
    return {**sources, "bias": bias}


def contributions(
    svd: QKSVD,
    sources: dict[str, Float[torch.Tensor, "batch pos d_in"]],
    x: Float[torch.Tensor, "batch pos d_in"],
    firing: tuple[int, int, int],
    components: Bool[torch.Tensor, " component"],
    side: str,
) -> dict[str, float]:
    """Each source's share of a score through the selected ``components``, on one side.

    Query side: sum_{k selected} sigma_k (s~_i . u_k)(v_k . x~_j), with s~ the source's part of
    the query input; the key side likewise with s~_j. Over the sources they add up to the
    selected components' part of the score.
    """
    b, i, j = firing
    S = svd.S * components
    if side == "query":
        other = x[b, j] @ svd.V  # [component]
        return {
            name: float(((part[b, i] @ svd.U) * S * other).sum()) for name, part in sources.items()
        }
    other = x[b, i] @ svd.U
    return {name: float((other * S * (part[b, j] @ svd.V)).sum()) for name, part in sources.items()}


def strongest(share: dict[str, float], fraction: float) -> list[str]:
    """The largest contributors, largest first, until their sum first exceeds ``fraction`` of
    the total (none when the total is not positive).

    >>> strongest({"a": 0.5, "b": 3.0, "c": 1.0, "d": -0.5}, 0.7)
    ['b']
    >>> strongest({"a": 0.5, "b": 1.0, "c": 1.0}, 0.7)
    ['b', 'c']
    """
    total = sum(share.values())
    kept, running = [], 0.0
    if total <= 0:
        return kept
    for name, value in sorted(share.items(), key=lambda item: -item[1]):
        if running > fraction * total or value <= 0:
            break
        kept.append(name)
        running += value
    return kept
