"""The Task protocol: everything the model, engines, trainer and analyzers know about a task.

A task is a toy language whose strings end in a few scored predictions, its *readouts*
(Count01: the answer after '=' and the [EOS] after the answer). Each readout declares the
tokens its prediction chooses among (its classes); one readout is *the decision* that the head
analyzers study (l-acc, ROC AUC and s-acc are measured there). A task hands out its examples in
two forms that the engines treat alike:

- full sequences: ordinary token sequences, right-padded (padding after the last scored
  position is invisible to causal attention);
- bags (optional): one position per token type with a multiplicity, exact for models without
  positional information and with one attention layer when every scored position's prefix is
  known by its token counts (see `headcoop.engine.bags`).

Nothing outside ``tasks/`` (and the paper's own figures) names a task's tokens: the analyzers
read them from the protocol.
"""

import logging
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import torch
from jaxtyping import Float, Int

from headcoop.errors import HeadcoopError


@dataclass(frozen=True)
class Readout:
    """A scored position of a task.

    Attributes:
        name: what the position predicts, e.g. ``"answer"``; metrics are reported under it.
        candidates: the tokens that its prediction chooses among, in a fixed order (the
            classes). Accuracy over them is an argmax over these logits only.
    """

    name: str
    candidates: tuple[str, ...]

    def __post_init__(self) -> None:
        if len(self.candidates) < 2 or len(set(self.candidates)) != len(self.candidates):
            raise HeadcoopError(
                f"readout {self.name!r} needs two or more distinct candidates, "
                f"got {self.candidates}"
            )


@dataclass(frozen=True)
class Batch:
    """Inputs and scored predictions for a batch of examples.

    Attributes:
        tokens: input token ids.
        read_pos: the positions whose prediction is scored, one column per readout.
        targets: the correct token at each scored position.
        multiplicity: how many copies of its token each position stands for; ``None`` for plain
            sequences (every position counts once). Zero removes a position.
    """

    tokens: Int[torch.Tensor, "batch pos"]
    read_pos: Int[torch.Tensor, "batch read"]
    targets: Int[torch.Tensor, "batch read"]
    multiplicity: Float[torch.Tensor, "batch pos"] | None = None

    def __len__(self) -> int:
        return self.tokens.shape[0]

    def __getitem__(self, index: slice | torch.Tensor) -> "Batch":
        """Select examples (rows), keeping every field aligned."""
        mult = None if self.multiplicity is None else self.multiplicity[index]
        return Batch(self.tokens[index], self.read_pos[index], self.targets[index], mult)

    @property
    def is_bag(self) -> bool:
        return self.multiplicity is not None

    def check(self, d_vocab: int, n_read: int | None = None) -> "Batch":
        """This batch, if compiled code may read it: integer tokens below ``d_vocab``, scored
        positions inside the sequences, one integer target below ``d_vocab`` per scored position
        (``n_read`` of them, where given) and one multiplicity per position.

        Raises:
            HeadcoopError: naming the first field that is wrong (a task's bug, caught before a
                kernel reads out of bounds).
        """
        n_read = self.read_pos.shape[-1] if n_read is None else n_read
        rows, length = len(self), self.tokens.shape[-1]
        expected = {
            "tokens": (self.tokens, (rows, length), 0, d_vocab),
            "read_pos": (self.read_pos, (rows, n_read), 0, length),
            "targets": (self.targets, (rows, n_read), 0, d_vocab),
        }
        for name, (tensor, shape, low, high) in expected.items():
            if tensor.dtype.is_floating_point or tensor.dtype == torch.bool:
                raise HeadcoopError(f"batch {name} must hold integers, not {tensor.dtype}")
            if tuple(tensor.shape) != shape:
                raise HeadcoopError(f"batch {name} has shape {tuple(tensor.shape)}, not {shape}")
            if tensor.numel() and (tensor.min() < low or tensor.max() >= high):
                raise HeadcoopError(f"batch {name} holds values outside [{low}, {high})")
        mult = self.multiplicity
        if mult is not None and (tuple(mult.shape) != (rows, length) or (mult < 0).any()):
            raise HeadcoopError("batch multiplicity must be one count >= 0 per position")
        return self

    def to(self, device: torch.device) -> "Batch":
        """The same batch on ``device``."""
        mult = None if self.multiplicity is None else self.multiplicity.to(device)
        return Batch(
            self.tokens.to(device), self.read_pos.to(device), self.targets.to(device), mult
        )


