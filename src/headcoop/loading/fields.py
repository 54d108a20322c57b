"""Every TransformerLens config field, honoured or refused.

A checkpoint's model section holds ``HookedTransformerConfig`` keyword arguments (3.x; 4.x's
``TransformerBridgeConfig`` takes the same ones and a few of its own). headcoop reads each of
them by this table, under either version, before anything is built:

- `BUILT`: fields that shape the computation and that headcoop builds as TransformerLens
  defines them, each checked by its type and range (``eps`` a positive finite number, sizes
  whole numbers, ``act_fn`` one of the activations both versions compute alike, ...);
- `IGNORED`: fields that do not change what the model computes from token ids (a name, a
  tokenizer, a device, which hooks exist, the initialisation): dropped, and said once;
- `REFUSED`: fields that change the computation in ways headcoop does not follow; any value
  but the default is refused in one line that names the field and says what it means.

A field in none of the three is refused in a model section (TransformerLens itself would) and
ignored at the top level of a plain TransformerLens config.json, where other entries live too.
Nothing that changes the computation is ever dropped: `tests/test_fields.py` checks that the
table covers every field of the installed TransformerLens's config.
"""

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from headcoop.config import NORMALIZATIONS
from headcoop.errors import HeadcoopError

_log = logging.getLogger(__name__)

MAX_SIZE = 2**31 - 1
"""The largest size a config may name (each size is also bounded by the memory budget)."""

ACT_FNS = ("relu", "gelu", "gelu_new", "silu", "solu", "solu_ln")
"""MLP activations that TransformerLens 3 and 4 compute alike."""


@dataclass(frozen=True)
class Check:
    """What a built field accepts: ``accepts(value, section)``, said as ``expect``."""

    accepts: Callable[[Any, dict[str, Any]], bool]
    expect: str


def _whole(low: int, allow: tuple = ()) -> Check:
    def accepts(value: Any, _: dict) -> bool:
        if value in allow and not isinstance(value, bool):
            return True
        return isinstance(value, int) and not isinstance(value, bool) and low <= value <= MAX_SIZE

    extra = "".join(f" or {a!r}" for a in allow)
    return Check(accepts, f"a whole number >= {low}{extra}")


def _number(low: float, open_low: bool = True, allow: tuple = ()) -> Check:
    def accepts(value: Any, _: dict) -> bool:
        if isinstance(value, bool) or not isinstance(value, int | float):
            return False
        if value in allow:
            return True
        fine = math.isfinite(value) and abs(value) < 1e30
        return bool(fine and (value > low if open_low else value >= low))

    extra = "".join(f" or {a!r}" for a in allow)
    return Check(accepts, f"a finite number {'>' if open_low else '>='} {low:g}{extra}")


def _one_of(*choices: Any) -> Check:
    return Check(
        lambda value, _: any(value == c and type(value) is type(c) for c in choices),
        f"one of {', '.join(repr(c) for c in choices)}",
    )


def _rotary_dim(value: Any, section: dict[str, Any]) -> bool:
    if value is None:
        return True
    d_head = section.get("d_head")
    whole = isinstance(value, int) and not isinstance(value, bool)
    return (
        whole and value > 0 and value % 2 == 0 and (not isinstance(d_head, int) or value <= d_head)
    )


_BOOL = _one_of(True, False)

BUILT: dict[str, Check] = {
    "d_model": _whole(1),
    "d_head": _whole(1),
    "n_layers": _whole(1),
    "n_ctx": _whole(1),
    "n_heads": _whole(1, allow=(-1,)),
    "d_vocab": _whole(1),
    "d_mlp": Check(
        lambda v, _: v is None or _whole(1).accepts(v, _), "None or a whole number >= 1"
    ),
    "attn_only": _BOOL,
    "act_fn": _one_of(*ACT_FNS),
    "normalization_type": _one_of(None, *NORMALIZATIONS),
    "eps": _number(0.0),
    "positional_embedding_type": _one_of("standard", "rotary"),
    "rotary_dim": Check(_rotary_dim, "None or an even whole number in [2, d_head]"),
    "rotary_base": _number(0.0),
    "rotary_adjacent_pairs": _BOOL,
    "use_attn_scale": _BOOL,
    "attn_scale": _number(0.0, allow=(-1, -1.0)),
    "final_rms": _BOOL,
    "d_vocab_out": Check(
        lambda v, s: v in (-1, s.get("d_vocab")) and not isinstance(v, bool),
        "-1 or d_vocab: headcoop cannot run a separate output vocabulary",
    ),
    "initializer_range": _number(0.0, allow=(-1, -1.0)),
}
"""Fields that shape the computation, passed to TransformerLens once checked. ``d_vocab_out``
other than d_vocab is refused by its check: a separate output vocabulary."""

