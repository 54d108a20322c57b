"""Many one-layer models at once: an exact re-expression of `HookedTransformer` on bags.

Training spends its time on tiny tensors, where the cost is per operation, not per number.
This module runs a whole stack of same-shaped models (parameters with a leading ``model`` axis)
in one set of operations, and computes attention only for the scored query positions. It
covers exactly the models that bag compression covers (one attention layer, no positional
information, optional LayerNorm) and is tested against the HookedTransformer forward, model by
model.
"""

import torch
from jaxtyping import Float, Int
from transformer_lens import HookedTransformer

from headcoop.engine import bag_exact
from headcoop.errors import HeadcoopError

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


def stack_params(models: list[HookedTransformer]) -> Params:
    """Copy the trainable parameters of same-shaped models into stacked leaf tensors."""
    if not models or not all(bag_exact(m) and m.cfg.attn_only for m in models):
        raise HeadcoopError("stacking needs one-layer attention-only models without positions")
    names = _param_names(models[0])
    if any(_param_names(m) != names or m.cfg.to_dict() != models[0].cfg.to_dict() for m in models):
        raise HeadcoopError("stacked models must share one config")
    states = [m.state_dict() for m in models]
    return {n: torch.stack([s[n] for s in states]).detach().requires_grad_(True) for n in names}


@torch.no_grad()
def unstack_params(params: Params, models: list[HookedTransformer]) -> None:
    """Write stacked parameters back into ``models`` (the models `stack_params` read)."""
    for i, model in enumerate(models):
        model.load_state_dict({n: p[i] for n, p in params.items()}, strict=False)


def stacked_logits(
    params: Params,
    tokens: Int[torch.Tensor, "model batch pos"],
    multiplicity: Float[torch.Tensor, "model batch pos"],
    read_pos: Int[torch.Tensor, "model batch read"],
    eps: float,
    attn_scale: float,
    dropout: float = 0.0,
    generator: torch.Generator | None = None,
) -> Float[torch.Tensor, "model batch read d_vocab"]:
    """Logits at the scored positions of bag batches, one batch per model.

    Matches `headcoop.engine.read_logits` on each model (to float32 rounding). With
    ``dropout`` > 0, the attention output at the scored positions is dropped as in training.
    """
    resid, z = _attention(params, tokens, multiplicity, read_pos, eps, attn_scale)
    attn_out = torch.einsum("mbrhe,mhed->mbrd", z, params["blocks.0.attn.W_O"])
    attn_out = attn_out + params["blocks.0.attn.b_O"][:, None, None]
    if dropout > 0:
        attn_out = drop_out(attn_out, dropout, generator)
    resid_read = resid.gather(2, read_pos[..., None].expand(-1, -1, -1, resid.shape[-1]))
    final = _layernorm(resid_read + attn_out, params, "ln_final", eps)
    logits = torch.einsum("mbrd,mdv->mbrv", final, params["unembed.W_U"])
    return logits + params["unembed.b_U"][:, None, None]


def drop_out(x: torch.Tensor, rate: float, generator: torch.Generator | None) -> torch.Tensor:
    """Inverted dropout with masks drawn from ``generator`` (so that runs are reproducible)."""
    keep = torch.rand(x.shape, generator=generator) >= rate
    return x * keep / (1 - rate)


def stacked_head_outputs(
    params: Params,
    tokens: Int[torch.Tensor, "model batch pos"],
    multiplicity: Float[torch.Tensor, "model batch pos"],
    read_pos: Int[torch.Tensor, "model batch read"],
    eps: float,
    attn_scale: float,
) -> Float[torch.Tensor, "model batch read head_index d_head"]:
    """Each head's output O_i (``hook_z``) at the scored positions of bag batches."""
    return _attention(params, tokens, multiplicity, read_pos, eps, attn_scale)[1]


@torch.no_grad()
def random_params(template: HookedTransformer, n_models: int, generator: torch.Generator) -> Params:
    """Stacked parameters of ``n_models`` freshly initialised models shaped like ``template``.

    Draws what TransformerLens's GPT-2 initialisation draws: every ``W_`` matrix from
    N(0, initializer_range), everything else as initialised (zero biases, unit LayerNorm).
    """
    std = template.cfg.initializer_range
    params = {}
    for name, value in stack_params([template]).items():
        shape = (n_models, *value.shape[1:])
        if name.split(".")[-1].startswith("W_"):
            params[name] = torch.randn(shape, generator=generator) * std
        else:
            params[name] = value.detach().expand(shape).clone()
    return params


def _attention(
    params: Params,
    tokens: Int[torch.Tensor, "model batch pos"],
    multiplicity: Float[torch.Tensor, "model batch pos"],
    read_pos: Int[torch.Tensor, "model batch read"],
    eps: float,
    attn_scale: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The embedded residual [model batch pos d_model] and the head outputs at the scored
    positions [model batch read head d_head]."""
    n_models = tokens.shape[0]
    model_idx = torch.arange(n_models)[:, None, None]
    resid = params["embed.W_E"][model_idx, tokens]  # [model batch pos d_model]
    x = _layernorm(resid, params, "blocks.0.ln1", eps)
    x_read = x.gather(2, read_pos[..., None].expand(-1, -1, -1, x.shape[-1]))

    q = torch.einsum("mbrd,mhde->mbrhe", x_read, params["blocks.0.attn.W_Q"])
    q = q + params["blocks.0.attn.b_Q"][:, None, None]
    k = torch.einsum("mbpd,mhde->mbphe", x, params["blocks.0.attn.W_K"])
    k = k + params["blocks.0.attn.b_K"][:, None, None]
    v = torch.einsum("mbpd,mhde->mbphe", x, params["blocks.0.attn.W_V"])
    v = v + params["blocks.0.attn.b_V"][:, None, None]

    scores = torch.einsum("mbrhe,mbphe->mbhrp", q, k) / attn_scale
    positions = torch.arange(tokens.shape[2])
    visible = positions <= read_pos[..., None]  # causal mask [model batch read pos]
    log_mult = multiplicity.log()[:, :, None, :].masked_fill(~visible, float("-inf"))
    pattern = torch.softmax(scores + log_mult[:, :, None], dim=-1)  # [model batch head read pos]
    return resid, torch.einsum("mbhrp,mbphe->mbrhe", pattern, v)


def _layernorm(x: torch.Tensor, params: Params, name: str, eps: float) -> torch.Tensor:
    """TransformerLens LayerNorm with per-model weights (identity when the model has none)."""
    if f"{name}.w" not in params:
        return x
    x = x - x.mean(-1, keepdim=True)
    x = x / (x.pow(2).mean(-1, keepdim=True) + eps).sqrt()
    shape = (x.shape[0],) + (1,) * (x.dim() - 2) + (x.shape[-1],)
    return x * params[f"{name}.w"].reshape(shape) + params[f"{name}.b"].reshape(shape)


def _param_names(model: HookedTransformer) -> tuple[str, ...]:
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    return tuple(n for n in _MATRICES + _NORMS if n in trainable)
