"""How well models predict a task's scored tokens: the loss that training minimises (with its
gradient written out) and the accuracy of each readout.
"""

from typing import Any

import torch
from jaxtyping import Float, Int

from headcoop.tasks.base import Task, read_names


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


def accuracies(
    task: Task,
    logits: Float[torch.Tensor, "example read d_vocab"],
    targets: Int[torch.Tensor, "example read"],
) -> dict[str, float]:
    """Accuracy of each scored prediction, by the task's read names, and the mean loss."""
    return accuracies_each(task, logits[None], targets)[0]


@torch.no_grad()
def accuracies_each(
    task: Task,
    logits: Float[torch.Tensor, "model example read d_vocab"],
    targets: Int[torch.Tensor, "example read"],
) -> list[dict[str, float]]:
    """`accuracies` of each model of a stack, computed for all of them at once."""
    accuracy = (logits.argmax(-1) == targets).float().mean(1)  # [model read]
    loss = _nll(logits, targets)[0].flatten(1).mean(1)  # [model]
    names = read_names(task)
    return [
        {**dict(zip(names, acc, strict=True)), "loss": value}
        for acc, value in zip(accuracy.tolist(), loss.tolist(), strict=True)
    ]
