"""Per-head logit attribution, and the logits of any set of heads under two definitions.

In a one-layer attention-only model the residual stream at a scored position is

    resid = e + b_O + sum_i r_i,    r_i = O_i W_O[i]

with e the token's embedding (``resid_pre``), and the logits are ``LN(resid) W_U + b_U``.
Without a final LayerNorm they are affine in the head outputs, z_t = e W_U[:, t] +
sum_i O_i . w_{i,t} + b_t, with w_{i,t} = (W_O[i] W_U)[:, t] and b_t = b_O W_U[:, t] + b_U[t].
With one, TransformerLens's LayerNorm centres ``resid``, divides by its scale
sqrt(mean(resid_centred^2) + eps) and applies the weight w_ln and bias b_ln; everything but the
scale is linear, so the same holds with w_{i,t} = (W_O[i] P diag(w_ln) W_U)[:, t] (P the
centring projection), every term divided by the scale, and b_ln W_U added to the constant.

The logits of a set of heads H, two ways (`DEFINITIONS`):

- ``"paper"`` (the paper's §5.1, z_{t,H} = sum_{i in H} z_{t,i} + b_t): the head terms of H
  plus the constant terms (b_U and the attention bias b_O). The embedding's direct path e
  through the skip connection is left out. With a final LayerNorm every term is divided by the
  full model's scale, frozen, as TransformerLens's ``apply_ln_to_stack`` does.
- ``"direct"``: the heads outside H ablated (their outputs zeroed) in the running model: the
  direct path is kept and the LayerNorm scale is that of the ablated residual, recomputed
  exactly from Gram matrices of the centred head contributions, with no further forward pass.

Metrics under the second definition carry the suffix ``_direct`` (`SUFFIX`).

TransformerLens's own per-head attribution, ``ActivationCache.logit_attrs`` of
``stack_head_results``, reads each head through W_U alone, as if the final LayerNorm's weight
had been folded into W_U (``fold_ln``, which headcoop's models are not built with). Without a
final LayerNorm it equals headcoop's head terms; with one, headcoop's equal
``apply_ln_to_stack`` of the head results read through diag(w_ln) W_U (both tested).
"""

from dataclasses import dataclass

import torch
from jaxtyping import Bool, Float, Int

from headcoop.compat import Model
from headcoop.engine.cache import HeadCache

SUBSET_CHUNK = 1024
"""Subsets evaluated together by `LogitDecomposition.set_logits` (bounds memory)."""

DEFINITIONS = ("paper", "direct")
SUFFIX = {"paper": "", "direct": "_direct"}
"""Column suffix of a set metric under each definition: ``l_acc`` and ``l_acc_direct``."""


def head_unembed(model: Model) -> Float[torch.Tensor, "head_index d_head d_vocab"]:
    """w_{i,t}: how head i's output O_i moves logit t (before a final LayerNorm's scale)."""
    W_O, W_U = model.W_O[0], model.W_U  # [head d_head d_model], [d_model d_vocab]
    if _has_final_ln(model):
        W_O = W_O - W_O.mean(-1, keepdim=True)  # centring, applied to each contribution
        W_U = model.ln_final.w[:, None] * W_U
    return torch.einsum("hem,mv->hev", W_O, W_U).detach()


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

    def set_logits(
        self,
        masks: Bool[torch.Tensor, "subset head_index"],
        read: int,
        tokens: Int[torch.Tensor, " token"],
        definition: str = "paper",
    ) -> Float[torch.Tensor, "subset example token"]:
        """The logits of ``tokens`` at scored position ``read`` given by each set of heads,
        under ``definition`` ('paper' or 'direct'; see the module docstring)."""
        if definition not in DEFINITIONS:
            raise ValueError(f"definition must be one of {DEFINITIONS}, got {definition!r}")
        masks, tokens = masks.to(self.heads.device), tokens.to(self.heads.device)
        heads = self.heads[:, read][..., tokens].permute(2, 1, 0)  # [token head example]
        constant = self.attn_bias[tokens][:, None, None]  # [token 1 1]
        if definition == "direct":
            constant = constant + self.direct[:, read][..., tokens].T[:, None]  # [token 1 example]
        bias = self.bias[tokens][:, None, None]
        chunks = []
        for m in masks.float().split(SUBSET_CHUNK):
            numer = constant + m @ heads  # [token subset example]
            scale = self._ablated_scale(m, read) if definition == "direct" else self.scale[:, read]
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


def decompose(model: Model, cache: HeadCache) -> LogitDecomposition:
    """Split the cached logits into their parts; see the module docstring for the algebra."""
    b_O, W_U = model.b_O[0].detach(), model.W_U.detach()
    heads = torch.einsum("erhk,hkv->erhv", cache.z, head_unembed(model))
    if not _has_final_ln(model):
        ones = cache.resid_pre.new_ones(cache.resid_pre.shape[:2])
        direct, attn_bias = cache.resid_pre @ W_U, b_O @ W_U
        return LogitDecomposition(
            heads, direct, attn_bias, model.b_U.detach(), ones, None, None, None, 0.0
        )
    w, b = model.ln_final.w.detach(), model.ln_final.b.detach()
    e = cache.resid_pre - cache.resid_pre.mean(-1, keepdim=True)
    b_O = b_O - b_O.mean()
    c = e + b_O  # the residual without heads, centred  [example read d_model]
    r = cache.result - cache.result.mean(-1, keepdim=True)  # [example read head d_model]
    d_model = c.shape[-1]
    gram = torch.einsum("erhm,ergm->erhg", r, r) / d_model
    cross = torch.einsum("erm,erhm->erh", c, r) / d_model
    rest_sq = c.pow(2).mean(-1)
    eps = float(model.cfg.eps)
    scale = (rest_sq + 2 * cross.sum(-1) + gram.sum((-1, -2)) + eps).sqrt()
    bias = b @ W_U + model.b_U.detach()
    return LogitDecomposition(
        heads, (e * w) @ W_U, (b_O * w) @ W_U, bias, scale, gram, cross, rest_sq, eps
    )


def _has_final_ln(model: Model) -> bool:
    return model.cfg.normalization_type is not None
