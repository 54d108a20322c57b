"""Many one-layer models at once: an exact re-expression of `HookedTransformer` on bags.

Training spends its time on tiny tensors, where the cost is per operation, not per number.
This module runs a whole stack of same-shaped models (parameters with a leading ``model`` axis)
in one set of operations, and computes attention only for the scored query positions. It
covers exactly the models that bag compression covers (one attention layer, no positional
information, optional LayerNorm) and is tested against the HookedTransformer forward, model by
model.
"""

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from jaxtyping import Float, Int

from headcoop.compat import Model, attention_scale, load_parameters, parameters
from headcoop.engine import fused
from headcoop.engine.bags import bag_exact
from headcoop.engine.loss import batch_loss
from headcoop.errors import HeadcoopError
from headcoop.tasks.base import Batch

Params = dict[str, torch.Tensor]
"""Stacked trainable parameters under TransformerLens names, each with a leading model axis."""

_MATRICES = (
    "embed.W_E",
    "blocks.0.attn.W_Q",
    "blocks.0.attn.W_K",
    "blocks.0.attn.W_V",
    "blocks.0.attn.W_O",
    "blocks.0.attn.b_Q",
    "blocks.0.attn.b_K",
    "blocks.0.attn.b_V",
    "blocks.0.attn.b_O",
    "unembed.W_U",
    "unembed.b_U",
)
_NORMS = ("blocks.0.ln1.w", "blocks.0.ln1.b", "ln_final.w", "ln_final.b")


UNDERFLOW = 2.0**-40
"""A softmax denominator below this is too close to float32's underflow: its reciprocal's
gradient (1 / denominator^2) would overflow, and below 2^-126 precision is lost. `_head_outputs`
then shifts each read's scores on its own, for the models where this happens, which keeps
every denominator at 1 or more."""

MODEL_CHUNK = 32
"""Models evaluated together on a whole split (bounds memory: a chunk's pair counts over 7,000
examples take about 100 MB)."""


def stackable(model: Model) -> bool:
    """Whether the stacked engine covers ``model``: bag-exact, attention only, and normalized
    by LayerNorm (the final one too) or not at all."""
    cfg = model.cfg
    return (
        bag_exact(model)
        and cfg.attn_only
        and cfg.normalization_type in ("LN", None)
        and not cfg.final_rms
    )