@runtime_checkable
class Task(Protocol):
    """A toy language for small attention-only transformers.

    Examples are whatever the task stores per string (Count01 stores token counts), as a tensor
    whose first axis runs over examples. A new task implements these members and, to be built
    by name from the CLI and from checkpoints, is decorated with `register_task`.
    """

    name: str
    vocab: tuple[str, ...]
    readouts: tuple[Readout, ...]
    """The scored positions, in the order of a batch's ``read`` axis."""
    decision: int
    """Index into `readouts` of the prediction that the head analyzers study."""
    attention_ratios: dict[str, tuple[str, str, str]]
    """Per-token attention ratios worth reporting, as (query, numerator, denominator) tokens:
    Count01 has w01 = ('=', '0', '1') and w02 = ('=', '0', '2'). May be empty."""
    supports_bags: bool
    """Whether `bags` is available: every scored position's prefix is known by its counts."""

    def split(self, name: str) -> torch.Tensor:
        """The examples of a named split ('train', 'val' or 'test'), deterministic."""
        ...

    def targets(self, examples: torch.Tensor) -> Int[torch.Tensor, "example read"]:
        """The correct token at each scored position."""
        ...

    def sequences(self, examples: torch.Tensor) -> Batch:
        """Full token sequences of ``examples``, right-padded."""
        ...

    def bags(self, examples: torch.Tensor) -> Batch:
        """Bag-compressed form of ``examples`` (only if `supports_bags`)."""
        ...

    def lengths(self, examples: torch.Tensor) -> torch.Tensor:
        """Length of each full input sequence (for batching by length)."""
        ...

    def to_config(self) -> dict[str, Any]:
        """JSON-ready description, stored in checkpoints; ``make_task(**it)`` rebuilds the task."""
        ...


_MEMBERS = (
    *("name", "vocab", "readouts", "decision", "attention_ratios", "supports_bags"),
    *("split", "targets", "sequences", "bags", "lengths", "to_config"),
)

SPLITS = ("train", "val", "test")
"""The split names every task answers to."""


def read_names(task: Task) -> tuple[str, ...]:
    """The names of the task's readouts, in order.

    >>> read_names(make_task("count01"))
    ('answer', 'eos')
    """
    return tuple(r.name for r in task.readouts)


def candidate_ids(task: Task, read: int) -> Int[torch.Tensor, " candidate"]:
    """Token ids of readout ``read``'s candidates, in their declared order.

    >>> candidate_ids(make_task("count01"), 0).tolist()
    [5, 6]
    """
    return torch.tensor([task.vocab.index(t) for t in task.readouts[read].candidates])


def check_task(task: Any) -> Task:
    """Check the declarations that code elsewhere relies on; return the task.

    Raises:
        HeadcoopError: naming the member that is missing or inconsistent.
    """
    missing = [m for m in _MEMBERS if not hasattr(task, m)]
    if missing:
        raise HeadcoopError(f"task {task!r} lacks {', '.join(missing)}")
    if not 0 <= task.decision < len(task.readouts):
        raise HeadcoopError(f"task {task.name!r}: decision {task.decision} is not a readout")
    named = {t for r in task.readouts for t in r.candidates}
    named |= {t for ratio in task.attention_ratios.values() for t in ratio}
    unknown = sorted(named - set(task.vocab))
    if unknown:
        raise HeadcoopError(f"task {task.name!r} names tokens outside its vocabulary: {unknown}")
    return task


_TASKS: dict[str, type] = {}


def register_task(cls: type) -> type:
    """Class decorator: make a task constructible by name (for checkpoints and the CLI).

    The class's docstring's first line describes it in ``headcoop tasks``.
    """
    _TASKS[cls.name] = cls
    return cls


def registered_tasks() -> dict[str, type]:
    """The registered task classes by name, sorted."""
    return dict(sorted(_TASKS.items()))


def make_task(name: str, **params: Any) -> Task:
    """Build a registered task from its name and parameters.

    >>> make_task("count01").vocab[:4]
    ('[BOS]', '0', '1', '2')
    """
    import headcoop.tasks  # noqa: F401  (registers headcoop's own tasks)

    if name not in _TASKS:
        raise HeadcoopError(f"unknown task {name!r}; known tasks: {', '.join(sorted(_TASKS))}")
    return _build(repr(name), _TASKS[name], params)


def _build(label: str, cls: type, params: dict[str, Any]) -> Task:
    """``cls(**params)``, checked; a researcher's own class (`headcoop.tasks.user`) behind its
    guard, an error raised in its constructor said in one line."""
    from headcoop.tasks.user import UserTask, failed, is_users, where_defined

    users = is_users(cls)
    label = where_defined(cls) if users else label
    try:
        task = cls(**params)
    except TypeError as exc:  # an unknown parameter, or (under a type checker) a mistyped one
        first = next(iter(str(exc).strip().splitlines()), type(exc).__name__)
        raise HeadcoopError(f"bad parameters for task {label}: {first}") from None
    except Exception as exc:  # a user's code may fail in any way
        if not users or isinstance(exc, HeadcoopError):
            raise
        raise failed(label, "__init__", exc) from exc
    return check_task(UserTask(task, label) if users else task)


