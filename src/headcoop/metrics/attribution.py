"""Per-head logit attribution, and the logits of any set of heads under three definitions.

At a scored position the residual stream entering the final normalization is

    resid = rest + sum_l b_O[l] + sum_i r_i,    r_i = O_i W_O[i]

over every head i of every layer (numbered layer-major), with ``rest`` the embeddings and, in
deeper models, the MLPs' outputs (in a one-layer attention-only model, the token's embedding e).
The logits are ``norm(resid) W_U + b_U``. Every normalization TransformerLens offers
(`final_norm`) is linear but for its scale: LayerNorm centres (the projection P), RMSNorm does
not; both divide by sqrt(mean(x^2) + eps) and may apply a weight w and bias b. So each head's
term is z_{t,i} = O_i . w_{i,t} / scale with w_{i,t} = (W_O[i] P diag(w) W_U)[:, t], the same
for the other parts, and b W_U + b_U is constant.

The logits of a set of heads H, under each `headcoop.metrics.definitions.Definition`:

- ``PAPER`` (the paper's §5.1, z_{t,H} = sum_{i in H} z_{t,i} + b_t): the head terms of H
  plus the constant terms (b_U, the attention biases b_O, the normalization's bias). The
  embeddings and MLPs (``rest``) are left out. Every term is divided by the full model's scale,
  frozen, as TransformerLens's ``apply_ln_to_stack`` does. For one attention-only layer, the
  paper's own definition; for deeper models its generalisation to every layer's direct
  contribution.
- ``DIRECT``: the heads outside H ablated (their outputs zeroed, ``hook_z``) in the running
  model, every other path kept. Where heads reach the logits linearly but for the scale (one
  attention layer, no MLP: `linear_heads`) `decompose` gives it exactly from Gram matrices of
  the head contributions, with no further forward pass; elsewhere
  `headcoop.engine.ablation.Ablation` runs the model with the masks as a batch axis.
- ``MEAN``: as ``DIRECT``, but each head outside H outputs its mean over the training split
  instead of zero (mean ablation).

TransformerLens's own per-head attribution, ``ActivationCache.logit_attrs`` of
``stack_head_results``, reads each head through W_U alone, as if the final LayerNorm's weight
had been folded into W_U (``fold_ln``, which headcoop's models are not built with). Without a
final LayerNorm it equals headcoop's head terms; with one, headcoop's equal
``apply_ln_to_stack`` of the head results read through diag(w_ln) W_U (both tested).
"""

from collections.abc import Callable
from dataclasses import dataclass

import torch
from jaxtyping import Bool, Float, Int

from headcoop.compat import Model
from headcoop.engine.ablation import Ablation, ablation_means
from headcoop.engine.cache import HeadCache
from headcoop.loading.fields import final_normalization
from headcoop.metrics.definitions import Definition
from headcoop.tasks.base import Task

SUBSET_CHUNK = 1024
"""Subsets evaluated together by `LogitDecomposition.set_logits` (bounds memory)."""

SetReader = Callable[
    [Bool[torch.Tensor, "subset head_index"], int, Int[torch.Tensor, " token"]],
    Float[torch.Tensor, "subset example token"],
]
"""The protocol of every definition's implementation: ``reader(masks, read, tokens)`` gives the
logits of ``tokens`` at scored position ``read`` for each set of heads (a row of ``masks``),
laid out as [set, example, token]."""


def head_unembed(model: Model) -> Float[torch.Tensor, "head_index d_head d_vocab"]:
    """w_{i,t}: how head i's output O_i moves logit t (before a final normalization's scale),
    for every head of every layer, layer-major."""
    norm = final_norm(model)
    W_O, W_U = model.W_O.flatten(0, 1), model.W_U  # [head d_head d_model], [d_model d_vocab]
    if norm.centre:
        W_O = W_O - W_O.mean(-1, keepdim=True)  # centring, applied to each contribution
    if norm.weight is not None:
        W_U = norm.weight[:, None] * W_U
    return torch.einsum("hem,mv->hev", W_O, W_U).detach()