@dataclass
class Stack:
    """Models stacked along a leading ``model`` axis, run as one: their parameters and the
    constants of their forward pass.

    Attributes:
        params: trainable parameters under TransformerLens names, each ``[model, ...]``, plus a
            ``dim_mask`` when the models differ in ``d_model`` (see `of`).
        eps: the LayerNorm epsilon.
        attn_scale: the attention scale (sqrt(d_head) by default).
    """

    params: Params
    eps: float
    attn_scale: float

    @classmethod
    def of(cls, models: Sequence[Model]) -> "Stack":
        """Copy the trainable parameters of ``models`` into stacked leaf tensors.

        Models may differ in ``n_heads`` and ``d_model``: smaller ones are padded with zeros to
        the largest shape. Padding is exact and stays exact in training: a zero head has zero
        values and a zero output matrix, a zero residual dimension is never read, so the
        padding gets exactly zero gradient and AdamW (zero moments, decay of zero) leaves it at
        zero. Only LayerNorm must know each model's width: its statistics use the ``dim_mask``
        entry [model d_model] (present, and not trainable, when widths differ).
        """
        if not models or not all(stackable(m) for m in models):
            raise HeadcoopError("stacking needs one-layer attention-only models without positions")
        names, trainable = _param_names(models[0])
        reference = _shared_config(models[0])
        if any(_param_names(m) != (names, trainable) or _shared_config(m) != reference
               for m in models):  # fmt: skip
            raise HeadcoopError("stacked models may differ only in n_heads and d_model")
        states = [{k: v.detach() for k, v in parameters(m).items()} for m in models]
        params = {
            n: _padded_stack([s[n] for s in states]).requires_grad_(n in trainable) for n in names
        }
        widths = torch.tensor([m.cfg.d_model for m in models])
        if (widths != widths.max()).any() and "ln_final.w" in params:
            mask = (torch.arange(int(widths.max())) < widths[:, None]).float()
            params["dim_mask"] = mask.to(params["embed.W_E"].device)
        return cls(params, models[0].cfg.eps, attention_scale(models[0]))

    @classmethod
    @torch.no_grad()
    def random(cls, template: Model, n_models: int, generator: torch.Generator) -> "Stack":
        """``n_models`` freshly initialised models shaped like ``template``.

        Draws what TransformerLens's GPT-2 initialisation draws: every ``W_`` matrix from
        N(0, initializer_range), everything else as initialised (zero biases, unit LayerNorm).
        """
        std = template.cfg.initializer_range
        params = {}
        for name, value in Stack.of([template]).params.items():
            shape = (n_models, *value.shape[1:])
            if value.requires_grad and name.split(".")[-1].startswith("W_"):
                params[name] = (torch.randn(shape, generator=generator) * std).to(value.device)
            else:
                params[name] = value.detach().expand(shape).clone()
        return cls(params, template.cfg.eps, attention_scale(template))

    def __len__(self) -> int:
        return self.params["embed.W_E"].shape[0]

    @property
    def device(self) -> torch.device:
        return self.params["embed.W_E"].device

    def trainable(self) -> Params:
        """The entries of ``params`` that training updates (all but the padding mask)."""
        return {n: p for n, p in self.params.items() if p.requires_grad}

    def chunks(self, size: int = MODEL_CHUNK) -> Iterator["Stack"]:
        """Consecutive stacks of at most ``size`` models (views, not copies)."""
        for start in range(0, len(self), size):
            chunk = {k: v[start : start + size] for k, v in self.params.items()}
            yield Stack(chunk, self.eps, self.attn_scale)

    def states(self, models: Sequence[Model]) -> list[Params]:
        """The parameters of ``models`` (the models `of` read), as `parameters` gives them, with
        the stack's values: views of the stack with any padding cut away. (The entries the
        stack leaves out, such as the frozen positional embedding, are the models' own.)"""
        states = []
        for i, model in enumerate(models):
            own = parameters(model)
            states.append(
                {
                    n: self.params[n][i][tuple(map(slice, v.shape))] if n in self.params else v
                    for n, v in own.items()
                }
            )
        return states

    @torch.no_grad()
    def write_back(self, models: Sequence[Model]) -> None:
        """Write the stacked parameters into ``models`` (the models `of` read)."""
        for model, state in zip(models, self.states(models), strict=True):
            load_parameters(model, state)

    def logits(
        self,
        bags: "Batch | PairCounts",
        dropout: float = 0.0,
        generator: torch.Generator | None = None,
    ) -> Float[torch.Tensor, "model batch read d_vocab"]:
        """Every model's logits at the scored positions of ``bags`` (which may come as their
        `PairCounts`, computed once for a split that is read many times).

        Matches `headcoop.engine.bags.read_logits` on each model (to float32 rounding). With
        ``dropout`` > 0, the attention output at the scored positions is dropped as in training.
        (A view of [model d_vocab read] logits: `headcoop.engine.bags.batch_loss` reads them
        without a copy.)
        """
        pairs = self._pairs(bags)
        return self._logits(pairs, self._dropout_mask(pairs, dropout, generator))

    def loss(
        self,
        bags: "Batch | PairCounts",
        targets: Int[torch.Tensor, "batch read"],
        dropout: float = 0.0,
        generator: torch.Generator | None = None,
    ) -> Float[torch.Tensor, ""]:
        """The training loss: ``batch_loss(self.logits(bags, dropout, generator), targets)``,
        the mean over models of each model's mean negative log-likelihood, under the same
        dropout masks.

        A float32 stack on the CPU computes it, with its gradient, in the compiled kernel of
        `headcoop.engine.fused` (the same quantities to float32 rounding, several times
        faster), models whose softmax denominators underflow (`UNDERFLOW`) included.
        """
        pairs = self._pairs(bags)
        mask = self._dropout_mask(pairs, dropout, generator)
        if self.device.type == "cpu" and self.params["embed.W_E"].dtype == torch.float32:
            losses, _ = fused.stack_loss(
                self.params,
                pairs.counts.flatten(0, 1),
                pairs.read_tokens.flatten(),
                pairs.queries,
                targets.flatten(),
                mask,
                self.eps,
                self.attn_scale,
                UNDERFLOW,
            )
            return losses.mean()
        return batch_loss(self._logits(pairs, mask), targets)

    def _logits(
        self, pairs: "PairCounts", mask: Float[torch.Tensor, "model d_model batch_read"] | None
    ) -> Float[torch.Tensor, "model batch read d_vocab"]:
        """`logits`, with the dropout multiplier ``mask`` (None: no dropout)."""
        params = self.params
        n_models, n_reads = len(self), pairs.read_tokens.numel()
        z = _head_outputs(params, pairs, self.eps, self.attn_scale)  # [model head d_head read]
        attn_out = torch.baddbmm(
            params["blocks.0.attn.b_O"][:, :, None],
            params["blocks.0.attn.W_O"].flatten(1, 2).transpose(1, 2),
            z.view(n_models, -1, n_reads),
        )  # [model d_model read], a read being a scored position of an example
        # Each read's token embedding, as a product with the reads' one-hot tokens (a gather
        # along the last axis, and its scatter backward, cost several times more).
        one_hot = F.one_hot(pairs.read_tokens.flatten(), params["embed.W_E"].shape[1])
        embedded = params["embed.W_E"].mT @ one_hot.T.to(attn_out.dtype)  # [model d_model read]
        resid = embedded + attn_out if mask is None else torch.addcmul(embedded, attn_out, mask)
        final = _layernorm(resid.transpose(1, 2), params, "ln_final", self.eps)
        logits = torch.baddbmm(
            params["unembed.b_U"][:, :, None], params["unembed.W_U"].transpose(1, 2), final.mT
        )  # [model d_vocab read]
        return logits.transpose(1, 2).unflatten(1, pairs.read_tokens.shape)

    def _dropout_mask(
        self, pairs: "PairCounts", dropout: float, generator: torch.Generator | None
    ) -> Float[torch.Tensor, "model d_model batch_read"] | None:
        """The attention output's dropout multiplier at every read, or None when ``dropout``
        is 0 (so that both paths draw the same numbers from ``generator``)."""
        if dropout == 0:
            return None
        d_model = self.params["embed.W_E"].shape[2]
        shape = torch.Size((len(self), d_model, pairs.read_tokens.numel()))
        return dropout_mask(shape, dropout, generator).to(self.device)

    def head_outputs(
        self, bags: "Batch | PairCounts"
    ) -> Float[torch.Tensor, "model batch read head_index d_head"]:
        """Each head's output O_i (``hook_z``) at the scored positions."""
        pairs = self._pairs(bags)
        z = _head_outputs(self.params, pairs, self.eps, self.attn_scale)
        return z.permute(0, 3, 1, 2).unflatten(1, pairs.read_tokens.shape)

    def _pairs(self, bags: "Batch | PairCounts") -> "PairCounts":
        if isinstance(bags, Batch):
            bags = PairCounts.of(bags, self.params["embed.W_E"].shape[1])
        return bags.to(self.device)


