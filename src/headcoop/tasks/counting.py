"""Counting languages: ``[BOS] <counted tokens>* = <answer> [EOS]``, answered from counts alone.

Count01 and Plurality are such languages. An example is stored as its token counts: with no
positional embedding the order of the counted tokens does not change what the model computes,
so full sequences are drawn by shuffling only when they are asked for, and every example has
an exact bag ``[BOS] t1 .. tk = a`` with multiplicities ``1 n1 .. nk 1 1``.

A subclass sets `counted` and `answers` (the vocabulary follows) and defines `answer_index`
and `split`.
"""

from typing import Any, ClassVar

import torch
from jaxtyping import Int

from headcoop.errors import HeadcoopError
from headcoop.tasks.base import Batch, Readout, order_keys

BOS, EOS, EQUALS = "[BOS]", "[EOS]", "="
QUOTE_WINDOW = 20
"""Characters quoted on each side of the offending position in a parse error."""


class CountingLanguage:
    """Shared machinery of the counting languages (see the module docstring)."""

    counted: ClassVar[tuple[str, ...]]
    answers: ClassVar[tuple[str, ...]]
    decision: ClassVar[int] = 0
    supports_bags: ClassVar[bool] = True

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.vocab = (BOS, *cls.counted, EQUALS, *cls.answers, EOS)
        cls.readouts = (Readout("answer", cls.answers), Readout("eos", cls.vocab))

    def answer_index(
        self, counts: Int[torch.Tensor, "example counted"]
    ) -> Int[torch.Tensor, " example"]:
        """Which of `answers` is correct for each row of counts."""
        raise NotImplementedError

    # --- token ids --------------------------------------------------------------------------

    @property
    def counted_ids(self) -> Int[torch.Tensor, " counted"]:
        return torch.arange(1, 1 + len(self.counted))

    def _id(self, token: str) -> int:
        return self.vocab.index(token)

    # --- the protocol -----------------------------------------------------------------------

    def lengths(
        self, examples: Int[torch.Tensor, "example counted"]
    ) -> Int[torch.Tensor, " example"]:
        """Input length of each full sequence: [BOS], the counted tokens, '=' and the answer."""
        return examples.sum(dim=1) + 3

    def targets(
        self, examples: Int[torch.Tensor, "example counted"]
    ) -> Int[torch.Tensor, "example 2"]:
        """The answer after '=' and the [EOS] after the answer."""
        answer = self._id(self.answers[0]) + self.answer_index(examples)
        return torch.stack([answer, torch.full_like(answer, self._id(EOS))], dim=1)

    def bags(self, examples: Int[torch.Tensor, "example counted"]) -> Batch:
        """``[BOS] t1 .. tk = a`` with multiplicities ``1 n1 .. nk 1 1``; scored at '=' and a."""
        n, k = examples.shape
        targets = self.targets(examples)
        tokens = torch.cat(
            [
                torch.tensor([self._id(BOS), *self.counted_ids.tolist(), self._id(EQUALS)]).repeat(
                    n, 1
                ),
                targets[:, :1],
            ],
            dim=1,
        )
        mult = torch.ones(n, k + 3)
        mult[:, 1 : k + 1] = examples.float()
        read_pos = torch.tensor([k + 1, k + 2]).repeat(n, 1)
        return Batch(tokens, read_pos, targets, mult)

    def sequences(self, examples: Int[torch.Tensor, "example counted"], seed: int = 0) -> Batch:
        """Full sequences ``[BOS] <shuffled counted tokens> = a``, right-padded with [EOS].

        Each example's order of the counted tokens is a function of the example and ``seed``
        (`order_keys`), the same in every batch; without positional information it does not
        change a one-layer model's outputs, only which positions hold which token.
        """
        n = examples.shape[0]
        body_len = examples.sum(dim=1)
        width = int(body_len.max()) if n else 0
        slot = torch.arange(width)
        # A random permutation of each row's valid slots: sort random keys, invalid slots last.
        keys = order_keys(examples, width, seed)
        keys = keys.masked_fill(slot >= body_len[:, None], 2**52)  # invalid slots last
        order = keys.argsort(dim=1, stable=True)
        bounds = examples.cumsum(dim=1)  # slot index < n1 -> t1, < n1+n2 -> t2, ...
        token_type = (order[:, :, None] >= bounds[:, None, :-1]).sum(dim=2)
        eos = self._id(EOS)
        body = torch.where(slot < body_len[:, None], self.counted_ids[token_type], eos)

        targets = self.targets(examples)
        tokens = torch.cat(
            [torch.full((n, 1), self._id(BOS)), body, torch.full((n, 2), eos)], dim=1
        )
        rows = torch.arange(n)
        tokens[rows, body_len + 1] = self._id(EQUALS)
        tokens[rows, body_len + 2] = targets[:, 0]
        read_pos = torch.stack([body_len + 1, body_len + 2], dim=1)
        return Batch(tokens, read_pos, targets)

    # --- text -------------------------------------------------------------------------------

    def parse(self, text: str) -> list[int]:
        """Token ids of a string, in short form (``0121=4``) or with ``[BOS]``/``[EOS]``.

        Raises:
            HeadcoopError: naming the position (character offset) and token that break the
                grammar, or a wrong answer.
        """
        ids, starts = self._tokenize(text)
        bos, eos = self._id(BOS), self._id(EOS)
        if ids[:1] != [bos]:
            ids, starts = [bos, *ids], [0, *starts]
        if ids[-1] != eos:
            ids, starts = [*ids, eos], [*starts, len(text)]
        counted = set(self.counted_ids.tolist())
        k = 1
        while ids[k] in counted:
            k += 1
        eq = k
        answers = tuple(self._id(a) for a in self.answers)
        stages = (
            ((self._id(EQUALS),), f"{', '.join(self.counted)} or '='"),
            (answers, " or ".join(repr(a) for a in self.answers)),
            ((eos,), EOS),
        )
        for allowed, expected in stages:
            if k == len(ids) or ids[k] not in allowed:
                raise HeadcoopError(self._unexpected(text, ids, starts, k, f"expected {expected}"))
            k += 1
        if k != len(ids):
            raise HeadcoopError(
                self._unexpected(text, ids, starts, k, f"expected nothing after {EOS}")
            )
        counts = torch.tensor([[ids.count(int(t)) for t in self.counted_ids]])
        expected_id = answers[int(self.answer_index(counts)[0])]
        if ids[eq + 1] != expected_id:
            found = ", ".join(
                f"{int(c)} {t!r}" for t, c in zip(self.counted, counts[0], strict=True)
            )
            why = f"wrong answer: {found} need {self.vocab[expected_id]!r}"
            raise HeadcoopError(self._unexpected(text, ids, starts, eq + 1, why))
        return ids

    def format(self, ids: list[int]) -> str:
        """Short form of a token-id sequence, the inverse of `parse`."""
        bos, eos = self._id(BOS), self._id(EOS)
        return "".join(self.vocab[i] for i in ids if i not in (bos, eos))

    def examples(self, texts: list[str]) -> Int[torch.Tensor, "example counted"]:
        """Token counts of strings of the language, validated with `parse`."""
        rows = []
        for text in texts:
            ids = self.parse(text)
            rows.append([ids.count(int(t)) for t in self.counted_ids])
        return torch.tensor(rows, dtype=torch.long).reshape(-1, len(self.counted))

    def _tokenize(self, text: str) -> tuple[list[int], list[int]]:
        """Token ids and the character offset where each starts."""
        ids, starts, i = [], [], 0
        while i < len(text):
            word = next((w for w in (BOS, EOS) if text.startswith(w, i)), text[i])
            if word not in self.vocab:
                raise HeadcoopError(f"bad token {word!r} at position {i} in {quote(text, i)}")
            ids.append(self.vocab.index(word))
            starts.append(i)
            i += len(word)
        if not ids:
            raise HeadcoopError("the string is empty at position 0: expected a sentence")
        return ids, starts

    def _unexpected(self, text: str, ids: list[int], starts: list[int], k: int, why: str) -> str:
        """One-line message for token ``k`` (or the end of the string) breaking the grammar."""
        if k == len(ids) or starts[k] == len(text):
            return f"{quote(text, len(text))} ends too early at position {len(text)}: {why}"
        where = starts[k]
        return (
            f"bad token {self.vocab[ids[k]]!r} at position {where} in {quote(text, where)}: {why}"
        )


def quote(text: str, position: int) -> str:
    """``text`` quoted, or a window of it around ``position`` when it is long.

    >>> quote("0" * 100 + "x" + "1" * 100, 100)
    "'...00000000000000000000x11111111111111111111...'"
    """
    lo, hi = max(0, position - QUOTE_WINDOW), min(len(text), position + QUOTE_WINDOW + 1)
    inner = text[lo:hi]
    return repr(("..." if lo > 0 else "") + inner + ("..." if hi < len(text) else ""))