@dataclass(frozen=True)
class FinalNorm:
    """The final normalization as algebra: whether it centres, its weight and bias (None where
    it has none), its epsilon; ``kind`` None for a model without one."""

    kind: str | None
    centre: bool
    weight: Float[torch.Tensor, " d_model"] | None
    bias: Float[torch.Tensor, " d_model"] | None
    eps: float


def final_norm(model: Model) -> FinalNorm:
    """TransformerLens's final normalization of ``model``: LayerNorm ('LN', or 'LNPre' without
    weight and bias) centres and divides by sqrt(mean(x^2) + eps); RMSNorm ('RMS', 'RMSPre')
    only divides."""
    kind = final_normalization(model.cfg)
    with_weight = kind in ("LN", "RMS")
    return FinalNorm(
        kind,
        kind in ("LN", "LNPre"),
        model.ln_final.w.detach() if with_weight else None,
        model.ln_final.b.detach() if kind == "LN" else None,
        float(model.cfg.eps),
    )


def head_weights(
    model: Model, candidates: Int[torch.Tensor, " candidate"] | tuple[int, ...]
) -> Float[torch.Tensor, " head_index"]:
    """hw_i: how strongly the output layer reads head i for a choice among ``candidates``
    (token ids), normalised over heads to sum to 1.

    The norm of the head's read-out restricted to the candidates and centred over them
    (subtracting the mean over candidates removes what moves every candidate alike). For two
    candidates (a, b) this is |w_{i,b} - w_{i,a}| / sqrt(2), so after normalising it is the
    paper's head weight.
    """
    w = head_unembed(model)[:, :, torch.as_tensor(candidates)]  # [head d_head candidate]
    norms = (w - w.mean(-1, keepdim=True)).flatten(1).norm(dim=1)
    return norms / norms.sum()


