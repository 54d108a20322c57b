"""Attention at the decision position: per-token weight ratios.

With no positional information, the attention score between two tokens depends only on the
tokens, so the weight that a query gives one ``a`` token over one ``b`` token,
``exp(s_a - s_b)``, is the same in every input (the paper's w01 and w02 at '='). Pattern
interventions, which set these weights, are in `headcoop.engine.fixed_attention`.
"""

import torch
from jaxtyping import Float

from headcoop.compat import Model, score_hooks
from headcoop.compat import attention_scores as scores_of
from headcoop.device import device_of


@torch.no_grad()
def token_scores(
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
    scores = token_scores(model, query, [numerator, denominator])
    return (scores[:, 0] - scores[:, 1]).exp()
