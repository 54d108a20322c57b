"""Weights files checked before they are read, and read one tensor at a time.

`expected_shapes` derives every parameter's name and shape from a model section without
allocating anything (a formula for TransformerLens 3.x names, TransformerLens's own model built
on torch's meta device for a 4.x bridge's names). A weights file is then compared with it
before any tensor is read:

- safetensors: the header (at most 16 MiB) is validated by type and range (offsets a pair of
  ordered whole numbers inside the data, shapes lists of non-negative whole numbers, dtypes
  floating point and one per file) and compared name by name, shape by shape; then the
  tensors are read one by one through ``safe_open``;
- torch files: read with ``weights_only=True`` (nothing but tensors is unpickled) and memory
  mapped, after the archive's unpacked size is bounded; every value must be a dense strided
  floating-point tensor under a string key, whose storage holds it exactly.

A refused file costs a header read (or an archive listing), never the tensors.
"""

import math
import zipfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import safetensors
import torch

from headcoop.compat import BUFFER_SUFFIXES
from headcoop.errors import HeadcoopError
from headcoop.files import parse_json
from headcoop.loading.fields import final_normalization

MAX_HEADER = 2**24
"""The longest safetensors header read (16 MiB: a header of millions of tensors is refused)."""

FLOAT_DTYPES = {"F16": 2, "BF16": 2, "F32": 4, "F64": 8}
"""The safetensors dtypes a parameter may be stored in, with their sizes in bytes."""
BUFFER_DTYPES = {**FLOAT_DTYPES, "BOOL": 1, "U8": 1, "I8": 1, "I16": 2, "I32": 4, "I64": 8}
"""What a buffer (`BUFFER_SUFFIXES`: 3.x's attention mask, say) may be stored in."""


Shapes = dict[str, tuple[int, ...]]


def with_defaults(kwargs: dict[str, Any]) -> dict[str, Any]:
    """A checked model section with TransformerLens's defaults for the fields that shape
    parameters (``n_heads`` -1 is d_model // d_head, ``d_mlp`` None is 4 x d_model)."""
    full = {
        "n_heads": -1,
        "d_mlp": None,
        "attn_only": False,
        "normalization_type": "LN",
        "positional_embedding_type": "standard",
        "act_fn": "relu",
        "final_rms": False,
        **kwargs,
    }
    if full["n_heads"] == -1:
        full["n_heads"] = full["d_model"] // full["d_head"]
    if full["d_mlp"] is None:
        full["d_mlp"] = 4 * full["d_model"]
    return full


def _norm(prefix: str, kind: str | None, width: int) -> Shapes:
    """A normalization's parameters: LayerNorm a weight and a bias, RMSNorm a weight."""
    if kind == "LN":
        return {f"{prefix}.w": (width,), f"{prefix}.b": (width,)}
    return {f"{prefix}.w": (width,)} if kind == "RMS" else {}


def expected_shapes(kwargs: dict[str, Any]) -> Shapes:
    """Every parameter of the model a section describes, under TransformerLens 3.x names,
    with its shape (what ``HookedTransformer(cfg).named_parameters()`` holds).

    >>> shapes = expected_shapes({"d_model": 8, "d_head": 4, "n_layers": 1, "n_ctx": 5,
    ...                           "d_vocab": 7, "attn_only": True, "normalization_type": None})
    >>> shapes["blocks.0.attn.W_Q"], shapes["unembed.W_U"], len(shapes)
    ((2, 8, 4), (8, 7), 12)
    """
    return dict(iter_shapes(kwargs))


def iter_shapes(kwargs: dict[str, Any]) -> Iterator[tuple[str, tuple[int, ...]]]:
    """`expected_shapes` one parameter at a time, layer by layer (a config of a million
    layers is compared with a header without listing them all)."""
    c = with_defaults(kwargs)
    d, v = c["d_model"], c["d_vocab"]
    yield "embed.W_E", (v, d)
    if c["positional_embedding_type"] == "standard":
        yield "pos_embed.W_pos", (c["n_ctx"], d)
    for layer in range(c["n_layers"]):
        yield from _block(f"blocks.{layer}", c).items()
    yield from _norm("ln_final", final_normalization(SimpleNamespace(**c)), d).items()
    yield from {"unembed.W_U": (d, v), "unembed.b_U": (v,)}.items()