@dataclass(frozen=True)
class LogitDecomposition:
    """The logits at the scored positions, split into their parts.

    ``logits = (direct + attn_bias + heads.sum(head_index)) / scale + bias``, where ``scale``
    is the final LayerNorm's (all ones without one).

    Attributes:
        heads: O_i . w_{i,t} for each head (unscaled).
        direct: the embedding's direct path through the skip connection (unscaled).
        attn_bias: the attention bias b_O's part (unscaled).
        bias: the constant part of the logits (b_U, plus the LayerNorm bias mapped through W_U).
        scale: the final LayerNorm's scale in the full model.
        gram, cross, rest_sq: mean products of the centred head contributions with each other,
            with the rest (embedding and b_O), and of the rest with itself (None without a
            final LayerNorm); they give the exact scale for any set of heads.
        eps: the LayerNorm's epsilon.
        linear: whether the heads reach the logits linearly but for the scale
            (`linear_heads`): only then are the ablations exact here.
    """

    heads: Float[torch.Tensor, "example read head_index d_vocab"]
    direct: Float[torch.Tensor, "example read d_vocab"]
    attn_bias: Float[torch.Tensor, " d_vocab"]
    bias: Float[torch.Tensor, " d_vocab"]
    scale: Float[torch.Tensor, "example read"]
    gram: Float[torch.Tensor, "example read head_index head_index"] | None
    cross: Float[torch.Tensor, "example read head_index"] | None
    rest_sq: Float[torch.Tensor, "example read"] | None
    eps: float
    linear: bool = True

    @property
    def head_logits(self) -> Float[torch.Tensor, "example read head_index d_vocab"]:
        """z_{t,i}: each head's contribution to each logit (at the model's own LN scale)."""
        return self.heads / self.scale[..., None, None]

    @property
    def direct_logits(self) -> Float[torch.Tensor, "example read d_vocab"]:
        """The direct path's contribution to each logit (at the model's own LN scale)."""
        return self.direct / self.scale[..., None]

    @property
    def base_logits(self) -> Float[torch.Tensor, "example read d_vocab"]:
        """The logits less every head's contribution: ``logits = base + head_logits.sum``."""
        return (self.direct + self.attn_bias) / self.scale[..., None] + self.bias

    def head_only(
        self,
        masks: Bool[torch.Tensor, "subset head_index"],
        read: int,
        tokens: Int[torch.Tensor, " token"],
    ) -> Float[torch.Tensor, "subset example token"]:
        """The logits of ``tokens`` at scored position ``read`` given by each set of heads
        under the paper's definition (a `SetReader`; see the module docstring)."""
        return self._set_logits(masks, read, tokens, ablated=False)

    def ablated(
        self,
        masks: Bool[torch.Tensor, "subset head_index"],
        read: int,
        tokens: Int[torch.Tensor, " token"],
    ) -> Float[torch.Tensor, "subset example token"]:
        """The same with the heads outside each set ablated (zeroed, or at the baseline this
        decomposition was made with), every other path kept: exact only for `linear_heads`."""
        if not self.linear:
            raise ValueError("ablation needs forward passes for this model: use SetLogits")
        return self._set_logits(masks, read, tokens, ablated=True)

    def _set_logits(
        self,
        masks: Bool[torch.Tensor, "subset head_index"],
        read: int,
        tokens: Int[torch.Tensor, " token"],
        ablated: bool,
    ) -> Float[torch.Tensor, "subset example token"]:
        masks, tokens = masks.to(self.heads.device), tokens.to(self.heads.device)
        heads = self.heads[:, read][..., tokens].permute(2, 1, 0)  # [token head example]
        constant = self.attn_bias[tokens][:, None, None]  # [token 1 1]
        if ablated:
            constant = constant + self.direct[:, read][..., tokens].T[:, None]  # [token 1 example]
        bias = self.bias[tokens][:, None, None]
        chunks = []
        for m in masks.float().split(SUBSET_CHUNK):
            numer = constant + m @ heads  # [token subset example]
            scale = self._ablated_scale(m, read) if ablated else self.scale[:, read]
            chunks.append(numer / scale + bias)
        # Laid out token first, so that a choice among the tokens reduces over the outer axis.
        return torch.cat(chunks, dim=1).permute(1, 2, 0)

    def direct_share(self, read: int, tokens: Int[torch.Tensor, " token"]) -> float:
        """The direct path's share of the choice among ``tokens`` at ``read``: the mean norm of
        its logits centred over the tokens, over that plus the same for all heads together.
        For two tokens, the share of the logit difference."""

        def centred_norm(logits: torch.Tensor) -> torch.Tensor:
            return (logits - logits.mean(-1, keepdim=True)).norm(dim=-1).mean()

        direct = centred_norm(self.direct_logits[:, read][..., tokens])
        heads = centred_norm(self.head_logits[:, read].sum(1)[..., tokens])
        return float(direct / (direct + heads))

    def _ablated_scale(
        self, masks: Float[torch.Tensor, "subset head_index"], read: int
    ) -> Float[torch.Tensor, "subset example"]:
        if self.gram is None:
            return masks.new_ones(masks.shape[0], self.heads.shape[0])
        i, j = torch.triu_indices(*self.gram.shape[-2:], device=masks.device)
        both = torch.where(i == j, 1.0, 2.0)  # an off-diagonal pair counts twice
        quad = (masks[:, i] * masks[:, j]) @ (self.gram[:, read, i, j] * both).T  # [subset example]
        linear = 2 * masks @ self.cross[:, read].T
        return (self.rest_sq[:, read] + linear + quad + self.eps).sqrt()