@dataclass(frozen=True)
class PairCounts:
    """Bags as the stacked engine reads them: for each scored position, how often it sees
    each (query token, key token) pair, and its own token.

    Only the tokens that occur at scored positions (``queries``) are counted as query tokens:
    the others are never read. Computed once per split (`of`), so that a training step only
    selects its rows (``pairs[rows]``).
    """

    counts: Float[torch.Tensor, "example read pair"]
    """pair = query index * d_vocab + key token, the query index into ``queries``."""
    read_tokens: Int[torch.Tensor, "example read"]
    queries: Int[torch.Tensor, " query"]

    @classmethod
    def of(cls, bags: Batch, d_vocab: int) -> "PairCounts":
        if not bags.is_bag:
            raise HeadcoopError("the stacked engine runs on bags only")
        bags.check(d_vocab)  # the compiled kernel trusts what it reads
        read_tokens = bags.tokens.gather(1, bags.read_pos)
        queries = read_tokens.unique()
        query_index = torch.searchsorted(queries, read_tokens)
        counts = _pair_counts(bags, query_index, len(queries), d_vocab)
        return cls(counts, read_tokens, queries)

    def __len__(self) -> int:
        return len(self.counts)

    def __getitem__(self, rows: Int[torch.Tensor, " row"]) -> "PairCounts":
        """The examples ``rows``."""
        return PairCounts(self.counts[rows], self.read_tokens[rows], self.queries)

    def key_counts(self, read: int) -> Float[torch.Tensor, "example d_vocab"]:
        """How many tokens of each type scored position ``read`` sees (itself included): its
        pair counts summed over the query token (its own, the only one present)."""
        return self.counts[:, read].unflatten(-1, (len(self.queries), -1)).sum(-2)

    def to(self, device: torch.device | str) -> "PairCounts":
        return PairCounts(
            self.counts.to(device), self.read_tokens.to(device), self.queries.to(device)
        )


