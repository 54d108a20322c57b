"""Checkpoints that plain TransformerLens users can read.

A checkpoint is a directory:

- ``model.safetensors``: the model's parameters under TransformerLens 3.x names (``embed.W_E``,
  ``blocks.0.attn.W_Q``, ...), written and read alike under transformer-lens 3 and 4; a 3.x
  ``HookedTransformer`` takes them with ``load_state_dict(..., strict=False)`` (the attention
  mask buffers are not stored);
- ``config.json``: ``{"model": <HookedTransformerConfig kwargs>, "task": {"name", "vocab", ...},
  "train": {...}, "metrics": {...}, "weights_sha256": ...}``; a model section may leave out
  any field (TransformerLens's default applies), and every section but ``model`` is optional;
- ``optimizer.safetensors`` (optional): optimizer state, for resuming a training run.

`load_checkpoint` also reads a plain TransformerLens checkpoint: a config.json holding
HookedTransformerConfig fields at its top level, and the weights as model.safetensors or a torch
file (`TORCH_WEIGHTS`, read with ``weights_only=True``), under 3.x names or a 4.x bridge's own.

Directories are written under a temporary name and renamed into place, so a killed run never
leaves a half-written checkpoint. Nothing is unpickled on load.

A training run directory holds ``epoch_NNNN/`` checkpoints and, once training completes, a
``final`` link to the last one; `load_checkpoint` accepts the run directory for its final
checkpoint.
"""

import errno
import hashlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import safetensors
import torch
from safetensors.torch import load_file, save_file

from headcoop.compat import (
    TL_VERSION,
    Model,
    attention_scale,
    bridge_shapes,
    load_parameters,
    new_bridge,
    new_model,
    parameters,
    to_device,
)
from headcoop.device import Device, resolve_device
from headcoop.errors import HeadcoopError
from headcoop.files import atomic_path, read_json, umask
from headcoop.loading.fields import check_model_config, model_kwargs
from headcoop.loading.weights import (
    compare,
    finite_floats,
    iter_shapes,
    load_torch,
    parameter_count,
    read_header,
    read_safetensors,
    with_defaults,
)
from headcoop.memory import check_bytes
from headcoop.model import freeze_positions
from headcoop.tasks.base import Task, task_from_config

CONFIG = "config.json"
WEIGHTS = "model.safetensors"
TORCH_WEIGHTS = ("model.pt", "model.pth", "pytorch_model.bin", "model.bin")
"""Where a plain TransformerLens checkpoint may keep its weights instead (a torch state dict)."""
OPTIMIZER = "optimizer.safetensors"
FINAL = "final"
CHECKSUM = "weights_sha256"
"""config.json's entry holding the SHA-256 of model.safetensors: a flipped byte in the weights
is refused on load instead of silently changing a number (checked where present, so that
checkpoints written by other tools load too)."""
TASK_CHECKSUM = "task_sha256"
"""config.json's entry holding the SHA-256 of its task section (an edited split would change
what the model is evaluated on)."""
OPTIMIZER_CHECKSUM = "optimizer_sha256"
"""config.json's entry holding the SHA-256 of optimizer.safetensors, checked on resume."""
_EPOCH_DIR = re.compile(r"epoch_(\d+)$")


def epoch_dir(run: str | Path, epoch: int) -> Path:
    """Where a run keeps its checkpoint of ``epoch``."""
    return Path(run) / f"epoch_{epoch:04d}"


