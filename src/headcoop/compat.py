"""TransformerLens 3 and 4 behind one small interface.

headcoop's models are TransformerLens models: a ``HookedTransformer`` under transformer-lens
3.x, and under 4.x (which removed that class) the native ``TransformerBridge`` built from the
same config keyword arguments. Both expose the same weights (``model.W_Q``, ``model.embed.W_E``,
...), hooks (``hook_z``, ``hook_pattern``, ``ln_final.hook_scale``, ...), ``run_with_cache``
and ``run_with_hooks``; this module covers what differs:

- building a model (`new_model`) and its parameters under the 3.x names (`parameters`,
  `load_parameters`), which is the one format checkpoints are stored in;
- the attention scale (`attention_scale`: 4.x has no ``attn.attn_scale``);
- the attention scores: 4.x's ``hook_attn_scores`` carries the pattern after the softmax (and
  drops edits), so headcoop never hooks it; `attention_scores` recomputes the scores from
  ``hook_q`` and ``hook_k``, and the bag engine reweights ``hook_pattern`` instead.

Importing this module checks the installed version: anything outside 3.9 to 4.x is refused with
one line.
"""

import warnings
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import torch
from jaxtyping import Float
from torch import Tensor
from transformer_lens import ActivationCache

from headcoop.errors import HeadcoopError

SUPPORTED = ((3, 9), (5, 0))
"""transformer-lens versions headcoop runs on: at least the first, below the second."""


def _installed() -> tuple[int, int]:
    try:
        text = version("transformer-lens")
    except PackageNotFoundError:
        raise HeadcoopError("transformer-lens is not installed: pip install headcoop") from None
    major, minor = (
        int("".join(c for c in part if c.isdigit()) or 0) for part in text.split(".")[:2]
    )
    if not SUPPORTED[0] <= (major, minor) < SUPPORTED[1]:
        raise HeadcoopError(
            f"unsupported transformer-lens {text}: headcoop needs >=3.9,<5 "
            "(pip install 'transformer-lens>=3.9,<5')"
        )
    return major, minor


TL_VERSION = _installed()

if TL_VERSION[0] == 3:
    from transformer_lens import HookedTransformer as Model
    from transformer_lens import HookedTransformerConfig as _Config
else:
    from transformer_lens import TransformerBridge as Model
    from transformer_lens import TransformerBridgeConfig as _Config
    from transformer_lens.utilities.tl_checkpoint_conversion import convert_tl_checkpoint

__all__ = [
    "BUFFER_SUFFIXES",
    "TL_VERSION",
    "Model",
    "attention_scale",
    "attention_scores",
    "bridge_shapes",
    "load_parameters",
    "new_model",
    "parameters",
    "score_hooks",
    "to_device",
]


def new_model(kwargs: dict[str, Any]) -> Model:
    """A model on the CPU from checked `HookedTransformerConfig` keyword arguments (see
    `headcoop.loading.fields`), computing what a 3.x ``HookedTransformer`` of that config
    computes. Its weights are TransformerLens's initialisation; `headcoop.model.build_model`
    draws its own.

    Under 4.x the native bridge takes the same arguments, but its attention scale differs:
    3.x divides by 1 where ``use_attn_scale`` is off and by any positive ``attn_scale``, the
    bridge by sqrt(d_head) in the first case and refuses 1.0 in the second; the scale 3.x would
    use is set on the built model.
    """
    scale = _tl3_scale(kwargs)
    if TL_VERSION[0] == 4:
        kwargs = {k: v for k, v in kwargs.items() if k not in ("use_attn_scale", "attn_scale")}
    model = _build(kwargs)
    if TL_VERSION[0] == 4 and scale is not None:
        for block in model.blocks:
            block.attn.original_component.scale = scale
    return model


def _tl3_scale(kwargs: dict[str, Any]) -> float | None:
    """The attention scale a 3.x model of this config uses, where not sqrt(d_head)."""
    if not kwargs.get("use_attn_scale", True):
        return 1.0
    scale = kwargs.get("attn_scale", -1.0)
    return float(scale) if scale > 0 else None


