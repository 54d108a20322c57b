"""Successor: one item of an ordered domain among filler tokens; the answer is its successor.

Four ordered domains share one vocabulary: the numbers 0-99 (one token each), the days of the
week (cyclic), the months (cyclic) and the letters (not cyclic). A prompt holds one item and a
few filler tokens before '='; at '=' the model answers the item's successor (Sunday -> Monday,
December -> January; 99 and 'z' have none and are never asked). The '=' token is the same in
every prompt, so the answer must come through attention to the item, through the head's OV
circuit: the toy setting of successor heads (Gould et al. 2023).

Bags are exact: one scored position ('='), whose prefix is known by its token counts.
"""

import string
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from jaxtyping import Int

from headcoop.config import SEED, SPLIT_SIZE, Rule
from headcoop.errors import HeadcoopError
from headcoop.tasks.base import Batch, Readout, order_keys, register_task, split_generator
from headcoop.tasks.counting import quote

DOMAINS: dict[str, tuple[tuple[str, ...], bool]] = {
    "numbers": (tuple(str(i) for i in range(100)), False),
    "days": (("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"), True),
    "months": (
        ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"),
        True,
    ),
    "letters": (tuple(string.ascii_lowercase), False),
}
"""Each domain's tokens in order, and whether it wraps around."""


def successors(tokens: tuple[str, ...], cyclic: bool) -> dict[str, str]:
    """Each token of an ordered domain mapped to the next one (the last only if cyclic).

    >>> successors(("a", "b", "c"), cyclic=True)
    {'a': 'b', 'b': 'c', 'c': 'a'}
    """
    following = tokens[1:] + (tokens[:1] if cyclic else ())
    return dict(zip(tokens, following, strict=False))


