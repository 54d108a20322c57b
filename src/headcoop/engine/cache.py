"""One batched pass over a split that keeps what the head analyzers read.

Only the scored positions are kept ('=' and the answer in Count01), so memory stays small
whatever the sequence length: a full-sequence batch's [batch, head, pos, pos] pattern exists
only while its batch runs (and is bounded by `engine.FULL_ATTENTION_BUDGET`).
"""

from collections.abc import Callable
from dataclasses import dataclass

import torch
from jaxtyping import Float, Int
from tqdm.auto import tqdm
from transformer_lens.hook_points import HookPoint

from headcoop.compat import Model
from headcoop.device import device_of
from headcoop.engine.bags import PATTERN_HOOK
from headcoop.engine.batches import Hook, inference_batches, read_logits
from headcoop.errors import HeadcoopError
from headcoop.tasks.base import Batch, Task


@dataclass(frozen=True)
class HeadCache:
    """Activations of a one-layer model at the scored positions of each example.

    Attributes:
        z: each head's output O_i (``hook_z``).
        result: each head's contribution to the residual stream, O_i W_O[i].
        mass: each head's total attention on each token type (a row sums to 1).
        resid_pre: the residual stream entering the attention layer (the token's embedding).
        logits: the model's logits.
        targets: the correct next tokens.
    """

    z: Float[torch.Tensor, "example read head_index d_head"]
    result: Float[torch.Tensor, "example read head_index d_model"]
    mass: Float[torch.Tensor, "example read head_index d_vocab"]
    resid_pre: Float[torch.Tensor, "example read d_model"]
    logits: Float[torch.Tensor, "example read d_vocab"]
    targets: Int[torch.Tensor, "example read"]

    def __len__(self) -> int:
        return self.z.shape[0]


@torch.no_grad()
def collect(
    model: Model,
    task: Task,
    examples: torch.Tensor,
    mode: str = "auto",
    batch_size: int = 512,
    progress: bool = False,
    intervention: Callable[[Batch], list[Hook]] | None = None,
) -> HeadCache:
    """Run ``examples`` through ``model`` once, in batches, keeping a `HeadCache` (on the
    model's device, where the analyzers then compute).

    Bags are used where they are exact (``mode='auto'``), full sequences otherwise.
    ``intervention`` gives extra forward hooks for each batch (for example
    `headcoop.metrics.attention.fixed_attention_hook`); the cache records the intervened run.

    >>> from headcoop import Count01, ModelConfig, build_model
    >>> task = Count01()
    >>> model = build_model(ModelConfig(), len(task.vocab), seed=0)
    >>> collect(model, task, task.split("test")[:10]).z.shape
    torch.Size([10, 2, 16, 2])
    """
    if model.cfg.n_layers != 1:
        raise HeadcoopError("the head analyzers need a model with one attention layer")
    parts: dict[str, list[torch.Tensor]] = {"z": [], "mass": [], "resid_pre": [], "logits": []}
    index: list[torch.Tensor] = []
    device = device_of(model)
    batches = inference_batches(model, task, examples, mode, batch_size)
    for idx, batch in tqdm(batches, desc="cache", disable=not progress, unit="batch"):
        batch = batch.to(device)
        captured: dict[str, torch.Tensor] = {}
        hooks = [] if intervention is None else intervention(batch)
        hooks += _capture_hooks(batch, captured, model.cfg.d_vocab)
        parts["logits"].append(read_logits(model, batch, hooks))
        for name in ("z", "mass", "resid_pre"):
            parts[name].append(captured[name])
        index.append(idx)
    inverse = torch.cat(index).argsort()  # back to the order of ``examples``
    z, mass, resid_pre, logits = (torch.cat(parts[k])[inverse] for k in parts)
    result = torch.einsum("erhd,hdm->erhm", z, model.W_O[0])
    return HeadCache(z, result, mass, resid_pre, logits, task.targets(examples).to(device))


def _capture_hooks(batch: Batch, captured: dict[str, torch.Tensor], d_vocab: int) -> list[Hook]:
    """Hooks that store z, attention mass per token type and resid_pre at the read positions."""
    rows = torch.arange(len(batch), device=batch.tokens.device)[:, None]  # [batch 1]
    read = batch.read_pos  # [batch read]

    def take_z(z: Float[torch.Tensor, "batch pos head_index d_head"], hook: HookPoint) -> None:
        captured["z"] = z[rows, read]

    def take_mass(
        pattern: Float[torch.Tensor, "batch head_index query_pos key_pos"], hook: HookPoint
    ) -> None:
        at_read = pattern.transpose(1, 2)[rows, read]  # [batch read head key_pos]
        token = batch.tokens[:, None, None, :].expand_as(at_read)
        mass = at_read.new_zeros(*at_read.shape[:3], d_vocab)
        captured["mass"] = mass.scatter_add_(3, token, at_read)

    def take_resid(resid: Float[torch.Tensor, "batch pos d_model"], hook: HookPoint) -> None:
        captured["resid_pre"] = resid[rows, read]

    return [
        ("blocks.0.attn.hook_z", take_z),
        (PATTERN_HOOK, take_mass),
        ("blocks.0.hook_resid_pre", take_resid),
    ]