def new_bridge(kwargs: dict[str, Any]) -> Model:
    """A 4.x native bridge exactly as ``TransformerBridge.boot_native`` builds it from these
    arguments (for weights saved by a plain 4.x model, whose config means what the bridge
    makes of it)."""
    return _build(kwargs)


def _build(kwargs: dict[str, Any]) -> Model:
    # transformer-lens 3.x warns that HookedTransformer goes away in 4.0; headcoop uses it
    # there deliberately, so that one warning is noise for our users.
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message="HookedTransformer is deprecated", category=DeprecationWarning
        )
        try:
            config = _Config(**{**kwargs, "device": "cpu"})
            if TL_VERSION[0] == 3:
                return Model(config)
            return _with_unembedding_bias(Model.boot_native(config))
        except Exception as exc:  # TransformerLens checks its config with many exception types
            first = next(iter(str(exc).strip().splitlines()), type(exc).__name__)
            raise HeadcoopError(f"bad model config: {first}") from None


def bridge_shapes(kwargs: dict[str, Any]) -> dict[str, tuple[int, ...]]:
    """The names and shapes of a 4.x bridge's own state dict for this config, built on
    torch's meta device (nothing is allocated)."""
    with torch.device("meta"):
        model = new_bridge(kwargs)
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def to_device(model: Model, device: torch.device) -> Model:
    """Move ``model`` (and its config's ``device``) to ``device``, quietly."""
    return model.to(device, print_details=False)


def _with_unembedding_bias(model: Model) -> Model:
    """Give a native 4.x model the trainable unembedding bias (``b_U``) that 3.x's has: without
    it the two would train different models."""
    head = model.unembed.original_component
    head.bias = torch.nn.Parameter(torch.zeros(head.out_features))
    return model


def parameters(model: Model) -> dict[str, Tensor]:
    """The model's parameters under their TransformerLens 3.x names (``embed.W_E``,
    ``blocks.0.attn.W_Q``, ...), as live tensors of the model."""
    if TL_VERSION[0] == 3:
        return dict(model.named_parameters())
    # The bridge lists an MLP's weights for attention-only models too; they compute nothing.
    mlp = ".mlp." if model.cfg.attn_only else None
    named = {k: v for k, v in model.tl_named_parameters() if mlp is None or mlp not in k}
    return named | _solu_norms(model)


def _solu_norms(model: Model) -> dict[str, Tensor]:
    """The LayerNorm inside each 'solu_ln' MLP, which the bridge's 3.x view leaves out."""
    if model.cfg.attn_only or model.cfg.act_fn != "solu_ln":
        return {}
    found = {}
    for layer, block in enumerate(model.blocks):
        norm = block.mlp.original_component.ln
        found |= {f"blocks.{layer}.mlp.ln.w": norm.weight, f"blocks.{layer}.mlp.ln.b": norm.bias}
    return found


def load_parameters(model: Model, state: dict[str, Tensor]) -> None:
    """Copy parameters stored under 3.x names into ``model`` (or, under 4.x, a bridge's own
    ``state_dict`` names: ``embed.weight``, ``blocks.0.attn.q.weight``, ...).

    Every parameter must be present with its shape; other entries (3.x buffers such as the
    attention mask) are ignored.

    Raises:
        HeadcoopError: a parameter is missing, unexpected or of the wrong shape.
    """
    if "embed.weight" in state:
        _load_bridge_state(model, state)
        return
    expected = {k: v.shape for k, v in parameters(model).items()}
    missing = sorted(set(expected) - set(state))
    if missing:
        raise HeadcoopError(f"missing parameter {missing[0]!r}")
    extra = sorted(k for k in state if k not in expected and not _is_buffer_name(k))
    if extra:
        raise HeadcoopError(f"unexpected parameter {extra[0]!r}")
    _check_shapes(expected, state)
    weights = {k: state[k] for k in expected}
    if TL_VERSION[0] == 4 and _rotates_halves(model.cfg):
        weights = _halves_to_pairs(weights, model.cfg)
    if TL_VERSION[0] == 3:
        model.load_state_dict(weights, strict=False)
    else:
        model.load_state_dict(convert_tl_checkpoint(weights, model.cfg), strict=True)