def load_task(spec: str, **params: Any) -> Task:
    """A task by its registered name, or a user's own task class named as
    ``path/to/file.py:ClassName`` or ``package.module:ClassName``, built with ``params``.

    >>> load_task("headcoop.tasks.count01:Count01").name
    'count01'
    """
    if ":" not in spec:
        return make_task(spec, **params)
    where, _, class_name = spec.rpartition(":")
    module = _import_file(where) if where.endswith(".py") else _import_module(where)
    cls = getattr(module, class_name, None)
    if not isinstance(cls, type):
        raise HeadcoopError(f"task {spec!r}: {where} has no class {class_name!r}")
    return _build(repr(spec), cls, params)


def _import_module(name: str) -> Any:
    import importlib

    try:
        return importlib.import_module(name)
    except ImportError as exc:
        raise HeadcoopError(f"cannot import task module {name!r}: {exc}") from None


def _import_file(path: str) -> Any:
    """Import a Python file as a module of its own (its ``register_task`` calls register)."""
    import importlib.util
    import sys
    from pathlib import Path

    file = Path(path)
    if not file.is_file():
        raise HeadcoopError(f"no task file {path}: it does not exist")
    spec = importlib.util.spec_from_file_location(f"headcoop_user_task_{file.stem}", file)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # so that its classes know their file (and pickle)
    try:
        spec.loader.exec_module(module)
    except Exception as exc:  # a user's file may fail in any way; say where, in one line
        raise HeadcoopError(f"task file {path} failed to import: {exc!r:.160}") from None
    return module


def task_from_config(config: Any) -> Task:
    """Rebuild a task from `Task.to_config` output, or from any section that names the task:
    parameters it leaves out take the task's defaults (one warning line names them).

    A stored vocabulary must be the rebuilt task's: a model reads tokens by their ids.
    """
    if not isinstance(config, dict) or not isinstance(config.get("name"), str):
        raise HeadcoopError(
            "the checkpoint names no task: give one (--task NAME, or analyze(model, task))"
            if config in ({}, None)
            else f"task config needs a 'name', got {config!r:.80}"
        )
    params = dict(config)
    name, vocab = params.pop("name"), params.pop("vocab", None)
    task = make_task(name, **params)
    if vocab is not None and list(vocab) != list(task.vocab):
        raise HeadcoopError(
            f"vocabulary mismatch for task {name!r}: "
            f"stored {list(vocab)}, the task has {list(task.vocab)}"
        )
    missing = sorted(k for k in task.to_config() if k not in config and k != "vocab")
    if missing:
        logging.getLogger(__name__).warning(
            "task %r: %s not stored, the task's defaults used", name, ", ".join(missing)
        )
    return task


def order_keys(
    examples: Int[torch.Tensor, "example field"], width: int, seed: int = 0
) -> Int[torch.Tensor, "example slot"]:
    """Keys in [0, 2^52) for ``width`` slots of each example, a hash of the example itself,
    the slot and ``seed``: a stable argsort of them shuffles an example's tokens the same way
    in whatever batch, row or company it comes (a shuffle drawn per batch would not). Integer
    keys: rounded to floats, two slots of a long example would tie now and then.

    >>> rows = torch.tensor([[3, 1], [0, 2], [3, 1]])
    >>> keys = order_keys(rows, 4)
    >>> bool((keys[0] == keys[2]).all()), bool((keys[0] == keys[1]).all())
    (True, False)
    """
    state = torch.full((len(examples),), seed, dtype=torch.int64)
    for column in examples.long().T:  # a few fields: a loop over columns, not examples
        state = _mix(state ^ column)
    slots = _mix(state[:, None] + torch.arange(width) * _GOLDEN)
    return (slots >> 11) & (2**52 - 1)


_GOLDEN = -7046029254386353131  # 0x9E3779B97F4A7C15 as a signed 64-bit integer


def _mix(x: Int[torch.Tensor, "*shape"]) -> Int[torch.Tensor, "*shape"]:
    """SplitMix64's finaliser on int64 (products wrap; shifts masked to act unsigned)."""
    x = x + _GOLDEN
    x = (x ^ ((x >> 30) & (2**34 - 1))) * -4658895280553007687  # 0xBF58476D1CE4E5B9
    x = (x ^ ((x >> 27) & (2**37 - 1))) * -7723592293110705685  # 0x94D049BB133111EB
    return x ^ ((x >> 31) & (2**33 - 1))


def split_generator(seed: int, split: str) -> torch.Generator:
    """The generator that draws split ``split`` of a task with data seed ``seed``: each split
    has its own stream, so that changing one split's size leaves the others unchanged."""
    if split not in SPLITS:
        raise HeadcoopError(f"unknown split {split!r}; choose one of {SPLITS}")
    return torch.Generator().manual_seed(seed * len(SPLITS) + SPLITS.index(split))
