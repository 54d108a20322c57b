"""Plurality: ``[BOS] {a,b,c}* = {A,B,C} [EOS]``: the answer names the most frequent letter."""

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from jaxtyping import Int

from headcoop.config import SEED, SPLIT_SIZE, Rule
from headcoop.tasks.base import SPLITS, register_task, split_generator
from headcoop.tasks.counting import CountingLanguage


@register_task
@dataclass(frozen=True)
class Plurality(CountingLanguage):
    """Which of a, b, c occurs most? Three classes; a tie goes to the earlier letter.

    Training strings hold up to ``max_train`` of each letter; validation strings between
    ``max_train + 1`` and ``2 max_train``, test strings between ``2 max_train + 1`` and
    ``3 max_train``: as in Count01, the held-out splits test counting that extrapolates.

    Args:
        seed: seed of the data.
        size: examples in each split.
        max_train: the largest count of a letter in training.

    >>> task = Plurality()
    >>> task.format(task.parse("abcb=B"))
    'abcb=B'
    >>> task.readouts[0].candidates
    ('A', 'B', 'C')
    """

    seed: int = 0
    size: int = 2000
    max_train: int = 30

    name = "plurality"
    counted = ("a", "b", "c")
    answers = ("A", "B", "C")
    attention_ratios: ClassVar = {"w_ab": ("=", "a", "b"), "w_ac": ("=", "a", "c")}

    def __post_init__(self) -> None:
        SEED.check("plurality: seed", self.seed)
        SPLIT_SIZE.check("plurality: size", self.size)
        Rule(int, 1, 10**6).check("plurality: max_train", self.max_train)

    def split(self, name: str) -> Int[torch.Tensor, "example 3"]:
        """Counts ``(na, nb, nc)`` of each example of split ``name``."""
        gen = split_generator(self.seed, name)
        m = self.max_train
        lo, hi = ((0, m), (m + 1, 2 * m), (2 * m + 1, 3 * m))[SPLITS.index(name)]
        return torch.randint(lo, hi + 1, (self.size, 3), generator=gen)

    def answer_index(self, counts: Int[torch.Tensor, "example 3"]) -> Int[torch.Tensor, " example"]:
        """The most frequent letter (argmax returns the first of tied maxima)."""
        return counts.argmax(dim=1)

    def to_config(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "vocab": list(self.vocab),
            "seed": self.seed,
            "size": self.size,
            "max_train": self.max_train,
        }
