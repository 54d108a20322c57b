"""A researcher's own prompts as a task: token ids, the position read in each, its target.

`PromptTask` measures the heads of any model on token sequences that exist only as ids (a
tracr program's inputs, prompts cut from a corpus, a probe set): no language to declare, no
vocabulary to match. Its tokens are the model's own ids, so it fits every model whose
vocabulary holds them (``open_vocab``); its one readout chooses among the candidate tokens
(by default the distinct targets). Sequences run in full (no bags: nothing is known of a
prompt's prefix but its tokens).

`PromptTask.from_jsonl` reads one JSON object a line::

    {"tokens": [0, 5, 3, 5], "target": 3}
    {"tokens": [0, 2, 7], "target": 7, "position": 1, "split": "test"}
"""

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from jaxtyping import Int

from headcoop.errors import HeadcoopError
from headcoop.tasks.base import Batch, Readout

MAX_PROMPTS_FILE = 2**28
"""The largest prompts file read (256 MiB)."""
MAX_TOKENS = 2**26
"""The most token ids a prompt task may hold in all (about 0.5 GB as int64)."""
PROMPT_SPLITS = ("train", "test")


class PromptTask:
    """A researcher's own prompts: token ids, the position read in each and its target.

    Args:
        tokens: one sequence of token ids per prompt (a 2-D tensor or lists; ragged allowed).
        targets: the correct token id at each prompt's read position.
        positions: the position read in each prompt (default: its last token).
        candidates: the token ids the prediction chooses among (default: the distinct
            targets, in increasing order); two or more.
        token_names: a name for each token id from 0 on (default: the ids as text); it also
            fixes the vocabulary's size.
        splits: 'train' or 'test' for each prompt (default: a seeded half each; 'val' is the
            test split).
        seed: the seed of the default halves.

    >>> task = PromptTask([[0, 1, 2], [0, 2, 1], [0, 1, 1], [0, 2, 2]], targets=[2, 1, 1, 2])
    >>> task.readouts[0].candidates, len(task.split("train")), task.vocab
    (('1', '2'), 2, ('0', '1', '2'))
    """

    name = "prompts"
    decision = 0
    supports_bags = False
    open_vocab = True
    attention_ratios: dict[str, tuple[str, str, str]] = {}  # noqa: RUF012 (read only)

    def __init__(
        self,
        tokens: Sequence[Sequence[int]] | torch.Tensor,
        targets: Sequence[int] | torch.Tensor,
        positions: Sequence[int] | torch.Tensor | None = None,
        candidates: Sequence[int] | None = None,
        token_names: Sequence[str] | None = None,
        splits: Sequence[str] | None = None,
        seed: int = 0,
    ) -> None:
        self._tokens = [_ids(row, f"prompt {k}") for k, row in enumerate(_rows(tokens))]
        if len(self._tokens) < 4:
            raise HeadcoopError(f"prompts: need at least 4 prompts, got {len(self._tokens)}")
        if sum(map(len, self._tokens)) > MAX_TOKENS:
            raise HeadcoopError(f"prompts: more than {MAX_TOKENS:,} token ids in all")
        self._targets = _ids(targets, "targets", len(self._tokens))
        lengths = torch.tensor([len(row) for row in self._tokens])
        self._positions = (
            lengths - 1 if positions is None else _ids(positions, "positions", len(lengths))
        )
        if (self._positions >= lengths).any() or (lengths == 0).any():
            k = int(((self._positions >= lengths) | (lengths == 0)).nonzero()[0])
            raise HeadcoopError(f"prompts: prompt {k} has no position {int(self._positions[k])}")
        self._candidates = _candidates(candidates, self._targets)
        self.vocab = _vocab(token_names, self._tokens, self._targets, self._candidates)
        self.readouts = (Readout("target", tuple(self.vocab[c] for c in self._candidates)),)
        self._splits = _splits(splits, len(self._tokens), seed)
        self._seed, self._named = seed, token_names is not None

    @classmethod
    def from_jsonl(cls, path: str | Path, **kwargs: Any) -> "PromptTask":
        """Prompts from a JSON-lines file (see the module docstring); ``kwargs`` are the
        constructor's (``candidates``, ``token_names``, ``seed``)."""
        rows = _read_jsonl(Path(path))
        positions = [row.get("position", len(row["tokens"]) - 1) for row in rows]
        given = [row.get("split") for row in rows]
        splits = given if any(s is not None for s in given) else None
        if splits is not None and None in splits:
            raise HeadcoopError(f"{path}: line {given.index(None) + 1} has no split, others do")
        return cls(
            [row["tokens"] for row in rows],
            [row["target"] for row in rows],
            positions,
            splits=splits,
            **kwargs,
        )

    def split(self, name: str) -> Int[torch.Tensor, "example 1"]:
        """The indices of the prompts of a split ('val' is the test split)."""
        if name not in ("train", "val", "test"):
            raise HeadcoopError(f"unknown split {name!r}; choose one of ('train', 'val', 'test')")
        wanted = "test" if name == "val" else name
        return torch.tensor([k for k, s in enumerate(self._splits) if s == wanted])[:, None]

    def targets(self, examples: torch.Tensor) -> Int[torch.Tensor, "example 1"]:
        return self._targets[examples[:, 0]][:, None]

    def sequences(self, examples: torch.Tensor) -> Batch:
        """The prompts, right-padded with token 0 (after each read position, so unseen)."""
        rows = [self._tokens[k] for k in examples[:, 0].tolist()]
        width = max((len(row) for row in rows), default=1)
        tokens = torch.zeros(len(rows), width, dtype=torch.long)
        for k, row in enumerate(rows):  # one copy per prompt; prompts are few
            tokens[k, : len(row)] = row
        return Batch(tokens, self._positions[examples[:, 0]][:, None], self.targets(examples))

    def bags(self, examples: torch.Tensor) -> Batch:
        raise HeadcoopError("prompts have no bag form: they run as full sequences")

    def lengths(self, examples: torch.Tensor) -> torch.Tensor:
        return torch.tensor([len(self._tokens[k]) for k in examples[:, 0].tolist()])

    def longest(self) -> int:
        """The longest prompt (a model's context must hold it)."""
        return max(len(row) for row in self._tokens)

    def to_config(self) -> dict[str, Any]:
        """The prompts whole (``PromptTask(**config)`` without its name and vocab rebuilds
        them); not a registered task: it has no defaults to build by name."""
        return {
            "name": self.name,
            "vocab": list(self.vocab),
            "tokens": [row.tolist() for row in self._tokens],
            "targets": self._targets.tolist(),
            "positions": self._positions.tolist(),
            "candidates": self._candidates.tolist(),
            "token_names": list(self.vocab) if self._named else None,
            "splits": list(self._splits),
            "seed": self._seed,
        }