def _rotates_halves(cfg: Any) -> bool:
    """Whether 3.x rotates query and key dimensions i and i + rotary_dim/2 together (its
    default), where the 4.x bridge always rotates neighbours 2i and 2i + 1."""
    return cfg.positional_embedding_type == "rotary" and not cfg.rotary_adjacent_pairs


def _halves_to_pairs(weights: dict[str, Tensor], cfg: Any) -> dict[str, Tensor]:
    """3.x rotary weights re-ordered for the bridge: query and key dimension i goes to 2i and
    i + rotary_dim/2 to 2i + 1, which rotates the same pairs by the same angles (scores are
    sums over dimensions, so the order is free)."""
    half = (cfg.rotary_dim or cfg.d_head) // 2
    order = torch.arange(2 * half).view(2, half).T.reshape(-1)
    order = torch.cat([order, torch.arange(2 * half, cfg.d_head)])
    query_key = (".attn.W_Q", ".attn.W_K", ".attn.b_Q", ".attn.b_K")
    return {k: v[..., order] if k.endswith(query_key) else v for k, v in weights.items()}


def _load_bridge_state(model: Model, state: dict[str, Tensor]) -> None:
    """Load a 4.x bridge's own state dict, checked name by name and shape by shape."""
    if TL_VERSION[0] == 3:
        raise HeadcoopError(
            "the weights use TransformerBridge names (embed.weight, ...): load them under "
            "transformer-lens 4, or save them under 3.x names"
        )
    expected = {k: v.shape for k, v in model.state_dict().items()}
    differ = sorted(set(expected) ^ set(state))
    if differ:
        kind = "missing" if differ[0] in expected else "unexpected"
        raise HeadcoopError(f"{kind} parameter {differ[0]!r}")
    _check_shapes(expected, state)
    model.load_state_dict(state, strict=True)


def _check_shapes(expected: dict[str, torch.Size], state: dict[str, Tensor]) -> None:
    """Refuse the first parameter whose shape is not the one the config gives."""
    for name, shape in expected.items():
        if state[name].shape != shape:
            raise HeadcoopError(
                f"parameter {name!r} has shape {tuple(state[name].shape)}, the config gives "
                f"{tuple(shape)}"
            )


BUFFER_SUFFIXES = (".attn.mask", ".attn.IGNORE", ".rotary_sin", ".rotary_cos")
"""Entries of a 3.x state dict that are buffers, not parameters (each attention layer's mask
and IGNORE value, rotary tables): rebuilt from the config, never loaded."""


def _is_buffer_name(name: str) -> bool:
    return name.endswith(BUFFER_SUFFIXES)


def attention_scale(model: Model, layer: int = 0) -> float:
    """The divisor of layer ``layer``'s attention scores (sqrt(d_head) unless the config says
    otherwise)."""
    attn = model.blocks[layer].attn
    return float(attn.attn_scale if TL_VERSION[0] == 3 else attn.original_component.scale)


def attention_scores(
    model: Model, cache: ActivationCache, layer: int
) -> Float[Tensor, "batch head query key"]:
    """Layer ``layer``'s attention scores, from a cache of ``model`` holding its ``hook_q`` and
    ``hook_k`` (`score_hooks`): q.k / `attention_scale`, with -inf above the diagonal (what
    3.x's ``hook_attn_scores`` holds)."""
    q, k = cache[f"blocks.{layer}.attn.hook_q"], cache[f"blocks.{layer}.attn.hook_k"]
    scores = torch.einsum("bqhd,bkhd->bhqk", q, k) / attention_scale(model, layer)
    n = scores.shape[-1]
    above = torch.ones(n, n, dtype=torch.bool, device=scores.device).triu(1)
    return scores.masked_fill(above, float("-inf"))


def score_hooks(layer: int) -> tuple[str, str]:
    """The hooks `attention_scores` reads (for a ``names_filter``)."""
    return f"blocks.{layer}.attn.hook_q", f"blocks.{layer}.attn.hook_k"
