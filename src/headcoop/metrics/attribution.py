"""Per-head logit attribution, exact for the whole model and for any set of heads.

In a one-layer attention-only model the residual stream at a scored position is

    resid = c + sum_i r_i,    c = resid_pre + b_O,    r_i = O_i W_O[i]

and the logits are ``LN(resid) W_U + b_U``. Without a final LayerNorm they are affine in the
head outputs: z_t = sum_i O_i . w_{i,t} + b_t with w_{i,t} = (W_O[i] W_U)[:, t], the paper's
decomposition. With one, TransformerLens's LayerNorm centres ``resid``, divides by its scale
sqrt(mean(resid_centred^2) + eps) and applies the weight w_ln and bias b_ln; everything but the
scale is linear, so

    z_t = (c~_t + sum_i O_i . w_{i,t}) / scale + b_t,   w_{i,t} = (W_O[i] P diag(w_ln) W_U)[:, t]

with P the centring projection. Per-head attributions divide by the model's own scale (frozen,
as in TransformerLens's ``apply_ln_to_stack``) and add up to the logits exactly. Ablating heads
changes the scale; `LogitDecomposition.subset_logits` recomputes it exactly from Gram matrices
of the centred head contributions, so ablations need no further forward pass.
"""

from dataclasses import dataclass

import torch
from jaxtyping import Bool, Float, Int
from transformer_lens import HookedTransformer

from headcoop.metrics.cache import HeadCache

SUBSET_CHUNK = 1024
"""Subsets evaluated together by `LogitDecomposition.subset_logits` (bounds memory)."""


def head_unembed(model: HookedTransformer) -> Float[torch.Tensor, "head_index d_head d_vocab"]:
    """w_{i,t}: how head i's output O_i moves logit t (before a final LayerNorm's scale)."""
    W_O, W_U = model.W_O[0], model.W_U  # [head d_head d_model], [d_model d_vocab]
    if _has_final_ln(model):
        W_O = W_O - W_O.mean(-1, keepdim=True)  # centring, applied to each contribution
        W_U = model.ln_final.w[:, None] * W_U
    return torch.einsum("hem,mv->hev", W_O, W_U).detach()


def head_weights(
    model: HookedTransformer, tokens: tuple[int, int]
) -> Float[torch.Tensor, " head_index"]:
    """hw_i = |w_{i,b} - w_{i,a}| for the two decision tokens (a, b), normalised to sum to 1.

    How strongly the output layer reads each head for the decision between the two tokens.
    """
    w = head_unembed(model)
    norms = (w[:, :, tokens[1]] - w[:, :, tokens[0]]).norm(dim=1)
    return norms / norms.sum()


@dataclass(frozen=True)
class LogitDecomposition:
    """The logits at the scored positions, split into head terms and the rest.

    ``logits = (rest + heads.sum(head_index)) / scale + bias``, where ``scale`` is the final
    LayerNorm's (all ones without one).

    Attributes:
        heads: O_i . w_{i,t} for each head (unscaled).
        rest: the same for the residual stream without heads: embedding and b_O.
        bias: the constant part of the logits (b_U, plus the LayerNorm bias mapped through W_U).
        scale: the final LayerNorm's scale in the full model.
        gram, cross, rest_sq: mean products of the centred head contributions with each other,
            with the rest, and of the rest with itself (None without a final LayerNorm); they
            give the scale for any set of heads.
        eps: the LayerNorm's epsilon.
    """

    heads: Float[torch.Tensor, "example read head_index d_vocab"]
    rest: Float[torch.Tensor, "example read d_vocab"]
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
    def base_logits(self) -> Float[torch.Tensor, "example read d_vocab"]:
        """The logits less every head's contribution: ``logits = base + head_logits.sum``."""
        return self.rest / self.scale[..., None] + self.bias

    def subset_logits(
        self,
        masks: Bool[torch.Tensor, "subset head_index"],
        read: int,
        tokens: Int[torch.Tensor, " token"],
    ) -> Float[torch.Tensor, "subset example token"]:
        """Exact logits of ``tokens`` at scored position ``read`` with the heads outside each
        subset ablated (their outputs zeroed), for many subsets at once."""
        heads = self.heads[:, read][..., tokens]  # [example head token]
        rest = self.rest[:, read][..., tokens]  # [example token]
        chunks = []
        for m in masks.float().split(SUBSET_CHUNK):
            numer = rest + torch.einsum("sh,eht->set", m, heads)  # [subset example token]
            chunks.append(numer / self._subset_scale(m, read)[..., None] + self.bias[tokens])
        return torch.cat(chunks)

    def _subset_scale(
        self, masks: Float[torch.Tensor, "subset head_index"], read: int
    ) -> Float[torch.Tensor, "subset example"]:
        if self.gram is None:
            return masks.new_ones(masks.shape[0], self.heads.shape[0])
        quad = torch.einsum("sh,ehg,sg->se", masks, self.gram[:, read], masks)
        linear = 2 * masks @ self.cross[:, read].T
        return (self.rest_sq[:, read] + linear + quad + self.eps).sqrt()


def decompose(model: HookedTransformer, cache: HeadCache) -> LogitDecomposition:
    """Split the cached logits into head terms; see the module docstring for the algebra."""
    c = cache.resid_pre + model.b_O[0].detach()  # [example read d_model]
    heads = torch.einsum("erhk,hkv->erhv", cache.z, head_unembed(model))
    if not _has_final_ln(model):
        rest = c @ model.W_U.detach()
        ones = torch.ones(c.shape[:2])
        return LogitDecomposition(heads, rest, model.b_U.detach(), ones, None, None, None, 0.0)
    w, b = model.ln_final.w.detach(), model.ln_final.b.detach()
    c_centred = c - c.mean(-1, keepdim=True)
    r_centred = cache.result - cache.result.mean(-1, keepdim=True)  # [example read head d_model]
    d_model = c.shape[-1]
    gram = torch.einsum("erhm,ergm->erhg", r_centred, r_centred) / d_model
    cross = torch.einsum("erm,erhm->erh", c_centred, r_centred) / d_model
    rest_sq = c_centred.pow(2).mean(-1)
    eps = float(model.cfg.eps)
    scale = (rest_sq + 2 * cross.sum(-1) + gram.sum((-1, -2)) + eps).sqrt()
    rest = (c_centred * w) @ model.W_U.detach()
    bias = b @ model.W_U.detach() + model.b_U.detach()
    return LogitDecomposition(heads, rest, bias, scale, gram, cross, rest_sq, eps)


def _has_final_ln(model: HookedTransformer) -> bool:
    return model.cfg.normalization_type is not None