def _rows(tokens: Any) -> list:
    if isinstance(tokens, torch.Tensor):
        if tokens.dim() != 2:
            raise HeadcoopError(f"prompts: a tensor of tokens must be 2-D, got {tokens.dim()}-D")
        return list(tokens)
    if not isinstance(tokens, Sequence) or isinstance(tokens, str | bytes):
        raise HeadcoopError("prompts: tokens must be a tensor or a list of lists of token ids")
    return list(tokens)


def _ids(values: Any, what: str, count: int | None = None) -> torch.Tensor:
    """Whole non-negative token ids (or positions) as an int64 tensor."""
    if isinstance(values, torch.Tensor):
        if values.dtype.is_floating_point or values.dtype == torch.bool or values.dim() != 1:
            raise HeadcoopError(f"prompts: {what} must be a 1-D tensor of whole numbers")
        values = values.tolist()
    if not isinstance(values, Sequence) or isinstance(values, str | bytes):
        raise HeadcoopError(f"prompts: {what} must be a list of whole numbers")
    if not all(isinstance(v, int) and not isinstance(v, bool) and 0 <= v < 2**31 for v in values):
        raise HeadcoopError(f"prompts: {what} must hold whole numbers in [0, 2^31)")
    if count is not None and len(values) != count:
        raise HeadcoopError(f"prompts: {len(values)} {what} for {count} prompts")
    return torch.tensor(values, dtype=torch.long)