def drop_out(x: torch.Tensor, rate: float, generator: torch.Generator | None) -> torch.Tensor:
    """Inverted dropout with masks drawn from ``generator`` (so that runs are reproducible)."""
    return x * dropout_mask(x.shape, rate, generator).to(x.device)


def dropout_mask(
    shape: torch.Size, rate: float, generator: torch.Generator | None
) -> Float[torch.Tensor, "..."]:
    """Inverted dropout's multiplier: 0 with probability ``rate``, else 1 / (1 - ``rate``)."""
    return torch.rand(shape, generator=generator).ge_(rate).mul_(1 / (1 - rate))


def _head_outputs(
    params: Params, pairs: PairCounts, eps: float, attn_scale: float
) -> Float[torch.Tensor, "model head_index d_head read"]:
    """Each head's output at every scored position of ``pairs`` (a read: one scored position
    of one example, examples first), reads last.

    With no positions, a query, key or value depends on its token alone, and attention from a
    scored position over a bag is

        z = sum_v C_v exp(s_uv) v_v / sum_v C_v exp(s_uv)

    where u is the query token and C_v the count of key token v it sees. So each model's
    vocabulary-sized tables of exp(scores) and values are built once per step, and the reads'
    count vectors over (query token, key token) pairs are contracted with the tables of all
    models in one matmul: no per-example softmax, keys or values. Reads come last, so that
    what follows (the output projection, the unembedding, the loss and their gradients) runs
    on these [model ... read] tensors without reordering them.
    """
    d_vocab = params["embed.W_E"].shape[1]
    counts = pairs.counts.flatten(0, 1)  # [read pair]
    visible = counts.sum(0).unflatten(0, (len(pairs.queries), d_vocab)) > 0  # [query key]

    x = _layernorm(params["embed.W_E"], params, "blocks.0.ln1", eps)  # [model vocab d_model]
    q = torch.einsum("mud,mhde->mhue", x[:, pairs.queries], params["blocks.0.attn.W_Q"])
    k = torch.einsum("mvd,mhde->mhve", x, params["blocks.0.attn.W_K"])
    v = torch.einsum("mvd,mhde->mhev", x, params["blocks.0.attn.W_V"])
    q = q + params["blocks.0.attn.b_Q"][:, :, None]
    k = k + params["blocks.0.attn.b_K"][:, :, None]
    v = v + params["blocks.0.attn.b_V"][..., None]
    scores = q @ k.transpose(-1, -2) / attn_scale  # [model head query key]
    # Shift each query token's scores by their maximum over the key tokens it sees, as a
    # softmax does; the key tokens it never sees get weight 0 (their counts are 0 anyway).
    shift = scores.detach().masked_fill(~visible, float("-inf")).amax(-1, keepdim=True)
    weights = (scores - shift.nan_to_num(neginf=0.0)).masked_fill(~visible, float("-inf")).exp()
    # Each head's numerator (d_head rows) and denominator over (query, key) pairs, for all
    # models; the reads' counts contract them in one matmul each.
    numerators = weights[:, :, None] * v[:, :, :, None]  # [model head d_head query key]
    z, lowest = _CountedMean.apply(counts, numerators, weights)
    if _underflows(lowest):
        low = (lowest < UNDERFLOW).nonzero().squeeze(1)  # [model]
        exact = _head_outputs_read_by_read(counts, scores[low], v[low], len(pairs.queries))
        z = z.index_copy(0, low, exact)
    return z


