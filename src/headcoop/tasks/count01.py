"""Count01: ``[BOS] {0,1,2}* = {4,5} [EOS]``, with 4 iff the string has more 1s than 0s."""

from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from jaxtyping import Int

from headcoop.config import COUNT, SEED, SPLIT_SIZE
from headcoop.errors import HeadcoopError
from headcoop.tasks.base import SPLITS, register_task, split_generator
from headcoop.tasks.counting import CountingLanguage

VOCAB = ("[BOS]", "0", "1", "2", "=", "4", "5", "[EOS]")
BOS, ZERO, ONE, TWO, EQUALS, FOUR, FIVE, EOS = range(len(VOCAB))


@dataclass(frozen=True)
class SplitSpec:
    """Size of a split and the inclusive ranges its counts are drawn from (uniformly, each
    count independently)."""

    size: int
    n01: tuple[int, int]
    n2: tuple[int, int]

    def __post_init__(self) -> None:
        SPLIT_SIZE.check("split size", self.size)
        for name, bounds in (("n01", self.n01), ("n2", self.n2)):
            if len(bounds) != 2:
                raise HeadcoopError(f"split range {name} must be [low, high], got {bounds!r:.40}")
            lo, hi = (COUNT.check(f"split range {name}", value) for value in bounds)
            if not lo <= hi:
                raise HeadcoopError(f"split range {name}={lo, hi} must satisfy 0 <= lo <= hi")


def _paper_splits() -> dict[str, SplitSpec]:
    return {
        "train": SplitSpec(7000, n01=(0, 100), n2=(0, 100)),
        "val": SplitSpec(1500, n01=(101, 150), n2=(0, 150)),
        "test": SplitSpec(1500, n01=(151, 200), n2=(0, 200)),
    }


QUICK_SPLITS = {
    "train": {"size": 600, "n01": (0, 100), "n2": (0, 100)},
    "val": {"size": 200, "n01": (101, 150), "n2": (0, 150)},
    "test": {"size": 300, "n01": (151, 200), "n2": (0, 200)},
}
"""The paper's count ranges with few examples: the splits of every ``--quick`` pipeline check."""


def answer(n0: torch.Tensor, n1: torch.Tensor) -> torch.Tensor:
    """The answer token id: '4' if there are more 1s than 0s, else '5' (ties give '5')."""
    return torch.where(n1 > n0, FOUR, FIVE)


@register_task
@dataclass(frozen=True)
class Count01(CountingLanguage):
    """The paper's counting language: are there more 1s than 0s before '='?

    The paper's splits are train 7,000, val 1,500 and test 1,500 examples. Validation and test
    counts lie above any seen in training, so accuracy there measures counting that
    extrapolates.

    Args:
        seed: seed of the data; each split is drawn from its own generator.
        splits: the three splits, as `SplitSpec`s or their JSON dicts; defaults to the paper's.

    >>> task = Count01()
    >>> task.split("train").shape
    torch.Size([7000, 3])
    >>> task.format(task.parse("0121=4"))
    '0121=4'
    """

    seed: int = 0
    splits: dict[str, SplitSpec | dict[str, Any]] = field(default_factory=_paper_splits)

    name = "count01"
    counted = ("0", "1", "2")
    answers = ("4", "5")
    attention_ratios: ClassVar = {"w01": ("=", "0", "1"), "w02": ("=", "0", "2")}

    def __post_init__(self) -> None:
        SEED.check("count01: seed", self.seed)
        if not isinstance(self.splits, dict):
            raise HeadcoopError(f"count01: splits must be an object, got {self.splits!r:.60}")
        splits = {
            k: v if isinstance(v, SplitSpec) else _split_from_json(k, v)
            for k, v in self.splits.items()
        }
        if set(splits) != set(SPLITS):
            raise HeadcoopError(f"Count01 needs splits {SPLITS}, got {tuple(splits)}")
        object.__setattr__(self, "splits", splits)

    def split(self, name: str) -> Int[torch.Tensor, "example 3"]:
        """Counts ``(n0, n1, n2)`` of each example of split ``name``."""
        gen = split_generator(self.seed, name)
        spec = self.splits[name]
        n01 = torch.randint(spec.n01[0], spec.n01[1] + 1, (spec.size, 2), generator=gen)
        n2 = torch.randint(spec.n2[0], spec.n2[1] + 1, (spec.size, 1), generator=gen)
        return torch.cat([n01, n2], dim=1)

    def answer_index(self, counts: Int[torch.Tensor, "example 3"]) -> Int[torch.Tensor, " example"]:
        """0 ('4') where there are more 1s than 0s, else 1 ('5')."""
        return answer(counts[:, 0], counts[:, 1]) - FOUR

    def to_config(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "vocab": list(self.vocab),
            "seed": self.seed,
            "splits": {
                k: {"size": v.size, "n01": list(v.n01), "n2": list(v.n2)}
                for k, v in self.splits.items()
            },
        }


def _split_from_json(name: str, raw: Any) -> SplitSpec:
    try:
        size, n01, n2 = raw["size"], tuple(raw["n01"]), tuple(raw["n2"])
    except (KeyError, TypeError):
        raise HeadcoopError(f"split {name!r} needs size, n01 and n2, got {raw!r:.80}") from None
    return SplitSpec(size, n01, n2)