def _block(at: str, c: dict[str, Any]) -> Shapes:
    d, h, k, norm = c["d_model"], c["n_heads"], c["d_head"], c["normalization_type"]
    shapes = _norm(f"{at}.ln1", norm, d)
    shapes |= {f"{at}.attn.W_{x}": (h, d, k) for x in "QKV"}
    shapes |= {f"{at}.attn.W_O": (h, k, d), f"{at}.attn.b_O": (d,)}
    shapes |= {f"{at}.attn.b_{x}": (h, k) for x in "QKV"}
    if not c["attn_only"]:
        m = c["d_mlp"]
        shapes |= _norm(f"{at}.ln2", norm, d)
        shapes |= {f"{at}.mlp.W_in": (d, m), f"{at}.mlp.b_in": (m,)}
        shapes |= {f"{at}.mlp.W_out": (m, d), f"{at}.mlp.b_out": (d,)}
        if c["act_fn"] == "solu_ln":
            shapes |= _norm(f"{at}.mlp.ln", "LN", m)
    return shapes


def parameter_count(kwargs: dict[str, Any]) -> int:
    """How many numbers the model's parameters hold (the one parameter count), from one
    layer's shapes: a config of a million layers is counted, not listed."""
    one = expected_shapes({**kwargs, "n_layers": 1})
    block = sum(math.prod(s) for name, s in one.items() if name.startswith("blocks."))
    rest = sum(math.prod(s) for name, s in one.items() if not name.startswith("blocks."))
    return rest + kwargs["n_layers"] * block


def read_header(file: Path) -> dict[str, tuple[str, tuple[int, ...], tuple[int, int]]]:
    """A safetensors file's tensors as {name: (dtype, shape, (start, end))}, every field
    checked by type and range and the offsets against the file's size, no tensor read.

    Raises:
        HeadcoopError: naming the first entry that is malformed.
    """
    size = file.stat().st_size
    with open(file, "rb") as handle:
        raw = handle.read(8)
        length = int.from_bytes(raw, "little") if len(raw) == 8 else -1
        if not 0 < length <= min(size - 8, MAX_HEADER):
            raise HeadcoopError(f"{file} is corrupt: not a safetensors file")
        header = parse_json(handle.read(length), f"{file}'s header")
    if not isinstance(header, dict):
        raise HeadcoopError(f"{file} is corrupt: its header is not an object")
    entries = {}
    for name, entry in header.items():
        if name != "__metadata__":
            entries[name] = _header_entry(name, entry, file)
    _check_layout(entries, size - 8 - length, file)
    return entries


def _header_entry(
    name: str, entry: Any, file: Path
) -> tuple[str, tuple[int, ...], tuple[int, int]]:
    """One header entry, checked: a float dtype, a shape of whole numbers, ordered offsets
    spanning exactly the tensor's bytes."""
    bad = f"{file} is corrupt: tensor {name!r:.60}"
    if not isinstance(entry, dict):
        raise HeadcoopError(f"{bad} is not described by an object")
    dtype, shape, offsets = entry.get("dtype"), entry.get("shape"), entry.get("data_offsets")
    sizes = BUFFER_DTYPES if name.endswith(BUFFER_SUFFIXES) else FLOAT_DTYPES
    if not isinstance(dtype, str) or dtype not in sizes:
        raise HeadcoopError(f"{bad} has dtype {dtype!r:.20}, not a floating-point type")
    if not isinstance(shape, list) or not all(_whole(n) for n in shape) or len(shape) > 8:
        raise HeadcoopError(f"{bad} has shape {shape!r:.60}, not a list of whole numbers")
    if not (isinstance(offsets, list) and len(offsets) == 2 and all(_whole(n) for n in offsets)):
        raise HeadcoopError(f"{bad} has offsets {offsets!r:.60}, not two whole numbers")
    start, end = offsets
    if end - start != math.prod(shape) * sizes[dtype]:
        raise HeadcoopError(f"{bad} has offsets {offsets} that do not span its shape {shape}")
    return dtype, tuple(shape), (start, end)


def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**62


def _check_layout(entries: dict, data_size: int, file: Path) -> None:
    """The tensors tile the data after the header exactly, in one dtype."""
    spans = sorted(span for _, _, span in entries.values())
    position = 0
    for start, end in spans:
        if start != position:
            raise HeadcoopError(f"{file} is corrupt: its tensors overlap or leave gaps")
        position = end
    if position != data_size:
        raise HeadcoopError(
            f"{file} holds {data_size:,} bytes of data, but its header describes {position:,}"
        )
    dtypes = {d for name, (d, _, _) in entries.items() if not name.endswith(BUFFER_SUFFIXES)}
    if len(dtypes) > 1:
        raise HeadcoopError(f"{file} mixes dtypes {sorted(dtypes)}: a tensor was relabelled")


