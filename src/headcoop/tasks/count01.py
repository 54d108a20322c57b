"""Count01: ``[BOS] {0,1,2}* = {4,5} [EOS]``, with 4 iff the string has more 1s than 0s.

An example is stored as its token counts ``(n0, n1, n2)``: with no positional embedding the
order of the tokens before '=' does not change what the model computes, so full sequences are
drawn by shuffling only when they are asked for.
"""

from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from jaxtyping import Int

from headcoop.errors import HeadcoopError
from headcoop.tasks.base import Batch, register_task

VOCAB = ("[BOS]", "0", "1", "2", "=", "4", "5", "[EOS]")
BOS, ZERO, ONE, TWO, EQUALS, FOUR, FIVE, EOS = range(len(VOCAB))
SPLIT_NAMES = ("train", "val", "test")


@dataclass(frozen=True)
class SplitSpec:
    """Size of a split and the inclusive ranges its counts are drawn from (uniformly, each
    count independently)."""

    size: int
    n01: tuple[int, int]
    n2: tuple[int, int]

    def __post_init__(self) -> None:
        if self.size < 1:
            raise HeadcoopError(f"split size must be positive, got {self.size}")
        for name, (lo, hi) in (("n01", self.n01), ("n2", self.n2)):
            if not 0 <= lo <= hi:
                raise HeadcoopError(f"split range {name}={lo, hi} must satisfy 0 <= lo <= hi")


def _paper_splits() -> dict[str, SplitSpec]:
    return {
        "train": SplitSpec(7000, n01=(0, 100), n2=(0, 100)),
        "val": SplitSpec(1500, n01=(101, 150), n2=(0, 150)),
        "test": SplitSpec(1500, n01=(151, 200), n2=(0, 200)),
    }


def answer(n0: torch.Tensor, n1: torch.Tensor) -> torch.Tensor:
    """The answer token id: '4' if there are more 1s than 0s, else '5' (ties give '5')."""
    return torch.where(n1 > n0, FOUR, FIVE)


