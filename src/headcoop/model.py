"""The model: a small TransformerLens model, by default the paper's (one attention layer, no MLP,
no positional information).

The TransformerLens model (`headcoop.compat.Model`: a ``HookedTransformer`` under 3.x, the
native ``TransformerBridge`` under 4.x) is the one definition of what a model computes;
everything faster in headcoop (the bag engine, the analyzers' cached contributions) is tested
against its forward.
"""

import copy
import functools
import json
from typing import Any

import torch

from headcoop.compat import Model, load_parameters, new_model, parameters, to_device
from headcoop.config import INIT_SCHEMES, ModelConfig
from headcoop.device import Device, resolve_device
from headcoop.errors import HeadcoopError

_DRAW_ORDER = ("W_E", "W_pos", "W_Q", "W_O", "W_K", "W_V", "W_U")
"""The order in which `initialize` draws a layer's matrices (TransformerLens 3's parameter
order, so that 3.x models keep the weights that its own initialisation gave them)."""


def build_model(
    cfg: ModelConfig,
    d_vocab: int,
    seed: int,
    device: Device = None,
    init: str = "transformer_lens",
    init_scale: float = 1.0,
) -> Model:
    """A freshly initialised model on ``device`` (see `headcoop.device`); the same seed gives the
    same weights, bit for bit, on every device (they are drawn on the CPU). ``init`` and
    ``init_scale`` are `initialize`'s.

    The global torch RNG is left as it was.

    >>> model = build_model(ModelConfig(), d_vocab=8, seed=0)
    >>> model.cfg.n_heads, bool(model.pos_embed.W_pos.any())
    (16, False)
    """
    device = resolve_device(device)
    with torch.random.fork_rng(devices=[]):
        model = _blank_model(cfg.hooked_kwargs(d_vocab))
        torch.manual_seed(seed)
        initialize(model, init, init_scale)
    if not cfg.positional:
        freeze_positions(model)
    return to_device(model, device)


def _blank_model(kwargs: dict[str, Any]) -> Model:
    """A new model of this configuration, whose every weight is about to be drawn: a copy of
    one built once per configuration in a row (building a TransformerLens 4 model, with its
    hook registry, takes 20 ms; copying one, 8 ms; a sweep builds hundreds of one shape)."""
    return copy.deepcopy(_built_once(json.dumps(kwargs, sort_keys=True)))


@functools.lru_cache(maxsize=1)
def _built_once(kwargs: str) -> Model:
    return new_model(json.loads(kwargs))


@torch.no_grad()
def initialize(model: Model, scheme: str = "transformer_lens", scale: float = 1.0) -> None:
    """Draw the initial weights from the global torch RNG, each random draw times ``scale``.

    - 'transformer_lens': GPT-2's initialisation, every matrix ``W_*`` from
      N(0, initializer_range) (0.8 / sqrt(d_model) by default), biases zero, LayerNorm weights
      one. Written out rather than left to TransformerLens so that a seed gives the same model
      under transformer-lens 3 and 4 (whose native models draw differently); under 3.x it
      equals ``HookedTransformer``'s own initialisation, bit for bit.
    - 'pytorch': what the same model written with plain torch modules starts from: embeddings
      (``nn.Embedding``) from N(0, 1), every linear map and its bias (``nn.Linear``) from
      U(-1/sqrt(fan_in), 1/sqrt(fan_in)), LayerNorm weights one and biases zero.
    """
    cfg = model.cfg
    state = {}
    for name, value in sorted(parameters(model).items(), key=lambda item: _draw_key(item[0])):
        leaf = name.rsplit(".", 1)[-1]
        if scheme == "pytorch" and leaf in _FAN_IN:
            bound = _FAN_IN[leaf](cfg) ** -0.5
            state[name] = torch.empty(value.shape).uniform_(-bound, bound) * scale
        elif scheme == "pytorch" and leaf in ("W_E", "W_pos"):
            state[name] = torch.empty(value.shape).normal_(0.0, 1.0) * scale
        elif scheme == "transformer_lens" and leaf.startswith("W_"):
            state[name] = torch.empty(value.shape).normal_(0.0, cfg.initializer_range) * scale
        elif scheme in INIT_SCHEMES:
            state[name] = torch.ones(value.shape) if leaf == "w" else torch.zeros(value.shape)
        else:
            raise HeadcoopError(f"unknown init scheme {scheme!r}: choose from {INIT_SCHEMES}")
    load_parameters(model, state)


_FAN_IN = {
    **dict.fromkeys(("W_Q", "W_K", "W_V", "b_Q", "b_K", "b_V", "W_U", "b_U"), lambda c: c.d_model),
    **dict.fromkeys(("W_O", "b_O"), lambda c: c.n_heads * c.d_head),
}
"""The fan-in of each linear map (and of its bias) under the 'pytorch' scheme: queries, keys,
values and the unembedding read the residual; the output map reads every head's output."""


def _draw_key(name: str) -> tuple[int, int]:
    """Position of a parameter in the draw order: by layer, then by `_DRAW_ORDER`."""
    parts = name.split(".")
    layer = int(parts[1]) if parts[0] == "blocks" else (-1 if parts[0] != "unembed" else 1 << 30)
    leaf = parts[-1]
    return layer, _DRAW_ORDER.index(leaf) if leaf in _DRAW_ORDER else len(_DRAW_ORDER)


def freeze_positions(model: Model) -> None:
    """Zero and freeze W_pos, so that the model sees no positional information."""
    with torch.no_grad():
        model.pos_embed.W_pos.zero_()
    model.pos_embed.W_pos.requires_grad_(False)


def has_positions(model: Model) -> bool:
    """Whether ``model`` sees positions: rotary attention, or a learned positional embedding
    that is trainable or not all zero."""
    if model.cfg.positional_embedding_type != "standard":
        return True
    W_pos = model.pos_embed.W_pos
    return bool(W_pos.requires_grad or W_pos.any())
