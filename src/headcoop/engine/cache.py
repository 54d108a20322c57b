"""One batched pass over a split that keeps what the head analyzers read, for a model of any
depth.

Only the scored positions are kept ('=' and the answer in Count01), so memory stays small
whatever the sequence length: a full-sequence batch's [batch, head, pos, pos] pattern exists
only while its batch runs (and is bounded by `engine.FULL_ATTENTION_BUDGET`).
"""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from jaxtyping import Float, Int
from transformer_lens.hook_points import HookPoint

from headcoop.compat import Model
from headcoop.device import device_of
from headcoop.engine.batches import Hook, inference_batches, read_logits
from headcoop.memory import check_bytes
from headcoop.progress import progress_bar
from headcoop.tasks.base import Batch, Task


@dataclass(frozen=True)
class HeadCache:
    """Activations of a model of any depth at the scored positions of each example.

    Heads are numbered layer-major: head ``layer * n_heads + h`` is head h of that layer.

    Attributes:
        z: each head's output O_i (``hook_z``).
        result: each head's contribution to the residual stream, O_i W_O[i].
        mass: each head's total attention on each token type (a row sums to 1).
        rest: what the residual stream entering the final normalization holds besides the
            heads and the attention biases: the embeddings, plus every MLP's output.
        counts: how many of each token each scored position sees (itself included).
        read_tokens: the token at each scored position.
        z_other: each head's mean output over the positions before the last scored one that
            are not scored themselves (what mean ablation puts there; zero for bags of one
            layer, where no later layer reads them).
        logits: the model's logits.
        targets: the correct next tokens.
    """

    z: Float[torch.Tensor, "example read head_index d_head"]
    result: Float[torch.Tensor, "example read head_index d_model"]
    mass: Float[torch.Tensor, "example read head_index d_vocab"]
    rest: Float[torch.Tensor, "example read d_model"]
    counts: Float[torch.Tensor, "example read d_vocab"]
    read_tokens: Int[torch.Tensor, "example read"]
    z_other: Float[torch.Tensor, "head_index d_head"]
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
    `headcoop.engine.fixed_attention.fixed_attention_hook`); the cache records the intervened
    run.

    >>> from headcoop import Count01, ModelConfig, build_model
    >>> task = Count01()
    >>> model = build_model(ModelConfig(), len(task.vocab), seed=0)
    >>> collect(model, task, task.split("test")[:10]).z.shape
    torch.Size([10, 2, 16, 2])
    """
    check_bytes(cache_bytes(model, len(examples), len(task.readouts)), _what(task, examples))
    names = ("z", "mass", "rest", "counts", "read_tokens", "logits")
    parts: dict[str, list[torch.Tensor]] = {k: [] for k in names}
    index, other = [], []
    device = device_of(model)
    batches = inference_batches(model, task, examples, mode, batch_size)
    for idx, batch in progress_bar(batches, desc="cache", disable=not progress, unit="batch"):
        batch = batch.to(device)
        captured: dict[str, torch.Tensor] = {}
        hooks = [] if intervention is None else intervention(batch)
        hooks += _capture_hooks(batch, captured, model.cfg)
        parts["logits"].append(read_logits(model, batch, hooks))
        for name in ("z", "mass", "rest"):
            parts[name].append(_layer_major(captured, name, model.cfg.n_layers))
        parts["counts"].append(_visible_counts(batch, model.cfg.d_vocab))
        parts["read_tokens"].append(batch.tokens.gather(1, batch.read_pos))
        other.append(_layer_major(captured, "other", model.cfg.n_layers, 0))
        index.append(idx)
    inverse = torch.cat(index).argsort()  # back to the order of ``examples``
    z, mass, rest, counts, read_tokens, logits = (torch.cat(parts[k])[inverse] for k in parts)
    other_sum = torch.stack(other).sum(0)  # [head, d_head + 1]: sums, then the count
    z_other = other_sum[:, :-1] / other_sum[:, -1:].clamp(min=1)
    W_O = model.W_O.flatten(0, 1)  # [layer*head d_head d_model]
    result = torch.einsum("erhd,hdm->erhm", z, W_O)
    targets = task.targets(examples).to(device)
    return HeadCache(z, result, mass, rest, counts, read_tokens, z_other, logits, targets)


def cache_bytes(model: Model, n_examples: int, n_read: int) -> int:
    """The bytes of a `HeadCache` of ``n_examples`` (each field, and the copies its assembly
    makes) and of the decomposition built from it (its head-by-head Gram matrix): they grow
    with the split's size and the model's heads, widths and vocabulary."""
    cfg = model.cfg
    heads = cfg.n_layers * cfg.n_heads
    per_head = cfg.d_head + cfg.d_model + cfg.d_vocab + heads
    per_read = heads * per_head + cfg.d_model + 2 * cfg.d_vocab
    return 2 * 4 * n_examples * n_read * per_read


def _what(task: Task, examples: torch.Tensor) -> str:
    return f"the cache of {len(examples):,} examples of task {task.name!r} (its split size)"


def _layer_major(
    captured: dict[str, torch.Tensor], name: str, n_layers: int, dim: int = 2
) -> torch.Tensor:
    """The per-layer captures of ``name`` joined along the head axis, layer by layer."""
    if name == "rest":
        return sum(captured[k] for k in captured if k.startswith("rest."))
    return torch.cat([captured[f"{name}.{layer}"] for layer in range(n_layers)], dim)


def _capture_hooks(batch: Batch, captured: dict[str, torch.Tensor], cfg: Any) -> list[Hook]:
    """Hooks that store, for every layer, z and the attention mass per token type at the read
    positions and the sums of z elsewhere; and the embeddings and MLP outputs there."""
    rows = torch.arange(len(batch), device=batch.tokens.device)[:, None]  # [batch 1]
    read = batch.read_pos  # [batch read]
    weight = _other_positions(batch)  # [batch pos]
    hooks: list[Hook] = []
    for layer in range(cfg.n_layers):

        def take_z(z: Float[torch.Tensor, "batch pos head_index d_head"], hook: HookPoint,
                   layer: int = layer) -> None:  # fmt: skip
            captured[f"z.{layer}"] = z[rows, read]
            sums = torch.einsum("bp,bphd->hd", weight, z)
            count = weight.sum().expand(sums.shape[0], 1)
            captured[f"other.{layer}"] = torch.cat([sums, count], -1)

        def take_mass(pattern: Float[torch.Tensor, "batch head_index query_pos key_pos"],
                      hook: HookPoint, layer: int = layer) -> None:  # fmt: skip
            at_read = pattern.transpose(1, 2)[rows, read]  # [batch read head key_pos]
            token = batch.tokens[:, None, None, :].expand_as(at_read)
            mass = at_read.new_zeros(*at_read.shape[:3], cfg.d_vocab)
            captured[f"mass.{layer}"] = mass.scatter_add_(3, token, at_read)

        hooks += [
            (f"blocks.{layer}.attn.hook_z", take_z),
            (f"blocks.{layer}.attn.hook_pattern", take_mass),
        ]
        if not cfg.attn_only:
            hooks.append(
                (f"blocks.{layer}.hook_mlp_out", _store(captured, f"rest.mlp{layer}", rows, read))
            )
    return [*hooks, ("blocks.0.hook_resid_pre", _store(captured, "rest.embed", rows, read))]


def _store(captured: dict, name: str, rows: torch.Tensor, read: torch.Tensor) -> Callable:
    """A hook that stores its activation at the read positions as ``captured[name]``."""

    def store(x: Float[torch.Tensor, "batch pos d_model"], hook: HookPoint) -> None:
        captured[name] = x[rows, read]

    return store


def _visible_counts(batch: Batch, d_vocab: int) -> Float[torch.Tensor, "batch read d_vocab"]:
    """How many of each token each scored position sees (multiplicities, in bags)."""
    pos = torch.arange(batch.tokens.shape[1], device=batch.tokens.device)
    visible = (pos[None, None] <= batch.read_pos[..., None]).float()  # [batch read pos]
    if batch.multiplicity is not None:
        visible = visible * batch.multiplicity[:, None]
    one_hot = torch.nn.functional.one_hot(batch.tokens, d_vocab).float()
    return torch.einsum("brp,bpv->brv", visible, one_hot)


def _other_positions(batch: Batch) -> Float[torch.Tensor, "batch pos"]:
    """How much each position counts towards the mean elsewhere: the positions before the last
    scored one that are not scored (their multiplicity, in bags; zero in a bag of one layer's
    model is harmless: no later layer reads them)."""
    pos = torch.arange(batch.tokens.shape[1], device=batch.tokens.device)
    visible = pos[None] <= batch.read_pos.max(-1, keepdim=True).values
    scored = (pos[None, :, None] == batch.read_pos[:, None, :]).any(-1)
    weight = (visible & ~scored).float()
    return weight if batch.multiplicity is None else weight * batch.multiplicity