@register_task
@dataclass(frozen=True)
class Count01:
    """The Count01 task with the paper's splits (train 7,000, val 1,500, test 1,500).

    Validation and test counts lie above any seen in training, so accuracy there measures
    counting that extrapolates.

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
    vocab = VOCAB
    read_names = ("answer", "eos")
    supports_bags = True
    decision_tokens = ("4", "5")
    attention_ratios: ClassVar = {"w01": ("=", "0", "1"), "w02": ("=", "0", "2")}

    def __post_init__(self) -> None:
        splits = {
            k: v if isinstance(v, SplitSpec) else _split_from_json(k, v)
            for k, v in self.splits.items()
        }
        if set(splits) != set(SPLIT_NAMES):
            raise HeadcoopError(f"Count01 needs splits {SPLIT_NAMES}, got {tuple(splits)}")
        object.__setattr__(self, "splits", splits)

    def split(self, name: str) -> Int[torch.Tensor, "example 3"]:
        """Counts ``(n0, n1, n2)`` of each example of split ``name``."""
        if name not in self.splits:
            raise HeadcoopError(f"unknown split {name!r}; choose one of {SPLIT_NAMES}")
        spec = self.splits[name]
        gen = torch.Generator().manual_seed(self.seed * len(SPLIT_NAMES) + SPLIT_NAMES.index(name))
        n01 = torch.randint(spec.n01[0], spec.n01[1] + 1, (spec.size, 2), generator=gen)
        n2 = torch.randint(spec.n2[0], spec.n2[1] + 1, (spec.size, 1), generator=gen)
        return torch.cat([n01, n2], dim=1)

    def lengths(self, examples: Int[torch.Tensor, "example 3"]) -> Int[torch.Tensor, " example"]:
        """Input length of each full sequence: [BOS], the counted tokens, '=' and the answer."""
        return examples.sum(dim=1) + 3

    def targets(self, examples: Int[torch.Tensor, "example 3"]) -> Int[torch.Tensor, "example 2"]:
        """The answer after '=' and the [EOS] after the answer."""
        ans = answer(examples[:, 0], examples[:, 1])
        return torch.stack([ans, torch.full_like(ans, EOS)], dim=1)

    def bags(self, examples: Int[torch.Tensor, "example 3"]) -> Batch:
        """``[BOS] 0 1 2 = a`` with multiplicities ``1 n0 n1 n2 1 1``; scored at '=' and a."""
        n = examples.shape[0]
        targets = self.targets(examples)
        tokens = torch.tensor([BOS, ZERO, ONE, TWO, EQUALS, 0]).repeat(n, 1)
        tokens[:, 5] = targets[:, 0]
        mult = torch.ones(n, 6)
        mult[:, 1:4] = examples.float()
        read_pos = torch.tensor([4, 5]).repeat(n, 1)
        return Batch(tokens, read_pos, targets, mult)

    def sequences(self, examples: Int[torch.Tensor, "example 3"], seed: int = 0) -> Batch:
        """Full sequences ``[BOS] <shuffled 0s, 1s, 2s> = a``, right-padded with [EOS].

        The order of the counted tokens is drawn from ``seed``; it does not change the model's
        outputs (no positional information), only which positions hold which token.
        """
        n = examples.shape[0]
        body_len = examples.sum(dim=1)
        width = int(body_len.max()) if n else 0
        slot = torch.arange(width)
        # A random permutation of each row's valid slots: sort random keys, invalid slots last.
        keys = torch.rand(n, width, generator=torch.Generator().manual_seed(seed))
        keys = keys.masked_fill(slot >= body_len[:, None], 2.0)
        order = keys.argsort(dim=1)
        bounds = examples.cumsum(dim=1)  # slot index < n0 -> '0', < n0+n1 -> '1', else '2'
        token_type = (order[:, :, None] >= bounds[:, None, :2]).sum(dim=2)
        body = torch.where(slot < body_len[:, None], ZERO + token_type, EOS)

        targets = self.targets(examples)
        tokens = torch.cat([torch.full((n, 1), BOS), body, torch.full((n, 2), EOS)], dim=1)
        rows = torch.arange(n)
        tokens[rows, body_len + 1] = EQUALS
        tokens[rows, body_len + 2] = targets[:, 0]
        read_pos = torch.stack([body_len + 1, body_len + 2], dim=1)
        return Batch(tokens, read_pos, targets)

    def parse(self, text: str) -> list[int]:
        """Token ids of a Count01 string, in short form (``0121=4``) or with ``[BOS]``/``[EOS]``.

        Raises:
            HeadcoopError: naming the position (character offset) and token that break the
                grammar, or a wrong answer.
        """
        ids, starts = _tokenize(text)
        if ids[:1] != [BOS]:
            ids, starts = [BOS, *ids], [0, *starts]
        if ids[-1] != EOS:
            ids, starts = [*ids, EOS], [*starts, len(text)]
        k = 1
        while ids[k] in (ZERO, ONE, TWO):
            k += 1
        eq = k
        stages = (((EQUALS,), "0, 1, 2 or '='"), ((FOUR, FIVE), "'4' or '5'"), ((EOS,), "[EOS]"))
        for allowed, expected in stages:
            if k == len(ids) or ids[k] not in allowed:
                raise HeadcoopError(_unexpected(text, ids, starts, k, f"expected {expected}"))
            k += 1
        if k != len(ids):
            raise HeadcoopError(_unexpected(text, ids, starts, k, "expected nothing after [EOS]"))
        n0, n1 = ids.count(ZERO), ids.count(ONE)
        expected = int(answer(torch.tensor(n0), torch.tensor(n1)))
        if ids[eq + 1] != expected:
            why = f"wrong answer: {n1} 1s and {n0} 0s need {VOCAB[expected]!r}"
            raise HeadcoopError(_unexpected(text, ids, starts, eq + 1, why))
        return ids

    def format(self, ids: list[int]) -> str:
        """Short form of a token-id sequence, the inverse of `parse`."""
        return "".join(VOCAB[i] for i in ids if i not in (BOS, EOS))

    def examples(self, texts: list[str]) -> Int[torch.Tensor, "example 3"]:
        """Counts ``(n0, n1, n2)`` of Count01 strings, validated with `parse`."""
        rows = []
        for text in texts:
            ids = self.parse(text)
            rows.append([ids.count(ZERO), ids.count(ONE), ids.count(TWO)])
        return torch.tensor(rows, dtype=torch.long).reshape(-1, 3)

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
        return SplitSpec(int(raw["size"]), tuple(raw["n01"]), tuple(raw["n2"]))
    except (KeyError, TypeError, ValueError):
        raise HeadcoopError(f"split {name!r} needs size, n01 and n2, got {raw!r}") from None


def _tokenize(text: str) -> tuple[list[int], list[int]]:
    """Token ids and the character offset where each starts."""
    ids, starts, i = [], [], 0
    while i < len(text):
        word = next((w for w in ("[BOS]", "[EOS]") if text.startswith(w, i)), text[i])
        if word not in VOCAB:
            raise HeadcoopError(f"bad token {word!r} at position {i} in {text!r}")
        ids.append(VOCAB.index(word))
        starts.append(i)
        i += len(word)
    return ids, starts


def _unexpected(text: str, ids: list[int], starts: list[int], k: int, why: str) -> str:
    """One-line message for token ``k`` (or the end of the string) breaking the grammar."""
    if k == len(ids) or starts[k] == len(text):
        return f"{text!r} ends too early at position {len(text)}: {why}"
    return f"bad token {VOCAB[ids[k]]!r} at position {starts[k]} in {text!r}: {why}"
