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

from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch
from jaxtyping import Float, Int
from transformer_lens.hook_points import HookPoint

from headcoop.compat import Model
from headcoop.device import device_of
from headcoop.errors import HeadcoopError
from headcoop.tasks.base import Batch, Task, read_names

Hook = tuple[str | Callable[[str], bool], Callable]
PATTERN_HOOK = "blocks.0.attn.hook_pattern"
# Full sequences are batched so that one attention tensor [batch, head, pos, pos] stays below
# this many floats (about 256 MB).
FULL_ATTENTION_BUDGET = 64 * 2**20


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


def batch_loss(
    logits: Float[torch.Tensor, "*model batch read d_vocab"],
    targets: Int[torch.Tensor, "batch read"],
) -> torch.Tensor:
    """Mean negative log-likelihood of the scored tokens (and over models, when ``logits``
    have a leading model axis: every model is scored on the same targets).

    Its gradient is written out (the softmax minus the one-hot target), which costs a third of
    what autograd spends on the small vocabularies of toy tasks.
    """
    return _MeanNLL.apply(logits, targets)


class _MeanNLL(torch.autograd.Function):
    """`batch_loss` with its gradient."""

    @staticmethod
    def forward(ctx: Any, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        nll, softmax, target = _nll(logits, targets)
        ctx.save_for_backward(softmax, target)
        ctx.shape = logits.shape
        return nll.mean()

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        softmax, target = ctx.saved_tensors
        minus_one = softmax.new_full(target.shape, -1.0)
        dlogits = softmax.scatter_add_(1, target, minus_one) * (grad / target.numel())
        return dlogits.transpose(1, 2).reshape(ctx.shape), None


def _nll(
    logits: Float[torch.Tensor, "*model batch read d_vocab"],
    targets: Int[torch.Tensor, "batch read"],
) -> tuple[
    Float[torch.Tensor, "model 1 row"],
    Float[torch.Tensor, "model d_vocab row"],
    Int[torch.Tensor, "model 1 row"],
]:
    """The negative log-likelihood of each scored token, each model's rows flattened, with the
    softmax and the target indices its gradient needs.

    Laid out [model d_vocab row] (one copy): the reductions over a short vocabulary then run
    along contiguous rows, several times faster than over a few adjacent numbers each.
    """
    flat = logits.reshape(-1, targets.numel(), logits.shape[-1]).transpose(1, 2).contiguous()
    target = targets.reshape(1, 1, -1).expand(len(flat), 1, -1)
    shift = flat.amax(1, keepdim=True)
    exp = (flat - shift).exp_()
    total = exp.sum(1, keepdim=True)
    nll = total.log() + shift - flat.gather(1, target)
    return nll, exp.div_(total), target


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
    model: Model, task: Task, examples: torch.Tensor, mode: str, batch_size: int
) -> Iterator[tuple[Int[torch.Tensor, " batch"], Batch]]:
    """Batches for a pass over ``examples``: bags in order where exact, else full sequences
    shortest first (so that each batch pads little), with the indices of each batch."""
    bags = use_bags(model, task, mode)
    if not bags:
        check_lengths(model, task, examples)
    order = torch.arange(len(examples)) if bags else task.lengths(examples).argsort()
    return iter_batches(task, examples, order, batch_size, bags, model.cfg.n_heads)


@torch.no_grad()
def predict(
    model: Model,
    task: Task,
    examples: torch.Tensor,
    mode: str = "auto",
    batch_size: int = 1024,
) -> Float[torch.Tensor, "example read d_vocab"]:
    """Logits at the scored positions of every example, in the order given (on the CPU)."""
    out = torch.empty(len(examples), len(task.readouts), model.cfg.d_vocab)
    for idx, batch in inference_batches(model, task, examples, mode, batch_size):
        out[idx] = read_logits(model, batch).cpu()
    return out


def evaluate(
    model: Model, task: Task, examples: torch.Tensor, mode: str = "auto"
) -> dict[str, float]:
    """Accuracy of each scored prediction (argmax over the vocabulary) and the mean loss.

    >>> from headcoop.config import ModelConfig
    >>> from headcoop.model import build_model
    >>> from headcoop.tasks import Count01
    >>> task = Count01()
    >>> model = build_model(ModelConfig(), d_vocab=len(task.vocab), seed=0)
    >>> sorted(evaluate(model, task, task.split("test")[:8]))
    ['answer', 'eos', 'loss']
    """
    return metrics(task, predict(model, task, examples, mode), task.targets(examples))


def metrics(
    task: Task,
    logits: Float[torch.Tensor, "example read d_vocab"],
    targets: Int[torch.Tensor, "example read"],
) -> dict[str, float]:
    """Accuracy of each scored prediction, by the task's read names, and the mean loss."""
    return metrics_each(task, logits[None], targets)[0]


@torch.no_grad()
def metrics_each(
    task: Task,
    logits: Float[torch.Tensor, "model example read d_vocab"],
    targets: Int[torch.Tensor, "example read"],
) -> list[dict[str, float]]:
    """`metrics` of each model of a stack, computed for all of them at once."""
    accuracy = (logits.argmax(-1) == targets).float().mean(1)  # [model read]
    loss = _nll(logits, targets)[0].flatten(1).mean(1)  # [model]
    names = read_names(task)
    return [
        {**dict(zip(names, acc, strict=True)), "loss": value}
        for acc, value in zip(accuracy.tolist(), loss.tolist(), strict=True)
    ]