def save_checkpoint(
    path: str | Path,
    model: Model,
    meta: dict[str, Any],
    optimizer_state: dict[str, Any] | None = None,
) -> Path:
    """Write ``model`` and its metadata to the directory ``path``, atomically.

    Args:
        path: the checkpoint directory; an existing one is replaced.
        model: the model whose state dict is saved.
        meta: the ``task``, ``train`` and ``metrics`` sections of config.json; ``model`` is
            filled in from ``model.cfg``.
        optimizer_state: a ``torch.optim`` state dict, saved for resuming.
    """
    path = Path(path)
    config = {"model": _hooked_kwargs(model), **meta}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        _save_tensors(_tensors(parameters(model)), tmp / WEIGHTS)
        config[CHECKSUM] = _sha256(tmp / WEIGHTS)
        if "task" in config:
            config[TASK_CHECKSUM] = _section_sha256(config["task"])
        if optimizer_state is not None:
            tensors, layout = _flatten_optimizer(optimizer_state)
            _save_tensors(tensors, tmp / OPTIMIZER, {"layout": json.dumps(layout)})
            config[OPTIMIZER_CHECKSUM] = _sha256(tmp / OPTIMIZER)
        (tmp / CONFIG).write_text(json.dumps(config, indent=2) + "\n")
        _seal(tmp)
        if path.exists():
            trash = Path(tempfile.mkdtemp(prefix=f".{path.name}.old.", dir=path.parent))
            os.replace(path, trash / "ckpt")
            os.replace(tmp, path)
            shutil.rmtree(trash)
        else:
            os.replace(tmp, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return path


def _save_tensors(
    tensors: dict[str, torch.Tensor], file: Path, metadata: dict[str, str] | None = None
) -> None:
    """safetensors' ``save_file``, with a failed write raised as the ``OSError`` it is (the
    library wraps it in its own error, which would hide a full disk)."""
    try:
        save_file(tensors, file, metadata=metadata)
    except safetensors.SafetensorError as exc:
        text = str(exc)
        full = "StorageFull" in text or "code: 28" in text
        code, reason = (errno.ENOSPC, "No space left on device") if full else (errno.EIO, text)
        raise OSError(code, reason, str(file)) from None


def mark_final(run: str | Path, checkpoint: str | Path) -> Path:
    """Point ``run/final`` at ``checkpoint`` (atomically replacing an older link)."""
    run = Path(run)
    link = run / FINAL
    tmp = run / f".{FINAL}.tmp"
    tmp.unlink(missing_ok=True)
    os.symlink(Path(checkpoint).name, tmp)
    os.replace(tmp, link)
    return link


def clear_run(run: str | Path) -> None:
    """Remove a training run's checkpoints and ``final`` link from ``run`` (other files stay).
    An epoch that is a symlink loses the link only: what it points at is never touched."""
    run = Path(run)
    (run / FINAL).unlink(missing_ok=True)
    for child in run.iterdir():
        if not _EPOCH_DIR.match(child.name):
            continue
        if child.is_symlink():
            child.unlink()
        elif child.is_dir():
            shutil.rmtree(child)


def load_checkpoint(path: str | Path, device: Device = None) -> tuple[Model, dict[str, Any]]:
    """Load a model onto ``device`` (see `headcoop.device`), with its metadata (the parsed
    config.json).

    ``path`` is a checkpoint directory, or a training run directory (its final checkpoint).
    Works for any checkpoint in this format, whoever wrote it, and for a plain TransformerLens
    checkpoint (see the module docstring). Everything is checked before anything is built or
    read: every config field by `headcoop.loading.fields`, the memory it asks for, then the
    weights file's names and shapes against the config (`headcoop.loading.weights`).

    Raises:
        HeadcoopError: the directory, config or weights are missing or corrupt, the weights do
            not fit the config, or the config asks for what headcoop cannot run.
    """
    device = resolve_device(device)
    path = resolve_checkpoint(path)
    config = read_config(path)
    kwargs = model_section(config, path / CONFIG)
    if not isinstance(config.get("task", {}), dict):
        raise HeadcoopError(f"{path / CONFIG}: the 'task' section is not an object")
    _check_checksums(config, path)
    check_memory(kwargs, f"{path / CONFIG}")
    file = _weights_file(path)
    state, bridge = _read_weights(file, kwargs, config)
    model = new_bridge(kwargs) if bridge else new_model(kwargs)
    try:
        load_parameters(model, state)
    except HeadcoopError as exc:
        raise HeadcoopError(f"{file} does not fit config.json: {exc}") from None
    if model.cfg.positional_embedding_type == "standard" and not model.pos_embed.W_pos.any():
        freeze_positions(model)
    _check_vocab(config.get("task", {}), model, path)
    model.eval()
    return to_device(model, device), config


def load_with_task(
    path: str | Path, task: Task | None = None, device: Device = None
) -> tuple[Model, Task, dict[str, Any]]:
    """`load_checkpoint`, and the task to measure it on: ``task`` if given (a checkpoint that
    names none, or another task with the same vocabulary), else the checkpoint's own."""
    model, config = load_checkpoint(path, device)
    task = task if task is not None else task_from_config(config.get("task", {}))
    check_fits(model, task)
    return model, task, config


def check_fits(model: Model, task: Task) -> None:
    """Refuse, in one line, a model whose vocabulary cannot run ``task``: its embedding must
    have one row per token of the task's vocabulary (a task of the model's own token ids,
    such as `headcoop.tasks.PromptTask`, needs only every id it names to exist and its
    longest prompt to fit the context)."""
    if getattr(task, "open_vocab", False) and len(task.vocab) <= model.cfg.d_vocab:
        if task.longest() > model.cfg.n_ctx:
            raise HeadcoopError(
                f"a prompt has {task.longest()} tokens, the model's context {model.cfg.n_ctx}"
            )
        return
    if model.cfg.d_vocab != len(task.vocab):
        raise HeadcoopError(
            f"the model has {model.cfg.d_vocab} tokens, task {task.name!r} has "
            f"{len(task.vocab)}: it was not trained on this task"
        )


def model_section(config: dict[str, Any], where: Path) -> dict[str, Any]:
    """The model's config keyword arguments, every field checked (`model_kwargs`):
    headcoop's ``model`` section, or the HookedTransformerConfig fields at the top level of a
    plain TransformerLens config.json (other top-level entries are ignored)."""
    if "model" in config:
        if not isinstance(config["model"], dict):
            raise HeadcoopError(f"{where}: the 'model' section is not an object")
        return model_kwargs(config["model"], str(where))
    if "d_model" not in config:
        raise HeadcoopError(
            f"{where}: no 'model' section, nor TransformerLens config fields at the top level"
        )
    plain = {k: v for k, v in config.items() if k not in _HEADCOOP_ENTRIES}
    return model_kwargs(plain, str(where), top_level=True)


_HEADCOOP_ENTRIES = frozenset(
    {"task", "train", "metrics", CHECKSUM, TASK_CHECKSUM, OPTIMIZER_CHECKSUM}
)


def _weights_file(path: Path) -> Path:
    """The checkpoint's weights: model.safetensors, else the first of `TORCH_WEIGHTS`."""
    for name in (WEIGHTS, *TORCH_WEIGHTS):
        if (path / name).is_file():
            return path / name
    raise HeadcoopError(f"{path}: missing {WEIGHTS} (or it is not a regular file)")


def _read_weights(
    file: Path, kwargs: dict[str, Any], config: dict[str, Any]
) -> tuple[dict[str, torch.Tensor], bool]:
    """The parameters of a weights file, compared with what the config implies before any
    tensor is read (a torch file: before any is materialised), and whether they are under a
    4.x bridge's own names."""
    if file.name != WEIGHTS:
        _check_weights_sum(config, file)
        state = load_torch(file, parameter_count(kwargs))
        names, bridge = _compare(state, {k: tuple(v.shape) for k, v in state.items()}, kwargs, file)
        return finite_floats(state, names, file), bridge
    header = read_header(file)
    names, bridge = _compare(header, {k: s for k, (_, s, _) in header.items()}, kwargs, file)
    _check_weights_sum(config, file)
    return read_safetensors(file, names), bridge


def _compare(
    entries: Any, found: dict[str, tuple[int, ...]], kwargs: dict[str, Any], file: Path
) -> tuple[list[str], bool]:
    """The parameters' names once ``found`` fits the config under whichever names the file
    uses, and whether they are a bridge's."""
    bridge = _bridge_names(entries, file)
    if bridge:
        _check_layers(found, kwargs["n_layers"], file)  # before a model is built to compare
    expected = bridge_shapes(kwargs).items() if bridge else iter_shapes(kwargs)
    return compare(found, expected, file), bridge


def _check_layers(names: Any, n_layers: int, file: Path) -> None:
    """The weights hold blocks 0 to n_layers - 1, no more, no fewer."""
    layers = {n.split(".")[1] for n in names if n.startswith("blocks.")}
    if layers != {str(k) for k in range(min(n_layers, len(layers) + 1))} or len(layers) != n_layers:
        raise HeadcoopError(
            f"{file} does not fit config.json: it holds {len(layers)} blocks, the config "
            f"gives {n_layers}"
        )


def _check_weights_sum(config: dict[str, Any], file: Path) -> None:
    if CHECKSUM in config and config[CHECKSUM] != _sha256(file):
        raise HeadcoopError(
            f"{file} does not match the checksum in {CONFIG}: the file is corrupt or "
            "was changed after saving"
        )


def _bridge_names(names: Any, file: Path) -> bool:
    """Whether weights are stored under a 4.x bridge's names (``embed.weight``, ...), which
    only transformer-lens 4 builds."""
    bridge = "embed.weight" in names
    if bridge and TL_VERSION[0] == 3:
        raise HeadcoopError(
            f"{file}: the weights use TransformerBridge names (embed.weight, ...): load them "
            "under transformer-lens 4, or save them under 3.x names"
        )
    return bridge


def _check_vocab(task: dict[str, Any], model: Model, path: Path) -> None:
    if "vocab" in task and (
        not isinstance(task["vocab"], list) or len(task["vocab"]) != model.cfg.d_vocab
    ):
        raise HeadcoopError(
            f"vocabulary mismatch in {path}: the task's vocab {task['vocab']!r:.60} does not "
            f"have the model's {model.cfg.d_vocab} tokens"
        )


def _check_checksums(config: dict[str, Any], path: Path) -> None:
    """Refuse a task section changed after saving (checked where the checksum is present)."""
    if TASK_CHECKSUM in config and config[TASK_CHECKSUM] != _section_sha256(config.get("task")):
        raise HeadcoopError(
            f"{path / CONFIG}: the task section does not match its checksum: it was changed "
            "after saving"
        )


def check_memory(kwargs: dict[str, Any], what: str) -> int:
    """The bytes a checked model section asks for (its parameters, as `parameter_count`
    counts them, and one layer's attention scores over a full context), refused with one line
    above the budget (`headcoop.memory.memory_budget`). Checked before anything is built.

    Raises:
        HeadcoopError: the total is over budget.
    """
    full = with_defaults(kwargs)
    scores = (full["n_heads"] + 1) * full["n_ctx"] ** 2
    need = 4 * (parameter_count(kwargs) + scores)
    check_bytes(need, f"{what}: the model (its sizes and n_ctx)")
    return need


def resolve_checkpoint(path: str | Path) -> Path:
    """The checkpoint directory that ``path`` names (a run directory resolves to its final)."""
    path = Path(path)
    if not path.exists():
        raise HeadcoopError(f"no checkpoint at {path}: it does not exist")
    if not (path / CONFIG).exists() and (path / FINAL).exists():
        path = (path / FINAL).resolve()
    if not (path / CONFIG).exists():
        unfinished = bool(run_checkpoints(path))
        hint = " (an unfinished run: pass one of its epoch_* directories)" if unfinished else ""
        raise HeadcoopError(f"no checkpoint at {path}: missing {CONFIG}{hint}")
    return path


def read_config(path: Path) -> dict[str, Any]:
    """The parsed config.json of a checkpoint directory (a regular file of bounded size)."""
    config = read_json(path / CONFIG, "checkpoint config")
    if not isinstance(config, dict):
        raise HeadcoopError(f"{path / CONFIG} is corrupt: expected a JSON object")
    return config


def run_checkpoints(run: str | Path) -> list[tuple[int, Path]]:
    """The complete ``epoch_NNNN`` checkpoints of a run directory, by epoch."""
    run = Path(run)
    if not run.is_dir():
        return []
    found = []
    for child in run.iterdir():
        match = _EPOCH_DIR.match(child.name)
        if match and (child / CONFIG).exists():
            found.append((int(match.group(1)), child))
    return sorted(found)


def load_optimizer_state(path: str | Path) -> dict[str, Any]:
    """The optimizer state dict saved beside a checkpoint's weights (checked against the
    checksum in config.json, where present)."""
    file = Path(path) / OPTIMIZER
    if not file.is_file():
        raise HeadcoopError(f"{Path(path)}: missing {OPTIMIZER}, cannot resume from it")
    expected = read_config(Path(path)).get(OPTIMIZER_CHECKSUM)
    if expected is not None and expected != _sha256(file):
        raise HeadcoopError(f"{file} does not match its checksum in {CONFIG}: it is corrupt")
    try:
        tensors = load_file(file)
        with safetensors.safe_open(file, framework="pt") as handle:
            layout = json.loads(handle.metadata()["layout"])
        return _unflatten_optimizer(tensors, layout)
    except (safetensors.SafetensorError, OSError, KeyError, TypeError, ValueError) as exc:
        raise HeadcoopError(
            f"{file} is corrupt: {str(exc).splitlines()[0] if str(exc) else exc!r}"
        ) from None


def _flatten_optimizer(state_dict: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict]:
    """Split a torch optimizer state dict into named tensors and a JSON layout."""
    tensors, keys = {}, {}
    for index, param_state in state_dict["state"].items():
        keys[str(index)] = sorted(param_state)
        for key, value in param_state.items():
            tensors[f"{index}.{key}"] = torch.as_tensor(value).contiguous()
    return tensors, {"state": keys, "param_groups": state_dict["param_groups"]}


def _unflatten_optimizer(tensors: dict[str, torch.Tensor], layout: dict) -> dict[str, Any]:
    """Rebuild the torch optimizer state dict that `_flatten_optimizer` split."""
    state = {
        int(index): {key: tensors[f"{index}.{key}"] for key in keys}
        for index, keys in layout["state"].items()
    }
    return {"state": state, "param_groups": layout["param_groups"]}


def _hooked_kwargs(model: Model) -> dict[str, Any]:
    """The config keyword arguments that rebuild ``model``, as 3.x reads them: headcoop's
    own section for its models (unchanged since the first checkpoints), and every other field
    of `BUILT` where the model differs from TransformerLens's default."""
    cfg = model.cfg
    check_model_config(cfg)
    kwargs = {k: getattr(cfg, k) for k in _SECTION}
    kwargs["default_prepend_bos"] = False
    if not cfg.attn_only:
        kwargs |= {"d_mlp": cfg.d_mlp, "act_fn": cfg.act_fn}
    kwargs |= {k: getattr(cfg, k) for k, v in _DEFAULTS.items() if getattr(cfg, k, v) != v}
    if cfg.positional_embedding_type == "rotary":
        kwargs["rotary_dim"] = cfg.rotary_dim or cfg.d_head
        kwargs["rotary_adjacent_pairs"] = bool(TL_VERSION[0] == 4 or cfg.rotary_adjacent_pairs)
    scale = attention_scale(model)
    if abs(scale - cfg.d_head**0.5) > 1e-12:
        kwargs["attn_scale"] = scale
    return kwargs


_SECTION = (
    *("n_layers", "d_model", "n_heads", "d_head", "n_ctx", "d_vocab", "attn_only"),
    *("normalization_type", "positional_embedding_type"),
)
"""The fields of every model section headcoop writes, in the order it always wrote them."""

_DEFAULTS = {"eps": 1e-5, "final_rms": False, "rotary_base": 10000}
"""Further fields written where a model differs from TransformerLens's default (the
attention scale and the rotary layout are written from what the model computes)."""


def _tensors(named: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Detached, contiguous copies that safetensors can write."""
    return {k: v.detach().contiguous() for k, v in named.items()}


def _sha256(file: Path) -> str:
    """The SHA-256 of a file, read in blocks (a large file is never held whole)."""
    digest = hashlib.sha256()
    with open(file, "rb") as handle:
        for block in iter(lambda: handle.read(2**20), b""):
            digest.update(block)
    return digest.hexdigest()


def _section_sha256(section: Any) -> str:
    """The SHA-256 of a config section, as canonical JSON."""
    return hashlib.sha256(json.dumps(section, sort_keys=True).encode()).hexdigest()


def _seal(directory: Path) -> None:
    """Sync a new checkpoint directory's files to disk and give them the user's umask
    (mkdtemp and safetensors create them private)."""
    mask = umask()
    for file in directory.iterdir():
        with open(file, "rb") as handle:
            os.fsync(handle.fileno())
        os.chmod(file, 0o666 & ~mask)
    os.chmod(directory, 0o777 & ~mask)


def save_stack(
    path: str | Path,
    states: Sequence[dict[str, torch.Tensor]],
    meta: dict[str, Any],
    optimizer_state: dict[str, Any],
) -> Path:
    """Write the state of models trained side by side to one file, atomically, for resuming.

    The file holds each model's parameters (``states``, under 3.x names, as `parameters`
    gives them) as ``"{i}/{name}"``, the shared optimizer state (``"optimizer/..."``) and
    ``meta`` (JSON); `load_stack` reads it back.
    """
    path = Path(path)
    tensors = {f"{i}/{k}": v for i, state in enumerate(states) for k, v in _tensors(state).items()}
    opt_tensors, layout = _flatten_optimizer(optimizer_state)
    tensors.update({f"optimizer/{k}": v for k, v in opt_tensors.items()})
    with atomic_path(path) as tmp:
        _save_tensors(tensors, tmp, {"meta": json.dumps(meta), "layout": json.dumps(layout)})
    return path


def load_stack(
    path: str | Path,
) -> tuple[list[dict[str, torch.Tensor]], dict[str, Any], dict[str, Any]]:
    """Read a `save_stack` file: the models' state dicts, ``meta`` and the optimizer state."""
    try:
        tensors = load_file(path)
        with safetensors.safe_open(path, framework="pt") as handle:
            header = handle.metadata()
        meta, layout = json.loads(header["meta"]), json.loads(header["layout"])
    except (safetensors.SafetensorError, OSError, KeyError, json.JSONDecodeError) as exc:
        raise HeadcoopError(f"{path} is corrupt: {exc}") from None
    by_owner: dict[str, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        owner, name = key.split("/", 1)
        by_owner.setdefault(owner, {})[name] = value
    optimizer = by_owner.pop("optimizer", {})
    states = [by_owner[str(i)] for i in range(len(by_owner))]
    return states, meta, _unflatten_optimizer(optimizer, layout)
