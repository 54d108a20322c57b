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
    named = [t for r in task.readouts for t in r.candidates]
    named += [t for ratio in task.attention_ratios.values() for t in ratio]
    unknown = sorted({t for t in named if t not in task.vocab})
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
    if name not in _TASKS:
        raise HeadcoopError(f"unknown task {name!r}; known tasks: {', '.join(sorted(_TASKS))}")
    try:
        task = _TASKS[name](**params)
    except TypeError as exc:  # an unknown parameter, or (under a type checker) a mistyped one
        first = next(iter(str(exc).strip().splitlines()), type(exc).__name__)
        raise HeadcoopError(f"bad parameters for task {name!r}: {first}") from None
    return check_task(task)


def task_from_config(config: Any) -> Task:
    """Rebuild a task from `Task.to_config` output.

    The rebuilt task must describe itself exactly as stored: a vocabulary that changed, or a
    parameter that is missing (it would silently take its default) is refused.
    """
    if not isinstance(config, dict) or not isinstance(config.get("name"), str):
        raise HeadcoopError(f"task config needs a 'name', got {config!r:.80}")
    params = dict(config)
    name, vocab = params.pop("name"), params.pop("vocab", None)
    task = make_task(name, **params)
    rebuilt = task.to_config()
    if vocab is not None and list(vocab) != list(task.vocab):
        raise HeadcoopError(
            f"vocabulary mismatch for task {name!r}: "
            f"stored {list(vocab)}, the task has {list(task.vocab)}"
        )
    missing = sorted(k for k in rebuilt if k not in config and k != "vocab")
    if missing:
        raise HeadcoopError(f"task config of {name!r} lacks {', '.join(missing)}")
    return task


def split_generator(seed: int, split: str) -> torch.Generator:
    """The generator that draws split ``split`` of a task with data seed ``seed``: each split
    has its own stream, so that changing one split's size leaves the others unchanged."""
    if split not in SPLITS:
        raise HeadcoopError(f"unknown split {split!r}; choose one of {SPLITS}")
    return torch.Generator().manual_seed(seed * len(SPLITS) + SPLITS.index(split))
