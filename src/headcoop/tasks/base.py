"""The Task protocol: what the model, engine, trainer and analyzers need to know about a task.

A task is a formal language whose strings end in a few scored predictions (in Count01: the
answer after '=' and the [EOS] after the answer). It hands out its examples in two forms that the
engine treats alike:

- full sequences: ordinary token sequences, right-padded (padding after the last scored
  position is invisible to causal attention);
- bags (optional): one position per token type with a multiplicity, exact for models without
  positional information and with one attention layer when every scored position's prefix is
  known by its token counts (see `headcoop.engine.bags`).
"""

from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import torch
from jaxtyping import Float, Int

from headcoop.errors import HeadcoopError


@dataclass(frozen=True)
class Batch:
    """Inputs and scored predictions for a batch of examples.

    Attributes:
        tokens: input token ids.
        read_pos: the positions whose next-token prediction is scored, one column per entry of
            the task's ``read_names``.
        targets: the correct next token at each scored position.
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


@runtime_checkable
class Task(Protocol):
    """A toy language for one-layer transformers.

    Examples are whatever the task stores per string (Count01 stores token counts), as a tensor
    whose first axis runs over examples.
    """

    name: str
    vocab: tuple[str, ...]
    read_names: tuple[str, ...]
    """What each scored position predicts, e.g. ``("answer", "eos")``. The first is the decision
    that the head analyzers study."""

    def split(self, name: str) -> torch.Tensor:
        """The examples of a named split ('train', 'val' or 'test'), deterministic."""
        ...

    supports_bags: bool
    """Whether `bags` is available: every scored position's prefix is known by its counts."""

    decision_tokens: tuple[str, ...]
    """The tokens that the first scored position chooses between (Count01: '4' and '5')."""

    attention_ratios: dict[str, tuple[str, str, str]]
    """Named per-token attention ratios worth reporting, as (query, numerator, denominator)
    tokens: Count01 has w01 = ('=', '0', '1') and w02 = ('=', '0', '2'). May be empty."""
    """Whether `bags` is available: every scored position's prefix is known by its counts."""

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


_TASKS: dict[str, type] = {}


def register_task(cls: type) -> type:
    """Class decorator: make a task constructible by name (for checkpoints and the CLI)."""
    _TASKS[cls.name] = cls
    return cls


def make_task(name: str, **params: Any) -> Task:
    """Build a registered task from its name and parameters.

    >>> make_task("count01").vocab[:4]
    ('[BOS]', '0', '1', '2')
    """
    if name not in _TASKS:
        raise HeadcoopError(f"unknown task {name!r}; known tasks: {', '.join(sorted(_TASKS))}")
    try:
        return _TASKS[name](**params)
    except TypeError as exc:
        raise HeadcoopError(f"bad parameters for task {name!r}: {exc}") from None


def task_from_config(config: dict[str, Any]) -> Task:
    """Rebuild a task from `Task.to_config` output, checking that its vocabulary is unchanged."""
    params = dict(config)
    name, vocab = params.pop("name", None), params.pop("vocab", None)
    if name is None:
        raise HeadcoopError("task config has no 'name'")
    task = make_task(name, **params)
    if vocab is not None and tuple(vocab) != task.vocab:
        raise HeadcoopError(
            f"vocabulary mismatch for task {name!r}: "
            f"stored {list(vocab)}, the task has {list(task.vocab)}"
        )
    return task
