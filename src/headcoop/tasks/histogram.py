"""Histogram: every position predicts how often its token has occurred so far.

The histogram task of Behrens, Biggio and Zdeborová (2024, "Understanding counting in small
transformers"), in its causal form: a sequence of ``length`` letters drawn uniformly from
``letters`` letters, and at position k the target is the number of times the letter at k occurs
among positions 1..k (a count token "1".."length"). Unlike Count01 it is not a majority vote,
every position is scored, and the decision the head analyzers study is the last position, where
the count covers the whole sequence.

No bags: every position is scored and each sees a different prefix, so one count vector per
example does not describe what the model computes. Sequences are short, so full sequences cost
little.
"""

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from jaxtyping import Int

from headcoop.config import SEED, SPLIT_SIZE, Rule
from headcoop.errors import HeadcoopError
from headcoop.memory import check_bytes
from headcoop.tasks.base import Batch, Readout, register_task, split_generator
from headcoop.tasks.counting import quote

LETTERS = "abcdefghijklmnopqrstuvwxyz"


@register_task
@dataclass(frozen=True)
class Histogram:
    """How often has this token occurred so far? Every position is scored (Behrens et al. 2024).

    Args:
        seed: seed of the data.
        letters: size of the alphabet (at most 26).
        length: letters per sequence; the counts run from 1 to ``length``.
        size: examples in each split.

    >>> task = Histogram(length=4)
    >>> ids = task.parse("abaa")
    >>> [task.vocab[t] for t in task.targets(torch.tensor([ids[1:]]) - 1)[0]]
    ['1', '1', '2', '3']
    """

    seed: int = 0
    letters: int = 4
    length: int = 8
    size: int = 2000

    name = "histogram"
    attention_ratios: ClassVar[dict] = {}
    supports_bags: ClassVar[bool] = False

    def __post_init__(self) -> None:
        SEED.check("histogram: seed", self.seed)
        Rule(int, 2, len(LETTERS)).check("histogram: letters", self.letters)
        Rule(int, 2, 512).check("histogram: length", self.length)
        SPLIT_SIZE.check("histogram: size", self.size)
        check_bytes(32 * self.size * self.length, "histogram: size x length (one split's data)")

    @property
    def decision(self) -> int:
        """The last position: its count covers the whole sequence."""
        return self.length - 1

    @property
    def vocab(self) -> tuple[str, ...]:
        return ("[BOS]", *LETTERS[: self.letters], *self.count_tokens)

    @property
    def count_tokens(self) -> tuple[str, ...]:
        return tuple(str(c) for c in range(1, self.length + 1))

    @property
    def readouts(self) -> tuple[Readout, ...]:
        return tuple(Readout(f"pos{k}", self.count_tokens) for k in range(1, self.length + 1))

    def split(self, name: str) -> Int[torch.Tensor, "example length"]:
        """The letters (0 .. letters-1) of each example of split ``name``."""
        gen = split_generator(self.seed, name)
        return torch.randint(0, self.letters, (self.size, self.length), generator=gen)

    def counts_so_far(
        self, examples: Int[torch.Tensor, "example length"]
    ) -> Int[torch.Tensor, "example length"]:
        """At each position, how many of positions 1..k hold the letter at k."""
        same = examples[:, :, None] == examples[:, None, :]  # [example k j]
        return (same & torch.ones_like(same).tril()).sum(-1)

    def targets(
        self, examples: Int[torch.Tensor, "example length"]
    ) -> Int[torch.Tensor, "example length"]:
        return self.counts_so_far(examples) + self.letters  # "1" has id letters + 1

    def sequences(self, examples: Int[torch.Tensor, "example length"]) -> Batch:
        """``[BOS] x1 .. xL``, scored at every letter."""
        n = len(examples)
        tokens = torch.cat([torch.zeros(n, 1, dtype=torch.long), examples + 1], dim=1)
        read_pos = torch.arange(1, self.length + 1).repeat(n, 1)
        return Batch(tokens, read_pos, self.targets(examples))

    def bags(self, examples: torch.Tensor) -> Batch:
        raise HeadcoopError("the histogram task has no bags: every position sees another prefix")

    def lengths(
        self, examples: Int[torch.Tensor, "example length"]
    ) -> Int[torch.Tensor, " example"]:
        return torch.full((len(examples),), self.length + 1)

    def parse(self, text: str) -> list[int]:
        """Token ids of a string of ``length`` letters (with or without a leading ``[BOS]``).

        Raises:
            HeadcoopError: naming the position of a bad letter, or a wrong length.
        """
        body = text.removeprefix("[BOS]")
        offset = len(text) - len(body)
        for i, char in enumerate(body):
            if char not in LETTERS[: self.letters]:
                where = offset + i
                raise HeadcoopError(
                    f"bad token {char!r} at position {where} in {quote(text, where)}: "
                    f"expected one of {LETTERS[: self.letters]}"
                )
        if len(body) != self.length:
            raise HeadcoopError(
                f"{quote(text, len(text))} has {len(body)} letters at position {len(text)}: "
                f"expected {self.length}"
            )
        return [0, *(LETTERS.index(c) + 1 for c in body)]

    def format(self, ids: list[int]) -> str:
        """The letters of a token-id sequence, the inverse of `parse`."""
        return "".join(self.vocab[i] for i in ids if i != 0)

    def to_config(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "vocab": list(self.vocab),
            "seed": self.seed,
            "letters": self.letters,
            "length": self.length,
            "size": self.size,
        }