def decompose(
    model: Model,
    cache: HeadCache,
    baseline: Float[torch.Tensor, "read head_index d_model"] | None = None,
) -> LogitDecomposition:
    """Split the cached logits into their parts; see the module docstring for the algebra.

    ``baseline`` is what a head outside a set contributes when ablated (`ablated`): nothing
    (None: zero ablation), or e.g. its mean contribution (mean ablation). The ablations are
    exact here only where the heads' contributions reach the logits linearly
    but for the final normalization (`linear_heads`); elsewhere `headcoop.engine.ablation`
    computes it."""
    norm = final_norm(model)
    W_U, b_U = model.W_U.detach(), model.b_U.detach()
    b_O = model.b_O.detach().sum(0)  # every layer's attention bias  [d_model]
    result = cache.result
    rest = cache.rest  # embeddings (and MLPs)  [example read d_model]
    if baseline is not None:
        rest, result = rest + baseline.sum(1), result - baseline
    if norm.centre:
        rest, b_O = rest - rest.mean(-1, keepdim=True), b_O - b_O.mean()
        result = result - result.mean(-1, keepdim=True)
    w = norm.weight if norm.weight is not None else 1.0
    heads = torch.einsum("erhm,mv->erhv", result * w, W_U)
    bias = b_U if norm.bias is None else norm.bias @ W_U + b_U
    if norm.kind is None:
        ones = rest.new_ones(rest.shape[:2])
        parts = (rest @ W_U, b_O @ W_U, bias, ones, None, None, None, 0.0)
        return LogitDecomposition(heads, *parts, linear_heads(model))
    c = rest + b_O  # the residual without heads  [example read d_model]
    d_model = c.shape[-1]
    gram = torch.einsum("erhm,ergm->erhg", result, result) / d_model
    cross = torch.einsum("erm,erhm->erh", c, result) / d_model
    rest_sq = c.pow(2).mean(-1)
    scale = (rest_sq + 2 * cross.sum(-1) + gram.sum((-1, -2)) + norm.eps).sqrt()
    parts = ((rest * w) @ W_U, (b_O * w) @ W_U, bias, scale, gram, cross, rest_sq, norm.eps)
    return LogitDecomposition(heads, *parts, linear_heads(model))


def linear_heads(model: Model) -> bool:
    """Whether every head reaches the logits linearly but for the final normalization (one
    attention layer and no MLP): then `decompose` gives the ablations exactly."""
    return model.cfg.n_layers == 1 and bool(model.cfg.attn_only)


@dataclass(frozen=True)
class SetLogits:
    """The logits of any set of heads of one model on one split, under every `Definition`:
    the paper's from its decomposition, the two ablations exactly, by algebra where
    `linear_heads` allows it and by forward passes (`Ablation`) elsewhere.

    Attributes:
        paper: the decomposition of the split's logits.
        readers: each definition's `SetReader`.
        by_forward_passes: whether the ablations run the model.
    """

    paper: LogitDecomposition
    readers: dict[Definition, SetReader]
    by_forward_passes: bool

    @classmethod
    def of(
        cls, model: Model, task: Task, train: HeadCache, test: HeadCache, examples: torch.Tensor
    ) -> "SetLogits":
        """Set logits on ``examples`` (whose cache is ``test``); mean ablation's means are taken
        over ``train``."""
        inputs = SetInputs(model, task, train, test, examples, decompose(model, test))
        readers = {d: IMPLEMENTATIONS[d](inputs) for d in Definition}
        return cls(inputs.paper, readers, not linear_heads(model))

    def set_logits(
        self,
        masks: Bool[torch.Tensor, "subset head_index"],
        read: int,
        tokens: Int[torch.Tensor, " token"],
        definition: Definition,
    ) -> Float[torch.Tensor, "subset example token"]:
        """The logits of ``tokens`` at ``read`` given by each set under ``definition``."""
        return self.readers[definition](masks, read, tokens)


@dataclass(frozen=True)
class SetInputs:
    """What a definition's implementation may read: the model, its task, the two splits' caches,
    the test examples and the test split's decomposition."""

    model: Model
    task: Task
    train: HeadCache
    test: HeadCache
    examples: torch.Tensor
    paper: LogitDecomposition


def _head_only(inputs: SetInputs) -> SetReader:
    return inputs.paper.head_only


def _zero_ablation(inputs: SetInputs) -> SetReader:
    if linear_heads(inputs.model):
        return inputs.paper.ablated
    return Ablation(inputs.model, inputs.task, inputs.examples).set_logits


def _mean_ablation(inputs: SetInputs) -> SetReader:
    means = ablation_means(inputs.train)
    if linear_heads(inputs.model):
        W_O = inputs.model.W_O.flatten(0, 1).detach()
        baseline = torch.einsum("khd,hdm->khm", means[:-1], W_O)
        return decompose(inputs.model, inputs.test, baseline).ablated
    return Ablation(inputs.model, inputs.task, inputs.examples, means).set_logits


IMPLEMENTATIONS: dict[Definition, Callable[[SetInputs], SetReader]] = {
    Definition.PAPER: _head_only,
    Definition.DIRECT: _zero_ablation,
    Definition.MEAN: _mean_ablation,
}
"""Each definition's implementation: from a `SetInputs`, its `SetReader`."""
