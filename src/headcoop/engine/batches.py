"""One model's batched passes over a task's examples: bags in order where they are exact, full
sequences shortest first otherwise, each batch run through the model's own forward with hooks.
"""

from collections.abc import Callable, Iterator, Sequence

import torch
from jaxtyping import Float, Int

from headcoop.compat import Model
from headcoop.device import device_of
from headcoop.engine.bags import PATTERN_HOOK, bag_exact, multiplicity_hook, use_bags
from headcoop.errors import HeadcoopError
from headcoop.tasks.base import Batch, Task

Hook = tuple[str | Callable[[str], bool], Callable]
# Full sequences are batched so that one attention tensor [batch, head, pos, pos] stays below
# this many floats (about 256 MB).
FULL_ATTENTION_BUDGET = 64 * 2**20


def read_logits(
    model: Model, batch: Batch, fwd_hooks: Sequence[Hook] = ()
) -> Float[torch.Tensor, "batch read d_vocab"]:
    """Logits at the batch's scored positions, optionally with extra forward hooks, on the
    model's device (the batch moves there; hooks that build tensors use ``batch``'s own).

    A bag batch adds the multiplicity hook before ``fwd_hooks``, so their hooks on the
    attention pattern see the compressed pattern: the total attention mass on each token type.
    """
    hooks = list(fwd_hooks)
    batch = batch.to(device_of(model))
    if batch.is_bag:
        if not bag_exact(model):
            raise HeadcoopError(
                "bag compression is not exact for this model (it needs one attention layer and "
                "no positional embedding): run full sequences instead"
            )
        hooks.insert(0, (PATTERN_HOOK, multiplicity_hook(batch.multiplicity)))
    with model.hooks(fwd_hooks=hooks):
        logits = model(batch.tokens)  # [batch pos d_vocab]
    index = batch.read_pos[:, :, None].expand(-1, -1, logits.shape[-1])
    return logits.gather(1, index)


def iter_batches(
    task: Task,
    examples: torch.Tensor,
    order: Int[torch.Tensor, " example"],
    batch_size: int,
    bags: bool,
    n_heads: int = 1,
) -> Iterator[tuple[Int[torch.Tensor, " batch"], Batch]]:
    """Batches of ``examples`` taken in ``order``, with the indices of each.

    Bags are built once and sliced. Full sequences are built batch by batch, and a batch is cut
    short where its attention tensor would exceed `FULL_ATTENTION_BUDGET`.
    """
    if bags:
        all_bags = task.bags(examples)
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            yield idx, all_bags[idx]
        return
    lengths = task.lengths(examples)[order].tolist()
    start = 0
    while start < len(order):
        stop, longest = start, 0
        while stop < len(order) and stop - start < batch_size:
            longest = max(longest, lengths[stop])
            if stop > start and (stop - start + 1) * n_heads * longest**2 > FULL_ATTENTION_BUDGET:
                break
            stop += 1
        idx = order[start:stop]
        yield idx, task.sequences(examples[idx])
        start = stop


def check_lengths(model: Model, task: Task, examples: torch.Tensor) -> None:
    """Refuse full sequences longer than the model's context, naming the first such example."""
    lengths = task.lengths(examples)
    too_long = torch.nonzero(lengths > model.cfg.n_ctx).flatten()
    if len(too_long):
        k = int(too_long[0])
        raise HeadcoopError(
            f"example {k} is {int(lengths[k])} tokens long, beyond the model's n_ctx of "
            f"{model.cfg.n_ctx}: run it as a bag (mode 'auto') or build a longer context"
        )


def inference_batches(
    model: Model, task: Task, examples: torch.Tensor, mode: str, batch_size: int, copies: int = 1
) -> Iterator[tuple[Int[torch.Tensor, " batch"], Batch]]:
    """Batches for a pass over ``examples``: bags in order where exact, else full sequences
    shortest first (so that each batch pads little), with the indices of each batch. Where
    each batch will run as ``copies`` copies side by side, full-sequence batches shrink to
    keep the attention budget."""
    bags = use_bags(model, task, mode)
    if not bags:
        check_lengths(model, task, examples)
    order = torch.arange(len(examples)) if bags else task.lengths(examples).argsort()
    return iter_batches(task, examples, order, batch_size, bags, model.cfg.n_heads * copies)
