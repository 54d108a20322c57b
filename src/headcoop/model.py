"""The model: a small attention-only `HookedTransformer` with no positional information.

`HookedTransformer` is the one definition of what a model computes; everything faster in
headcoop (the bag engine, the analyzers' cached contributions) is tested against its forward.
"""

import warnings
from dataclasses import dataclass
from typing import Any

import torch
from transformer_lens import HookedTransformer, HookedTransformerConfig

from headcoop.errors import HeadcoopError


@dataclass(frozen=True)
class ModelConfig:
    """Shape of the model. The defaults are the paper's stable setup.

    Args:
        d_model: embedding dimension.
        n_heads: attention heads in each layer.
        d_head: dimension of each head's queries, keys, values and output.
        layernorm: LayerNorm before attention and before the unembedding.
        n_layers: attention layers. One is the paper's; more breaks bag compression.
        positional: learn a positional embedding. Off (the paper's) keeps W_pos zero and frozen.
        n_ctx: longest sequence the model accepts.
    """

    d_model: int = 32
    n_heads: int = 16
    d_head: int = 2
    layernorm: bool = True
    n_layers: int = 1
    positional: bool = False
    n_ctx: int = 2048

    def __post_init__(self) -> None:
        for name in ("d_model", "n_heads", "d_head", "n_layers", "n_ctx"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise HeadcoopError(
                    f"model config: {name} must be a positive integer, got {value!r}"
                )
        if self.layernorm and self.d_model < 2:
            raise HeadcoopError("model config: layernorm needs d_model >= 2 (use --no-layernorm)")

    def hooked_kwargs(self, d_vocab: int) -> dict[str, Any]:
        """Keyword arguments of the equivalent `HookedTransformerConfig` (stored in checkpoints)."""
        return {
            "n_layers": self.n_layers,
            "d_model": self.d_model,
            "n_heads": self.n_heads,
            "d_head": self.d_head,
            "n_ctx": self.n_ctx,
            "d_vocab": d_vocab,
            "attn_only": True,
            "normalization_type": "LN" if self.layernorm else None,
            "positional_embedding_type": "standard",
            "default_prepend_bos": False,
            "device": "cpu",
        }

    @classmethod
    def of(cls, model: HookedTransformer) -> "ModelConfig":
        """The config a model was built with, read off the model itself."""
        cfg = model.cfg
        return cls(
            d_model=cfg.d_model,
            n_heads=cfg.n_heads,
            d_head=cfg.d_head,
            layernorm=cfg.normalization_type is not None,
            n_layers=cfg.n_layers,
            positional=bool(model.pos_embed.W_pos.requires_grad or model.pos_embed.W_pos.any()),
            n_ctx=cfg.n_ctx,
        )


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
        except (TypeError, ValueError, AssertionError) as exc:
            raise HeadcoopError(f"bad model config: {exc}") from None


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