class _CountedMean(torch.autograd.Function):
    """Each read's attention output from the pair tables: (numerators @ counts) /
    (denominators @ counts), per model and head, with its gradient written out (autograd's
    spends twice the passes over these, the largest tensors of a step). Also returns each
    model's smallest denominator, for the underflow check: a read whose denominator is below
    `UNDERFLOW` gets a finite stand-in (and finite gradients), which the caller replaces."""

    @staticmethod
    def forward(
        ctx: Any,
        counts: Float[torch.Tensor, "read pair"],
        numerators: Float[torch.Tensor, "model head d_head query key"],
        denominators: Float[torch.Tensor, "model head query key"],
    ) -> tuple[Float[torch.Tensor, "model head d_head read"], Float[torch.Tensor, " model"]]:
        by_read = counts.T
        numerator = numerators.flatten(3) @ by_read  # [model head d_head read]
        denominator = denominators.flatten(2) @ by_read  # [model head read]
        lowest = denominator.amin(-1).amin(-1)
        if _underflows(lowest):
            denominator = denominator.clamp_min(UNDERFLOW)
        z = numerator.div_(denominator[:, :, None])
        ctx.save_for_backward(counts, z, denominator)
        ctx.numerators_shape = numerators.shape
        ctx.mark_non_differentiable(lowest)
        ctx.set_materialize_grads(False)
        return z, lowest

    @staticmethod
    def backward(
        ctx: Any, grad: torch.Tensor | None, _: Any
    ) -> tuple[None, torch.Tensor | None, torch.Tensor | None]:
        if grad is None:
            return None, None, None
        counts, z, denominator = ctx.saved_tensors
        grad_numerator = grad / denominator[:, :, None]  # [model head d_head read]
        grad_denominator = _sum_d_head(grad_numerator * z).neg_()  # [model head read]
        shape = ctx.numerators_shape
        return (
            None,
            (grad_numerator @ counts).view(shape),
            (grad_denominator @ counts).view(shape[:2] + shape[3:]),
        )


def _underflows(lowest: Float[torch.Tensor, " model"]) -> bool:
    """Whether some model's smallest softmax denominator is below `UNDERFLOW`. (A meta tensor
    holds no values to check: shapes and devices are all it can test.)"""
    return not lowest.is_meta and bool(lowest.amin() < UNDERFLOW)


def _sum_d_head(
    x: Float[torch.Tensor, "model head d_head read"],
) -> Float[torch.Tensor, "model head read"]:
    """``x.sum(2)``, added slice by slice: torch's reduction over a short d_head (1-4) costs
    two to three times as much."""
    if x.shape[2] > 4:
        return x.sum(2)
    total = x[:, :, 0]  # (a view: a d_head of 1 needs no pass at all)
    for i in range(1, x.shape[2]):
        total = total + x[:, :, i]
    return total


