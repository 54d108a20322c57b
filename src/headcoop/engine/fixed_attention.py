"""Pattern interventions: every head's attention at a scored position set to fixed weights.

A head's attention row at scored position ``read`` is replaced by per-token weights: each key
position gets ``weight[token] * multiplicity``, normalised (multiplicity 1 on full sequences,
the count on bags, so both give the same head outputs). `fixed_attention_outputs` gives every
head's output under many such settings at once, choosing the engine as `headcoop.engine.run`
does: on bags, from each token's value vector alone; on full sequences, a hooked pass per
setting. The two agree to float rounding (tested).
"""

from collections.abc import Callable

import torch
from jaxtyping import Float, Int
from transformer_lens.hook_points import HookPoint

from headcoop.compat import Model
from headcoop.device import device_of
from headcoop.engine.bags import PATTERN_HOOK
from headcoop.engine.cache import collect
from headcoop.engine.run import choose_engine
from headcoop.engine.stack import PairCounts
from headcoop.tasks.base import Batch, Task

V_HOOK = "blocks.0.attn.hook_v"


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


def fixed_attention_outputs(
    model: Model,
    task: Task,
    examples: Int[torch.Tensor, "example ..."],
    token_weights: Float[torch.Tensor, "setting d_vocab"],
    mode: str = "auto",
) -> Float[torch.Tensor, "setting example head_index d_head"]:
    """Every head's output at the task's decision under each setting of ``token_weights``."""
    if choose_engine([model], task, mode) != "full":
        return _outputs_from_values(model, task, examples, token_weights)
    settings = []
    for weights in token_weights:

        def intervene(batch: Batch, weights: torch.Tensor = weights) -> list:
            return [fixed_attention_hook(batch, task.decision, weights)]

        cache = collect(model, task, examples, "full", intervention=intervene)
        settings.append(cache.z[:, task.decision])
    return torch.stack(settings)


@torch.no_grad()
def _outputs_from_values(
    model: Model,
    task: Task,
    examples: Int[torch.Tensor, "example ..."],
    token_weights: Float[torch.Tensor, "setting d_vocab"],
) -> Float[torch.Tensor, "setting example head_index d_head"]:
    """`fixed_attention_outputs` of a bag-exact model: with no positions a key's value depends
    on its token alone, so the output is sum_v C_v w_v value_v / sum_v C_v w_v over the key
    tokens v the position sees C_v times. A row whose visible tokens all have weight 0 outputs
    zeros, as under the hook.
    """
    device = device_of(model)
    pairs = PairCounts.of(task.bags(examples).to(device), len(task.vocab))
    counts = pairs.key_counts(task.decision)  # [example d_vocab]
    _, cache = model.run_with_cache(
        torch.arange(len(task.vocab), device=device)[:, None], names_filter=V_HOOK
    )
    values = cache[V_HOOK][:, 0]  # [d_vocab head_index d_head]: each token alone
    weighted = counts[None] * token_weights.to(device)[:, None]  # [setting example d_vocab]
    total = weighted.sum(-1)[..., None, None]
    z = torch.einsum("sxv,vhe->sxhe", weighted, values)
    return torch.where(total > 0, z / total.clamp(min=1e-30), 0.0)