def compare(
    found: Shapes, expected: Iterable[tuple[str, tuple[int, ...]]], file: Path
) -> list[str]:
    """The parameters' names, in order, once every one is found with its shape and nothing
    else is (buffers aside); else the first missing, mis-shaped or unexpected one, refused.
    ``expected`` is consumed only until the first missing name."""
    names = {n for n in found if not n.endswith(BUFFER_SUFFIXES)}
    order = []
    for name, shape in expected:
        if name not in names:
            raise HeadcoopError(f"{file} does not fit config.json: missing parameter {name!r}")
        if tuple(found[name]) != tuple(shape):
            raise HeadcoopError(
                f"{file} does not fit config.json: parameter {name!r} has shape "
                f"{tuple(found[name])}, the config gives {tuple(shape)}"
            )
        order.append(name)
    extra = names - set(order)
    if extra:
        raise HeadcoopError(
            f"{file} does not fit config.json: unexpected parameter {sorted(extra)[0]!r:.80}"
        )
    return order


def read_safetensors(file: Path, names: list[str]) -> dict[str, torch.Tensor]:
    """The named tensors of a checked safetensors file, read one by one, as finite float32."""
    state = {}
    try:
        with safetensors.safe_open(file, framework="pt") as handle:
            for name in names:
                state |= finite_floats({name: handle.get_tensor(name)}, [name], file)
    except (safetensors.SafetensorError, OSError) as exc:
        raise HeadcoopError(f"{file} is corrupt: {exc}") from None
    return state


def load_torch(file: Path, n_parameters: int) -> dict[str, torch.Tensor]:
    """A torch state dict, memory mapped, checked before and after ``torch.load``: its
    archive unpacks to at most twice the size of ``n_parameters`` float32 numbers (plus a
    MiB), and every entry is a dense float tensor under a string key that its storage holds
    exactly. Its names are compared by the caller (`compare`), its values read by
    `finite_floats`."""
    _check_archive(file, 8 * n_parameters + 2**20)
    try:
        mmap = zipfile.is_zipfile(file)
        state = torch.load(file, map_location="cpu", weights_only=True, mmap=mmap)
    except Exception as exc:  # torch raises many types for a file it cannot read
        raise HeadcoopError(f"{file} is not a torch state dict: {str(exc)[:120]}") from None
    if not isinstance(state, dict):
        raise HeadcoopError(f"{file} is not a state dict of tensors")
    for key, value in state.items():
        _check_tensor(key, value, file)
    return state


def finite_floats(
    state: dict[str, torch.Tensor], names: list[str], file: Path
) -> dict[str, torch.Tensor]:
    """The named tensors as float32, each finite and of sane magnitude (`MAX_WEIGHT`)."""
    return {name: _finite(state[name].float(), name, file) for name in names}


def _check_archive(file: Path, bound: int) -> None:
    size = file.stat().st_size
    if not zipfile.is_zipfile(file):
        if size > bound:
            raise HeadcoopError(f"{file} is {size:,} bytes, too large for its config")
        return
    try:
        with zipfile.ZipFile(file) as archive:
            unpacked = sum(info.file_size for info in archive.infolist())
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise HeadcoopError(f"{file} is corrupt: {exc}") from None
    if unpacked > bound:
        raise HeadcoopError(
            f"{file} unpacks to {unpacked:,} bytes, too large for its config ({bound:,} at most)"
        )


def _check_tensor(key: Any, value: Any, file: Path) -> None:
    """A parameter as a torch file may hold it: a dense, strided, floating-point tensor that
    its storage holds exactly (a zero-stride view of a few bytes would expand to gigabytes)."""
    if not isinstance(key, str):
        raise HeadcoopError(f"{file}: key {key!r:.40} is not a parameter name")
    if not isinstance(value, torch.Tensor):
        raise HeadcoopError(f"{file}: {key!r:.60} is not a tensor")
    if value.layout != torch.strided or value.is_quantized:
        raise HeadcoopError(f"{file}: tensor {key!r:.60} is not dense ({value.layout})")
    if not value.dtype.is_floating_point and not key.endswith(BUFFER_SUFFIXES):
        raise HeadcoopError(f"{file}: tensor {key!r:.60} holds {value.dtype}, not floats")
    stored = value.untyped_storage().nbytes()
    if not value.is_contiguous() or value.numel() * value.element_size() > stored:
        raise HeadcoopError(f"{file}: tensor {key!r:.60} is not stored densely")


MAX_WEIGHT = 1e12
"""The largest magnitude a parameter may hold: a product of two such weights stays far inside
float32's range (weights of 3e38 are finite, their logits are not), and a diverged training
run's checkpoints still load."""


def _finite(tensor: torch.Tensor, name: str, file: Path) -> torch.Tensor:
    if not torch.isfinite(tensor).all():
        raise HeadcoopError(f"{file}: tensor {name!r} holds NaN or infinite values")
    if tensor.numel() and tensor.abs().max() > MAX_WEIGHT:
        raise HeadcoopError(f"{file}: tensor {name!r} holds values beyond {MAX_WEIGHT:g}")
    return tensor