def _head_outputs_read_by_read(
    counts: Float[torch.Tensor, "read pair"],
    scores: Float[torch.Tensor, "model head query key"],
    v: Float[torch.Tensor, "model head d_head key"],
    n_queries: int,
) -> Float[torch.Tensor, "model head_index d_head read"]:
    """`_head_outputs` with each read's softmax shifted by its own largest visible score, as
    the full forward does: for scores so spread that one shift per query token underflows
    some read's every weight. It costs a [model head read key] tensor, so it runs only then."""
    per_query = counts.unflatten(-1, (n_queries, -1))  # [read query key], one query row used
    query = per_query.sum(-1).argmax(-1)  # [read]
    key_counts = per_query.sum(1)  # [read key]
    visible = key_counts > 0
    read_scores = scores[:, :, query]  # [model head read key]
    shift = read_scores.detach().masked_fill(~visible, float("-inf")).amax(-1, keepdim=True)
    weights = (read_scores - shift).masked_fill(~visible, float("-inf")).exp() * key_counts
    numerator = torch.einsum("mhnv,mhev->mhen", weights, v)
    return numerator / weights.sum(-1)[:, :, None]


def _pair_counts(
    bags: Batch, query_index: Int[torch.Tensor, "batch read"], n_queries: int, d_vocab: int
) -> Float[torch.Tensor, "batch read pair"]:
    """For each scored position, how often it sees each (query, key token) pair: the query is
    its own token (by its index among the query tokens), the keys are the bag's positions up
    to it (with multiplicity)."""
    tokens, multiplicity, read_pos = bags.tokens, bags.multiplicity, bags.read_pos
    positions = torch.arange(tokens.shape[1], device=tokens.device)
    visible = positions <= read_pos[..., None]  # [batch read pos]
    pair = query_index[..., None] * d_vocab + tokens[:, None, :]  # [batch read pos]
    weight = multiplicity[:, None, :] * visible
    counts = multiplicity.new_zeros(*read_pos.shape, n_queries * d_vocab)
    return counts.scatter_add_(-1, pair, weight)


def _layernorm(x: torch.Tensor, params: Params, name: str, eps: float) -> torch.Tensor:
    """TransformerLens LayerNorm with per-model weights (identity when the model has none),
    over each model's own width when the stack is padded."""
    if f"{name}.w" not in params:
        return x
    shape = (x.shape[0],) + (1,) * (x.dim() - 2) + (x.shape[-1],)
    if "dim_mask" in params:
        mask = params["dim_mask"].reshape(shape)
        width = mask.sum(-1, keepdim=True)
        x = (x - (x * mask).sum(-1, keepdim=True) / width) * mask
        x = x / (x.pow(2).sum(-1, keepdim=True) / width + eps).sqrt()
    else:  # the same normalisation, fused
        x = F.layer_norm(x, x.shape[-1:], eps=eps)
    return torch.addcmul(params[f"{name}.b"].reshape(shape), x, params[f"{name}.w"].reshape(shape))


def _padded_stack(tensors: list[torch.Tensor]) -> torch.Tensor:
    """Stack tensors of equal rank, zero-padding each axis to the largest size."""
    shape = [max(sizes) for sizes in zip(*(t.shape for t in tensors), strict=True)]
    out = tensors[0].new_zeros(len(tensors), *shape)
    for i, t in enumerate(tensors):
        out[i][tuple(map(slice, t.shape))] = t
    return out


def _shared_config(model: Model) -> dict:
    """The config entries that stacked models must share (all but the padded sizes)."""
    differ = {"n_heads", "d_model", "d_mlp", "initializer_range", "n_params"}
    return {k: v for k, v in model.cfg.to_dict().items() if k not in differ}


def _param_names(model: Model) -> tuple[tuple[str, ...], frozenset[str]]:
    """The parameters a stack holds, and those of them that train (transformer-lens 4's native
    models have no unembedding bias: their ``unembed.b_U`` is a constant zero)."""
    named = parameters(model)
    names = tuple(n for n in _MATRICES + _NORMS if n in named)
    return names, frozenset(n for n in names if named[n].requires_grad)
