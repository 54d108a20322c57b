"""The model: a small attention-only `HookedTransformer` with no positional information.

`HookedTransformer` is the one definition of what a model computes; everything faster in
headcoop (the bag engine, the analyzers' cached contributions) is tested against its forward.
"""

import warnings
from typing import Any

import torch
from transformer_lens import HookedTransformer, HookedTransformerConfig

from headcoop.config import ModelConfig
from headcoop.errors import HeadcoopError


def hooked_transformer(kwargs: dict[str, Any]) -> HookedTransformer:
    """Build a `HookedTransformer` from config keyword arguments, with its usual random init."""
    # transformer-lens 3.x warns that HookedTransformer goes away in 4.0; headcoop pins <4 and
    # relies on it deliberately, so that one warning is noise for our users.
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message="HookedTransformer is deprecated", category=DeprecationWarning
        )
        try:
            return HookedTransformer(HookedTransformerConfig(**kwargs))
        except Exception as exc:  # TransformerLens checks its config with many exception types
            first = next(iter(str(exc).strip().splitlines()), type(exc).__name__)
            raise HeadcoopError(f"bad model config: {first}") from None


def build_model(cfg: ModelConfig, d_vocab: int, seed: int) -> HookedTransformer:
    """A freshly initialised model; the same seed gives the same weights, bit for bit.

    The global torch RNG is left as it was.

    >>> model = build_model(ModelConfig(), d_vocab=8, seed=0)
    >>> model.cfg.n_heads, bool(model.pos_embed.W_pos.any())
    (16, False)
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = hooked_transformer(cfg.hooked_kwargs(d_vocab))
    if not cfg.positional:
        freeze_positions(model)
    return model


def freeze_positions(model: HookedTransformer) -> None:
    """Zero and freeze W_pos, so that the model sees no positional information."""
    with torch.no_grad():
        model.pos_embed.W_pos.zero_()
    model.pos_embed.W_pos.requires_grad_(False)


def attention_scale(model: HookedTransformer, layer: int = 0) -> float:
    """The divisor of layer ``layer``'s attention scores (sqrt(d_head) unless the config says
    otherwise)."""
    return float(model.blocks[layer].attn.attn_scale)
