"""Running a model on a task's batches, with bag compression wherever it is exact.

Bag compression: with no positional information and a single attention layer, a token's key,
value and query depend on the token alone, so attention from a query over its prefix only sees
how many times each token type occurs. Attending over one position per type, with that key's
softmax weight p_t multiplied by its count c_t and renormalised, gives the same output:

    sum_t c_t exp(s_t) v_t / sum_t c_t exp(s_t) = sum_t (p_t c_t / sum_u p_u c_u) v_t

The model is run unchanged; one hook on ``blocks.0.attn.hook_pattern`` reweights the pattern
(a count of 0 removes a type). The pattern, not the scores, because it is the hook that
transformer-lens 3 and 4 both let us edit (4.x's ``hook_attn_scores`` fires after the softmax).
Only the scored positions' outputs are meaningful.
"""

from collections.abc import Callable

import torch
from jaxtyping import Float
from transformer_lens.hook_points import HookPoint

from headcoop.compat import Model
from headcoop.errors import HeadcoopError
from headcoop.tasks.base import Task

PATTERN_HOOK = "blocks.0.attn.hook_pattern"


def bag_exact(model: Model) -> bool:
    """Whether bag compression reproduces ``model`` exactly at the scored positions.

    It does for causal models with one attention layer (an MLP after it is fine) and no
    positional information: standard positional embedding with W_pos all zero.
    """
    cfg = model.cfg
    return (
        cfg.n_layers == 1
        and cfg.attention_dir == "causal"
        and cfg.positional_embedding_type == "standard"
        and not bool(model.pos_embed.W_pos.any())
    )


def multiplicity_hook(
    multiplicity: Float[torch.Tensor, "batch pos"],
) -> Callable[[torch.Tensor, HookPoint], torch.Tensor]:
    """A hook on the attention pattern that makes each key position count ``multiplicity``
    times."""
    weight = multiplicity[:, None, None, :]  # [batch 1 1 key_pos]

    def reweight(
        pattern: Float[torch.Tensor, "batch head_index query_pos key_pos"], hook: HookPoint
    ) -> Float[torch.Tensor, "batch head_index query_pos key_pos"]:
        weighted = pattern * weight
        return weighted / weighted.sum(-1, keepdim=True)

    return reweight


def use_bags(model: Model, task: Task, mode: str = "auto") -> bool:
    """Resolve ``mode`` ('auto', 'bag' or 'full') to whether batches are bags."""
    if mode not in ("auto", "bag", "full"):
        raise HeadcoopError(f"mode must be 'auto', 'bag' or 'full', got {mode!r}")
    if mode == "full":
        return False
    exact = bag_exact(model) and task.supports_bags
    if mode == "bag" and not exact:
        raise HeadcoopError("bag compression is not exact for this model or task")
    return exact
