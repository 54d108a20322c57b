"""Induction: a block of random tokens, repeated; the repeat is predicted by looking back.

``[BOS] x1 .. xH x1 .. xH`` with x1..xH distinct tokens drawn at random. At the k-th token of
the repeat the next token x_{k+1} is predictable only from context: find the earlier x_k and
copy what followed it. Two-layer attention-only models with positional embeddings learn this
with a previous-token head in layer 0 and an induction head in layer 1 (Olsson et al. 2022),
the circuit that `headcoop.trace.components` traces.

No bags: positions matter here, so every example runs as a full sequence.
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


@register_task
@dataclass(frozen=True)
class Induction:
    """A random block of tokens, repeated: predict the repeat by looking back (induction).

    Args:
        seed: seed of the data.
        tokens: distinct content tokens ("t0", "t1", ...).
        half: tokens in the block (at most ``tokens``); the sequence is 2 half + 1 long.
        size: examples in each split.

    >>> task = Induction(tokens=5, half=3)
    >>> task.format(task.sequences(torch.tensor([[4, 0, 2]])).tokens[0].tolist())
    't4 t0 t2 t4 t0 t2'
    """

    seed: int = 0
    tokens: int = 24
    half: int = 8
    size: int = 4000

    name = "induction"
    attention_ratios: ClassVar[dict] = {}
    supports_bags: ClassVar[bool] = False

    def __post_init__(self) -> None:
        SEED.check("induction: seed", self.seed)
        Rule(int, 2, 1000).check("induction: tokens", self.tokens)
        Rule(int, 3, self.tokens).check("induction: half", self.half)
        SPLIT_SIZE.check("induction: size", self.size)
        check_bytes(12 * self.size * self.tokens, "induction: size x tokens (one split drawn)")

    @property
    def vocab(self) -> tuple[str, ...]:
        return ("[BOS]", *(f"t{i}" for i in range(self.tokens)))

    @property
    def readouts(self) -> tuple[Readout, ...]:
        """One per token of the repeat but the last: each predicts the token after it."""
        content = self.vocab[1:]
        return tuple(Readout(f"repeat{k}", content) for k in range(1, self.half))

    @property
    def decision(self) -> int:
        """The last readout: the head analyzers study the induction prediction there."""
        return self.half - 2

    def split(self, name: str) -> Int[torch.Tensor, "example half"]:
        """The block (distinct content-token indices) of each example of split ``name``."""
        gen = split_generator(self.seed, name)
        keys = torch.rand(self.size, self.tokens, generator=gen)
        return keys.argsort(dim=1)[:, : self.half]

    def targets(
        self, examples: Int[torch.Tensor, "example half"]
    ) -> Int[torch.Tensor, "example read"]:
        return examples[:, 1:] + 1  # the token after the k-th of the repeat, as an id

    def sequences(self, examples: Int[torch.Tensor, "example half"]) -> Batch:
        """``[BOS] block block``, scored at the repeat's tokens but the last."""
        n = len(examples)
        block = examples + 1
        tokens = torch.cat([torch.zeros(n, 1, dtype=torch.long), block, block], dim=1)
        read_pos = torch.arange(self.half + 1, 2 * self.half).repeat(n, 1)
        return Batch(tokens, read_pos, self.targets(examples))

    def bags(self, examples: torch.Tensor) -> Batch:
        raise HeadcoopError("the induction task has no bags: positions matter")

    def lengths(self, examples: torch.Tensor) -> Int[torch.Tensor, " example"]:
        return torch.full((len(examples),), 2 * self.half + 1)

    def parse(self, text: str) -> list[int]:
        """Token ids of a sentence ``t4 t0 t2 t4 t0 t2`` (a block of distinct tokens, twice),
        with or without a leading ``[BOS]``.

        Raises:
            HeadcoopError: naming the (character) position of the first token that breaks it.
        """
        body = text.removeprefix("[BOS]")
        words, ids, position = body.split(" "), [0], len(text) - len(body)
        for k, word in enumerate(words):
            if word not in self.vocab[1:]:
                why = "expected a content token"
            elif k >= 2 * self.half:
                why = f"expected the end after {2 * self.half} tokens"
            elif k >= self.half and word != words[k - self.half]:
                why = f"expected the repeat of {words[k - self.half]!r}"
            elif k < self.half and word in words[:k]:
                why = "the block repeats a token"
            else:
                ids.append(self.vocab.index(word))
                position += len(word) + 1
                continue
            raise HeadcoopError(
                f"bad token {word!r} at position {position} in {quote(text, position)}: {why}"
            )
        if len(ids) != 2 * self.half + 1:
            raise HeadcoopError(
                f"{quote(text, len(text))} ends too early at position {len(text)}: expected "
                f"{2 * self.half} tokens"
            )
        return ids

    def format(self, ids: list[int]) -> str:
        return " ".join(self.vocab[i] for i in ids if i != 0)

    def to_config(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "vocab": list(self.vocab),
            "seed": self.seed,
            "tokens": self.tokens,
            "half": self.half,
            "size": self.size,
        }