IGNORED = frozenset(
    {
        *("model_name", "tokenizer_name", "original_architecture", "architecture"),
        *("default_prepend_bos", "tokenizer_prepends_bos", "tokenizer_appends_eos"),
        *("default_padding_side", "trust_remote_code", "decoder_start_token_id"),
        *("device", "n_devices", "dtype", "load_in_4bit", "quantization_method"),
        "attn_implementation",
        *("use_attn_result", "use_split_qkv_input", "use_hook_mlp_in", "use_attn_in"),
        *("use_hook_tokens", "seed", "init_mode", "init_weights", "n_params"),
        *("from_checkpoint", "checkpoint_index", "checkpoint_label_type", "checkpoint_value"),
        *(
            "uses_rms_norm",
            "layer_norm_folding",
            "tie_word_embeddings",
            "ungroup_grouped_query_attention",
        ),
        *("rotary_base_local", "train_seq_length", "norm_topk_prob", "qk_norm_after_rope"),
        *("NTK_by_parts_low_freq_factor", "NTK_by_parts_high_freq_factor", "NTK_by_parts_factor"),
        *("NTK_original_ctx_len", "yarn_factor", "yarn_attention_factor", "yarn_beta_fast"),
        *("yarn_beta_slow", "yarn_original_max_position_embeddings", "yarn_truncate"),
        *("yarn_global_attn_only", "vision_hidden_size", "vision_num_layers"),
        *("vision_num_heads", "mm_tokens_per_image", "split_attention_weights"),
    }
)
"""Fields that do not change what a model computes from token ids: names and tokenizer
settings, where it runs and in which dtype (headcoop computes in float32), which hook points
exist, the initialisation (the weights are stored), and settings read only together with a
refused one (the NTK and YaRN factors, a local rotary base)."""

REFUSED: dict[str, tuple[Any, str]] = {
    "attention_dir": ("causal", "bidirectional attention"),
    "parallel_attn_mlp": (False, "attention and MLP in parallel"),
    "post_embedding_ln": (False, "a LayerNorm after the embedding"),
    "use_normalization_before_and_after": (False, "normalization after each sublayer too"),
    "gated_mlp": (False, "a gated MLP"),
    "n_key_value_heads": (None, "grouped-query attention"),
    "num_experts": (None, "a mixture of experts"),
    "experts_per_token": (None, "a mixture of experts"),
    "use_qk_norm": (False, "normalized queries and keys"),
    "clip_qkv": (None, "clipped queries, keys and values"),
    "use_logn_attn": (False, "log-n attention scaling"),
    "use_dynamic_ntk_rope": (False, "dynamic NTK rotary scaling"),
    "use_NTK_by_parts_rope": (False, "NTK-by-parts rotary scaling"),
    "use_yarn_rope": (False, "YaRN rotary scaling"),
    "rotary_scaling_factor": (1.0, "scaled rotary positions"),
    "rotary_interleaved_cos_sin": (False, "interleaved rotary tables"),
    "rope_scaling": (None, "scaled rotary positions"),
    "use_local_attn": (False, "local attention"),
    "window_size": (None, "local attention"),
    "attn_types": (None, "local attention"),
    "scale_attn_by_inverse_layer_idx": (False, "attention scaled by the layer's index"),
    "attn_scores_soft_cap": (-1.0, "soft-capped attention scores"),
    "output_logits_soft_cap": (-1.0, "soft-capped logits"),
    "use_attention_sinks": (False, "attention sinks"),
    "relative_attention_max_distance": (None, "relative attention"),
    "relative_attention_num_buckets": (None, "relative attention"),
    "rmsnorm_uses_offset": (False, "an offset RMSNorm"),
    "scale_embedding": (None, "a scaled embedding"),
    "per_layer_head_dim": (None, "heads of different sizes per layer"),
    "per_layer_num_key_value_heads": (None, "grouped-query attention"),
    "is_audio_model": (False, "an audio model"),
    "is_visual_model": (False, "a vision model"),
    "is_stateful": (False, "a state-space model"),
    "is_multimodal": (False, "a multimodal model"),
}
"""Fields headcoop cannot follow: (the value it runs, what another value means). A value equal
to the default is accepted and dropped; 4.x's soft caps of 0 mean 'off' too."""

