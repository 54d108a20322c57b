"""Many one-layer models at once: an exact re-expression of `HookedTransformer` on bags.

Training spends its time on tiny tensors, where the cost is per operation, not per number.
This module runs a whole stack of same-shaped models (parameters with a leading ``model`` axis)
in one set of operations, and computes attention only for the scored query positions. It
covers exactly the models that bag compression covers (one attention layer, no positional
information, optional LayerNorm) and is tested against the HookedTransformer forward, model by
model.
"""

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch
from jaxtyping import Float, Int

from headcoop.compat import Model, attention_scale, load_parameters, parameters
from headcoop.engine.bags import bag_exact
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


MODEL_CHUNK = 32
"""Models evaluated together on a whole split (bounds memory: a chunk's pair counts over 7,000
examples take about 100 MB)."""


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
        if not models or not all(bag_exact(m) and m.cfg.attn_only for m in models):
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

    @torch.no_grad()
    def write_back(self, models: Sequence[Model]) -> None:
        """Write the stacked parameters into ``models`` (the models `of` read), cutting away
        any padding."""
        stacked = self.trainable()
        for i, model in enumerate(models):
            state = {
                n: stacked[n][i][tuple(map(slice, v.shape))] if n in stacked else v
                for n, v in parameters(model).items()
            }
            load_parameters(model, state)

    def logits(
        self,
        bags: "Batch | PairCounts",
        rows: Int[torch.Tensor, "model batch"] | None = None,
        dropout: float = 0.0,
        generator: torch.Generator | None = None,
    ) -> Float[torch.Tensor, "model batch read d_vocab"]:
        """Logits at the scored positions: model m reads the examples ``rows[m]`` of ``bags``
        (every model reads all of them when ``rows`` is None). ``bags`` may come as their
        `PairCounts`, computed once for a split that is read many times.

        Matches `headcoop.engine.bags.read_logits` on each model (to float32 rounding). With
        ``dropout`` > 0, the attention output at the scored positions is dropped as in training.
        """
        params = self.params
        resid_read, z = self._attention(bags, rows)
        attn_out = torch.einsum("mbrhe,mhed->mbrd", z, params["blocks.0.attn.W_O"])
        attn_out = attn_out + params["blocks.0.attn.b_O"][:, None, None]
        if dropout > 0:
            attn_out = drop_out(attn_out, dropout, generator)
        final = _layernorm(resid_read + attn_out, params, "ln_final", self.eps)
        logits = torch.einsum("mbrd,mdv->mbrv", final, params["unembed.W_U"])
        return logits + params["unembed.b_U"][:, None, None]

    def head_outputs(
        self, bags: "Batch | PairCounts", rows: Int[torch.Tensor, "model batch"] | None = None
    ) -> Float[torch.Tensor, "model batch read head_index d_head"]:
        """Each head's output O_i (``hook_z``) at the scored positions (``rows`` as in
        `logits`)."""
        return self._attention(bags, rows)[1]

    def _attention(
        self, bags: "Batch | PairCounts", rows: Int[torch.Tensor, "model batch"] | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The embedded residual at the scored positions [model batch read d_model] and the
        head outputs there [model batch read head d_head]; see `_attention`."""
        if isinstance(bags, Batch):
            bags = PairCounts.of(bags, self.params["embed.W_E"].shape[1])
        bags = bags.to(self.device)
        if rows is None:  # every model reads the same counts
            return _attention(self.params, bags.counts, bags.read_tokens, self.eps, self.attn_scale)
        rows = rows.to(self.device)
        return _attention(
            self.params, bags.counts[rows], bags.read_tokens[rows], self.eps, self.attn_scale
        )


@dataclass(frozen=True)
class PairCounts:
    """Bags as the stacked engine reads them: for each scored position, how often it sees
    each (query token, key token) pair, and its own token.

    Computed once per split (`of`), so that a training step only gathers its rows.
    """

    counts: Float[torch.Tensor, "example read pair"]
    read_tokens: Int[torch.Tensor, "example read"]

    @classmethod
    def of(cls, bags: Batch, d_vocab: int) -> "PairCounts":
        if not bags.is_bag:
            raise HeadcoopError("the stacked engine runs on bags only")
        counts = _pair_counts(bags.tokens, bags.multiplicity, bags.read_pos, d_vocab)
        return cls(counts, bags.tokens.gather(1, bags.read_pos))

    def __len__(self) -> int:
        return len(self.counts)

    def key_counts(self, read: int) -> Float[torch.Tensor, "example d_vocab"]:
        """How many tokens of each type scored position ``read`` sees (itself included): its
        pair counts summed over the query token (its own, the only one present)."""
        d_vocab = math.isqrt(self.counts.shape[-1])
        return self.counts[:, read].unflatten(-1, (d_vocab, d_vocab)).sum(-2)

    def to(self, device: torch.device | str) -> "PairCounts":
        return PairCounts(self.counts.to(device), self.read_tokens.to(device))


def drop_out(x: torch.Tensor, rate: float, generator: torch.Generator | None) -> torch.Tensor:
    """Inverted dropout with masks drawn from ``generator`` (so that runs are reproducible)."""
    keep = (torch.rand(x.shape, generator=generator) >= rate).to(x.device)
    return x * keep / (1 - rate)


def _attention(
    params: Params,
    counts: Float[torch.Tensor, "*model batch read pair"],
    read_tokens: Int[torch.Tensor, "*model batch read"],
    eps: float,
    attn_scale: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The embedded residual at the scored positions [model batch read d_model] and the head
    outputs there [model batch read head d_head].

    With no positions, a query, key or value depends on its token alone, and attention from a
    scored position over a bag is

        z = sum_v C_v exp(s_uv) v_v / sum_v C_v exp(s_uv)

    where u is the query token and C_v the count of key token v it sees. So each model's
    vocabulary-sized tables of exp(scores) and values are built once per step, and every
    example is a count vector over (query token, key token) pairs (`PairCounts`) contracted
    with them in one matmul: no per-example softmax, keys or values. Without a model axis,
    every model reads the same examples, and one matmul serves them all.
    """
    n_models, d_vocab = params["embed.W_E"].shape[:2]
    shared = counts.dim() == 3
    flat = counts.flatten(-3, -2)  # [*model batch*read u*v]
    seen = flat.sum(-2) if not shared else flat.sum(0).expand(n_models, -1)
    present = seen.unflatten(-1, (d_vocab, d_vocab)).sum(1) > 0  # [model key_token]

    x = _layernorm(params["embed.W_E"], params, "blocks.0.ln1", eps)  # [model vocab d_model]
    q = torch.einsum("mud,mhde->muhe", x, params["blocks.0.attn.W_Q"])
    k = torch.einsum("mvd,mhde->mvhe", x, params["blocks.0.attn.W_K"])
    v = torch.einsum("mvd,mhde->mvhe", x, params["blocks.0.attn.W_V"])
    q = q + params["blocks.0.attn.b_Q"][:, None]
    k = k + params["blocks.0.attn.b_K"][:, None]
    v = v + params["blocks.0.attn.b_V"][:, None]
    scores = torch.einsum("muhe,mvhe->muvh", q, k) / attn_scale  # [model u v head]
    # Shift each query token's scores by their maximum over the key tokens that occur, as a
    # softmax does; tokens that never occur get weight 0 (their counts are 0 anyway).
    visible = present[:, None, :, None]
    shift = scores.detach().masked_fill(~visible, float("-inf")).amax(2, keepdim=True)
    weights = (scores - shift.nan_to_num(neginf=0.0)).masked_fill(~visible, float("-inf")).exp()
    ones = torch.ones_like(v[..., :1])
    values = torch.cat([v, ones], dim=-1)  # [model v head d_head+1]: numerator and denominator
    table = (weights[..., None] * values[:, None]).flatten(3).flatten(1, 2)  # [model u*v K]
    if shared:  # [batch*read u*v] @ [u*v model*K]
        sums = (flat @ table.transpose(0, 1).flatten(1)).unflatten(1, (n_models, -1))
        sums = sums.transpose(0, 1)
    else:
        sums = torch.bmm(flat, table)  # [model batch*read K]
    shape = counts.shape[-3:-1]
    sums = sums.reshape(n_models, *shape, -1, values.shape[-1])
    z = sums[..., :-1] / sums[..., -1:]

    if shared:
        return params["embed.W_E"][:, read_tokens], z
    model_idx = torch.arange(n_models, device=read_tokens.device)[:, None, None]
    return params["embed.W_E"][model_idx, read_tokens], z


def _pair_counts(
    tokens: Int[torch.Tensor, "batch pos"],
    multiplicity: Float[torch.Tensor, "batch pos"],
    read_pos: Int[torch.Tensor, "batch read"],
    d_vocab: int,
) -> Float[torch.Tensor, "batch read pair"]:
    """For each scored position, how often it sees each (query token, key token) pair: the
    query token is its own, the keys are the bag's positions up to it (with multiplicity)."""
    positions = torch.arange(tokens.shape[1], device=tokens.device)
    visible = positions <= read_pos[..., None]  # [batch read pos]
    read_tokens = tokens.gather(1, read_pos)  # [batch read]
    pair = read_tokens[..., None] * d_vocab + tokens[:, None, :]  # [batch read pos]
    weight = multiplicity[:, None, :] * visible
    counts = multiplicity.new_zeros(*read_pos.shape, d_vocab * d_vocab)
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
    else:
        x = x - x.mean(-1, keepdim=True)
        x = x / (x.pow(2).mean(-1, keepdim=True) + eps).sqrt()
    return x * params[f"{name}.w"].reshape(shape) + params[f"{name}.b"].reshape(shape)


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
