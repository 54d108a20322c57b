"""The model: a small attention-only TransformerLens model with no positional information.

The TransformerLens model (`headcoop.compat.Model`: a ``HookedTransformer`` under 3.x, the
native ``TransformerBridge`` under 4.x) is the one definition of what a model computes;
everything faster in headcoop (the bag engine, the analyzers' cached contributions) is tested
against its forward.
"""

import torch

from headcoop.compat import Model, new_model
from headcoop.config import ModelConfig


def build_model(cfg: ModelConfig, d_vocab: int, seed: int) -> Model:
    """A freshly initialised model; the same seed gives the same weights, bit for bit.

    The global torch RNG is left as it was.

    >>> model = build_model(ModelConfig(), d_vocab=8, seed=0)
    >>> model.cfg.n_heads, bool(model.pos_embed.W_pos.any())
    (16, False)
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = new_model(cfg.hooked_kwargs(d_vocab))
    if not cfg.positional:
        freeze_positions(model)
    return model


def freeze_positions(model: Model) -> None:
    """Zero and freeze W_pos, so that the model sees no positional information."""
    with torch.no_grad():
        model.pos_embed.W_pos.zero_()
    model.pos_embed.W_pos.requires_grad_(False)