_OFF_EQUIVALENTS = {"attn_scores_soft_cap": (0, 0.0, -1), "output_logits_soft_cap": (0, 0.0, -1)}


def model_kwargs(section: dict[str, Any], where: str, top_level: bool = False) -> dict[str, Any]:
    """The keyword arguments of a checkpoint's model section that headcoop builds, every one
    checked by `BUILT`; ignored fields said once (at INFO), refused ones in one line.

    Args:
        section: the model section, or a plain TransformerLens config.json's top level.
        where: the file, for messages.
        top_level: entries that are no config field are ignored (else refused).

    Raises:
        HeadcoopError: a refused field with another value than its default, a built field of
            the wrong type or range, or (in a model section) an unknown field.

    >>> model_kwargs({"d_model": 8, "d_head": 4, "n_layers": 1, "n_ctx": 4, "seed": 3}, "c")
    {'d_model': 8, 'd_head': 4, 'n_layers': 1, 'n_ctx': 4}
    """
    for name in ("d_model", "d_head", "n_layers", "n_ctx"):
        if name not in section:
            raise HeadcoopError(f"{where}: model setting {name!r} is missing")
    kwargs, ignored = {}, []
    for name, value in section.items():
        if name in BUILT:
            _check_built(name, value, section, where)
            kwargs[name] = value
        elif name in REFUSED:
            check_refused(name, value, where)
        elif name in IGNORED or top_level:
            ignored.append(name)
        else:
            raise HeadcoopError(f"{where}: {name!r} is not a TransformerLens config field")
    if ignored:
        _log.info("%s: not part of the computation, ignored: %s", where, ", ".join(ignored))
    return kwargs


def _check_built(name: str, value: Any, section: dict[str, Any], where: str) -> None:
    check = BUILT[name]
    if not check.accepts(value, section):
        raise HeadcoopError(
            f"{where}: model setting {name!r} must be {check.expect}, got {value!r:.60}"
        )


def check_refused(name: str, value: Any, where: str) -> None:
    """Refuse ``value`` of a `REFUSED` field unless it is the field's default (or an
    equivalent 'off')."""
    default, meaning = REFUSED[name]
    if (value == default and type(value) is type(default)) or value in _OFF_EQUIVALENTS.get(
        name, ()
    ):
        return
    if isinstance(default, float) and isinstance(value, int) and value == default:
        return
    raise HeadcoopError(f"{where}: headcoop cannot run {meaning} ({name}={value!r:.60})")


def final_normalization(cfg: Any) -> str | None:
    """The final normalization's kind: the blocks' (``normalization_type``), made an RMSNorm
    by ``final_rms`` ('LN' becomes 'RMS', 'LNPre' 'RMSPre')."""
    kind = cfg.normalization_type
    if getattr(cfg, "final_rms", False) and kind in ("LN", "LNPre"):
        return {"LN": "RMS", "LNPre": "RMSPre"}[kind]
    return kind


def check_model_config(cfg: Any, where: str = "the model") -> None:
    """The same rules for a model in memory (its ``cfg``): every refused field at its default,
    every built one in range.

    Raises:
        HeadcoopError: naming the first field headcoop cannot follow.
    """
    section = {name: getattr(cfg, name) for name in BUILT if hasattr(cfg, name)}
    for name in REFUSED:
        if hasattr(cfg, name):
            check_refused(name, getattr(cfg, name), where)
    if section.get("d_vocab_out", -1) not in (-1, cfg.d_vocab):
        raise HeadcoopError(
            f"{where}: headcoop cannot run a separate output vocabulary "
            f"(d_vocab_out={cfg.d_vocab_out}, d_vocab={cfg.d_vocab})"
        )
    for name, value in section.items():
        if (name in ("act_fn", "d_mlp") and cfg.attn_only) or name == "d_vocab_out":
            continue
        if name == "attn_scale" and isinstance(value, float) and value > 0:
            continue  # 3.x writes sqrt(d_head) back into the config
        _check_built(name, value, section, where)