@register_task
@dataclass(frozen=True)
class Successor:
    """What comes next? One item of an ordered domain among fillers; answer its successor.

    Args:
        seed: seed of the data.
        fillers: distinct filler tokens ("_0", "_1", ...).
        max_fill: the most copies of each filler in a prompt.
        size: examples in each split.

    >>> task = Successor()
    >>> [task.vocab[t] for t in task.targets(task.examples(["_0 Dec _1 ="]))[:, 0]]
    ['Jan']
    """

    seed: int = 0
    fillers: int = 4
    max_fill: int = 6
    size: int = 6000

    name = "successor"
    domains: ClassVar = DOMAINS
    decision: ClassVar[int] = 0
    attention_ratios: ClassVar[dict] = {}
    supports_bags: ClassVar[bool] = True

    def __post_init__(self) -> None:
        SEED.check("successor: seed", self.seed)
        Rule(int, 1, 64).check("successor: fillers", self.fillers)
        Rule(int, 0, 10_000).check("successor: max_fill", self.max_fill)
        SPLIT_SIZE.check("successor: size", self.size)

    @property
    def items(self) -> tuple[str, ...]:
        """Every domain token, in domain order."""
        return tuple(t for tokens, _ in DOMAINS.values() for t in tokens)

    @property
    def vocab(self) -> tuple[str, ...]:
        return ("[BOS]", *self.items, *(f"_{k}" for k in range(self.fillers)), "=")

    @property
    def readouts(self) -> tuple[Readout, ...]:
        return (Readout("successor", self.items),)

    @property
    def asked(self) -> Int[torch.Tensor, " item"]:
        """The token ids of the items that have a successor (the ones prompts ask about)."""
        names = [t for tokens, cyclic in DOMAINS.values() for t in successors(tokens, cyclic)]
        return torch.tensor([self.vocab.index(t) for t in names])

    def split(self, name: str) -> Int[torch.Tensor, "example fields"]:
        """(item id, count of each filler) of each example of split ``name``."""
        gen = split_generator(self.seed, name)
        asked = self.asked
        item = asked[torch.randint(0, len(asked), (self.size, 1), generator=gen)]
        fill = torch.randint(0, self.max_fill + 1, (self.size, self.fillers), generator=gen)
        return torch.cat([item, fill], dim=1)

    def targets(
        self, examples: Int[torch.Tensor, "example fields"]
    ) -> Int[torch.Tensor, "example 1"]:
        table = torch.zeros(len(self.vocab), dtype=torch.long)
        for tokens, cyclic in DOMAINS.values():
            for item, following in successors(tokens, cyclic).items():
                table[self.vocab.index(item)] = self.vocab.index(following)
        return table[examples[:, :1]]

    def bags(self, examples: Int[torch.Tensor, "example fields"]) -> Batch:
        """``[BOS] item _0 .. _F =`` with multiplicities ``1 1 n_0 .. n_F 1``."""
        n, f = len(examples), self.fillers
        first_filler = self.vocab.index("_0")
        fill_ids = torch.arange(first_filler, first_filler + f).repeat(n, 1)
        tokens = torch.cat(
            [torch.zeros(n, 1, dtype=torch.long), examples[:, :1], fill_ids,
             torch.full((n, 1), self.vocab.index("="))], dim=1
        )  # fmt: skip
        mult = torch.cat([torch.ones(n, 2), examples[:, 1:].float(), torch.ones(n, 1)], dim=1)
        return Batch(tokens, torch.full((n, 1), f + 2), self.targets(examples), mult)

    def sequences(self, examples: Int[torch.Tensor, "example fields"], seed: int = 0) -> Batch:
        """``[BOS] <item and fillers, shuffled> =``, right-padded with [BOS]."""
        first_filler = self.vocab.index("_0")
        width = int(examples[:, 1:].sum(1).max()) + 1 if len(examples) else 0
        keys = order_keys(examples, width, seed)  # the same order in every batch
        rows = []
        for row, key in zip(examples.tolist(), keys, strict=True):
            body = [row[0]] + [first_filler + k for k, c in enumerate(row[1:]) for _ in range(c)]
            order = key[: len(body)].argsort(stable=True).tolist()
            rows.append([0, *(body[k] for k in order), self.vocab.index("=")])
        width = max(len(r) for r in rows)
        tokens = torch.tensor([r + [0] * (width - len(r)) for r in rows])
        read_pos = torch.tensor([[len(r) - 1] for r in rows])
        return Batch(tokens, read_pos, self.targets(examples))

    def lengths(
        self, examples: Int[torch.Tensor, "example fields"]
    ) -> Int[torch.Tensor, " example"]:
        return examples[:, 1:].sum(1) + 3

    def parse(self, text: str) -> list[int]:
        """Token ids of a prompt such as ``_0 Dec _1 =``: fillers, exactly one askable item,
        then '=' (a leading ``[BOS]`` is allowed).

        Raises:
            HeadcoopError: naming the position of the first token that breaks it.
        """
        body = text.removeprefix("[BOS]")
        ids, position, item_seen = [0], len(text) - len(body), False
        asked = set(self.asked.tolist())
        words = body.split(" ")
        for k, word in enumerate(words):
            token = self.vocab.index(word) if word in self.vocab else None
            last = k == len(words) - 1
            if token is None or token == 0:
                why = "unknown token"
            elif last and word != "=":
                why = "expected '=' at the end"
            elif word == "=" and not last:
                why = "'=' must come last"
            elif word == "=" and not item_seen:
                why = "expected an item before '='"
            elif word in self.items and (item_seen or token not in asked):
                why = "a second item" if item_seen else "this item has no successor"
            else:
                item_seen |= word in self.items
                ids.append(token)
                position += len(word) + 1
                continue
            raise HeadcoopError(
                f"bad token {word!r} at position {position} in {quote(text, position)}: {why}"
            )
        return ids

    def format(self, ids: list[int]) -> str:
        return " ".join(self.vocab[i] for i in ids if i != 0)

    def examples(self, texts: list[str]) -> Int[torch.Tensor, "example fields"]:
        """(item, filler counts) of prompts, validated with `parse`."""
        first_filler = self.vocab.index("_0")
        rows = []
        for text in texts:
            ids = self.parse(text)
            item = next(t for t in ids if 0 < t < first_filler)
            rows.append([item, *(ids.count(first_filler + k) for k in range(self.fillers))])
        return torch.tensor(rows)

    def to_config(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "vocab": list(self.vocab),
            "seed": self.seed,
            "fillers": self.fillers,
            "max_fill": self.max_fill,
            "size": self.size,
        }
