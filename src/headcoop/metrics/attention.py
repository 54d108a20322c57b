"""Attention at the decision position: per-token weight ratios and pattern interventions.

With no positional information, the attention score between two tokens depends only on the
tokens, so the weight that a query gives one ``a`` token over one ``b`` token,
``exp(s_a - s_b)``, is the same in every input (the paper's w01 and w02 at '=').

Interventions replace a head's attention row at a scored position by fixed per-token weights:
each key position gets ``weight[token] * multiplicity``, normalised. On full sequences the
multiplicity is 1; on bags it is the count, so both give the same head outputs.
"""

from collections.abc import Callable

import torch
from jaxtyping import Float
from transformer_lens.hook_points import HookPoint

from headcoop.compat import Model, score_hooks
from headcoop.compat import attention_scores as scores_of
from headcoop.device import device_of
from headcoop.engine.bags import PATTERN_HOOK
from headcoop.tasks.base import Batch


@torch.no_grad()
def attention_scores(
    model: Model, query: int, keys: list[int]
) -> Float[torch.Tensor, "head_index key"]:
    """Pre-softmax score of each head from a ``query`` token to each of the ``keys`` tokens,
    read off the model's own forward (position-free models only)."""
    tokens = torch.tensor([[*keys, query]], device=device_of(model))
    _, cache = model.run_with_cache(tokens, names_filter=list(score_hooks(0)))
    return scores_of(model, cache, 0)[0, :, -1, :-1]


def weight_ratio(
    model: Model, query: int, numerator: int, denominator: int
) -> Float[torch.Tensor, " head_index"]:
    """How much more each head at ``query`` attends to one ``numerator`` token than to one
    ``denominator`` token (w01 for query '=', numerator '0', denominator '1').

    >>> from headcoop import ModelConfig, build_model
    >>> model = build_model(ModelConfig(), d_vocab=8, seed=0)
    >>> weight_ratio(model, query=4, numerator=1, denominator=1).tolist() == [1.0] * 16
    True
    """
    scores = attention_scores(model, query, [numerator, denominator])
    return (scores[:, 0] - scores[:, 1]).exp()


def fixed_attention_hook(
    batch: Batch, read: int, token_weights: Float[torch.Tensor, " d_vocab"]
) -> tuple[str, Callable]:
    """A hook that sets every head's attention at scored position ``read`` to
    ``token_weights`` (relative weight of one token of each type; 0 removes a type).

    A row whose tokens all have weight 0 becomes all zeros (the head outputs nothing there).
    """
    device = batch.tokens.device
    rows = torch.arange(len(batch), device=device)
    query = batch.read_pos[:, read]  # [batch]
    mult = batch.multiplicity if batch.is_bag else torch.ones(batch.tokens.shape, device=device)
    keys = torch.arange(batch.tokens.shape[1], device=device)
    visible = keys[None, :] <= query[:, None]  # causal [batch key_pos]
    raw = token_weights.to(device)[batch.tokens] * mult * visible  # [batch key_pos]
    total = raw.sum(-1, keepdim=True)
    row = torch.where(total > 0, raw / total.clamp(min=1e-30), 0.0)

    def set_row(
        pattern: Float[torch.Tensor, "batch head_index query_pos key_pos"], hook: HookPoint
    ) -> Float[torch.Tensor, "batch head_index query_pos key_pos"]:
        pattern = pattern.clone()
        pattern[rows, :, query] = row[:, None, :]
        return pattern

    return PATTERN_HOOK, set_row