def _candidates(candidates: Sequence[int] | None, targets: torch.Tensor) -> torch.Tensor:
    chosen = targets.unique() if candidates is None else _ids(list(candidates), "candidates")
    if len(chosen) < 2 or len(chosen.unique()) != len(chosen):
        raise HeadcoopError(
            f"prompts: need two or more distinct candidate tokens, got {chosen.tolist()}"
        )
    outside = sorted(set(targets.tolist()) - set(chosen.tolist()))
    if outside:
        raise HeadcoopError(f"prompts: target {outside[0]} is not among the candidates")
    return chosen


def _vocab(names: Sequence[str] | None, *ids: Any) -> tuple[str, ...]:
    """The token names for ids 0 .. the largest id named (or as many as ``names``)."""
    largest = max(int(torch.cat([torch.as_tensor(t).flatten() for t in _flat(ids)]).max()), 0)
    if names is None:
        return tuple(str(k) for k in range(largest + 1))
    names = tuple(names)
    if not all(isinstance(n, str) for n in names) or len(set(names)) != len(names):
        raise HeadcoopError("prompts: token_names must be distinct strings")
    if len(names) <= largest:
        raise HeadcoopError(f"prompts: token id {largest} has no name ({len(names)} names)")
    return names


def _flat(groups: tuple) -> list[torch.Tensor]:
    return [t for group in groups for t in (group if isinstance(group, list) else [group])]


def _splits(splits: Sequence[str] | None, count: int, seed: int) -> tuple[str, ...]:
    if splits is None:
        order = torch.randperm(count, generator=torch.Generator().manual_seed(seed))
        chosen = ["test"] * count
        for k in order[: count // 2].tolist():
            chosen[k] = "train"
        return tuple(chosen)
    splits = tuple(splits)
    if len(splits) != count or not set(splits) <= set(PROMPT_SPLITS):
        raise HeadcoopError(f"prompts: one split of {PROMPT_SPLITS} per prompt")
    for name in PROMPT_SPLITS:
        if splits.count(name) < 2:
            raise HeadcoopError(f"prompts: the {name} split needs two or more prompts")
    return splits


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    """The objects of a JSON-lines prompts file, each checked for its keys."""
    if not path.is_file():
        raise HeadcoopError(f"no prompts file {path}: it does not exist")
    if path.stat().st_size > MAX_PROMPTS_FILE:
        raise HeadcoopError(f"{path} is over {MAX_PROMPTS_FILE // 2**20} MiB")
    rows = []
    with open(path, encoding="utf-8", errors="strict") as handle:
        for number, line in enumerate(handle, 1):
            if line.strip():
                rows.append(_prompt_line(line, f"{path}: line {number}"))
    return rows


def _prompt_line(line: str, where: str) -> dict[str, Any]:
    try:
        row = json.loads(line)
    except (json.JSONDecodeError, RecursionError, ValueError) as exc:
        raise HeadcoopError(f"{where} is not JSON: {str(exc)[:80]}") from None
    if not isinstance(row, dict) or not {"tokens", "target"} <= set(row):
        raise HeadcoopError(f'{where} needs an object with "tokens" and "target"')
    unknown = sorted(set(row) - {"tokens", "target", "position", "split"})
    if unknown:
        raise HeadcoopError(f"{where} has unknown key {unknown[0]!r:.40}")
    if not isinstance(row["tokens"], list):
        raise HeadcoopError(f'{where}: "tokens" must be a list of token ids')
    return row
