"""Attention at the decision position: per-token weight ratios.

With no positional information, the attention score between two tokens depends only on the
tokens, so the weight that a query gives one ``a`` token over one ``b`` token,
``exp(s_a - s_b)``, is the same in every input (the paper's w01 and w02 at '='):
`weight_ratio` reads it off a probe. With positions, or in a later layer, it varies from input
to input: `measured_ratio` takes its mean and spread over the test inputs. Pattern
interventions, which set these weights, are in `headcoop.engine.fixed_attention`.
"""

import torch
from jaxtyping import Float

from headcoop.compat import Model, score_hooks
from headcoop.compat import attention_scores as scores_of
from headcoop.device import device_of
from headcoop.engine.cache import HeadCache


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


def measured_ratio(
    cache: HeadCache, read: int, query: int, numerator: int, denominator: int
) -> tuple[Float[torch.Tensor, " head_index"], Float[torch.Tensor, " head_index"]]:
    """`weight_ratio` measured on inputs: at scored position ``read`` where it holds
    ``query``, each head's attention per ``numerator`` token over its attention per
    ``denominator`` token, on every example that has both; the mean and the standard deviation
    over examples (NaN where no example has both). For any depth and with positions, where
    the probe of `weight_ratio` does not apply; equal to it on one position-free layer."""
    counts = cache.counts[:, read]
    rows = (cache.read_tokens[:, read] == query) & (counts[:, numerator] > 0)
    rows &= counts[:, denominator] > 0
    mass = cache.mass[rows, read]  # [example head d_vocab]
    per_numerator = mass[..., numerator] / counts[rows, numerator, None]
    ratio = per_numerator / (mass[..., denominator] / counts[rows, denominator, None])
    if not len(ratio):
        nothing = ratio.new_full(ratio.shape[1:], float("nan"))
        return nothing, nothing
    return ratio.mean(0), ratio.std(0) if len(ratio) > 1 else torch.zeros_like(ratio[0])
