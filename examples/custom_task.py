"""A task of your own: "which of a, b, c occurs most?" trained and checked without touching
headcoop's model, engine or trainer.

A task implements the small `headcoop.Task` protocol. This one, like Count01, is a bag task:
the answer depends only on token counts, so it gets the fast exact bag engine for free.

    python examples/custom_task.py
"""

from dataclasses import dataclass
from typing import ClassVar

import torch

import headcoop
from headcoop import Batch

VOCAB = ("[BOS]", "a", "b", "c", "=", "A", "B", "C", "[EOS]")
BOS, A, B, C, EQUALS, ANSWER_A, _, _, EOS = range(len(VOCAB))


@headcoop.register_task
@dataclass(frozen=True)
class Plurality:
    """``[BOS] {a,b,c}* = {A,B,C} [EOS]``: the answer names the most frequent letter (ties go
    to the earlier letter). Train on up to ``max_train`` of each letter, test on more."""

    seed: int = 0
    size: int = 2000
    max_train: int = 30

    name = "plurality"
    vocab = VOCAB
    read_names = ("answer", "eos")
    supports_bags = True
    decision_tokens = ("A", "B", "C")
    attention_ratios: ClassVar = {"a_over_b": ("=", "a", "b")}

    def split(self, name: str) -> torch.Tensor:
        lo, hi = {
            "train": (0, self.max_train),
            "val": (self.max_train + 1, 2 * self.max_train),
            "test": (2 * self.max_train + 1, 3 * self.max_train),
        }[name]
        gen = torch.Generator().manual_seed(self.seed * 3 + ("train", "val", "test").index(name))
        return torch.randint(lo, hi + 1, (self.size, 3), generator=gen)

    def targets(self, examples: torch.Tensor) -> torch.Tensor:
        answer = ANSWER_A + examples.argmax(dim=1)  # argmax returns the first maximum
        return torch.stack([answer, torch.full_like(answer, EOS)], dim=1)

    def lengths(self, examples: torch.Tensor) -> torch.Tensor:
        return examples.sum(dim=1) + 3

    def bags(self, examples: torch.Tensor) -> Batch:
        n, targets = len(examples), self.targets(examples)
        tokens = torch.tensor([BOS, A, B, C, EQUALS, 0]).repeat(n, 1)
        tokens[:, 5] = targets[:, 0]
        multiplicity = torch.cat([torch.ones(n, 1), examples.float(), torch.ones(n, 2)], dim=1)
        return Batch(tokens, torch.tensor([4, 5]).repeat(n, 1), targets, multiplicity)

    def sequences(self, examples: torch.Tensor) -> Batch:
        """Letters in sorted order (order is invisible to a model without positions)."""
        rows, targets = [], self.targets(examples)
        for counts, target in zip(examples.tolist(), targets[:, 0].tolist(), strict=True):
            letters = [A] * counts[0] + [B] * counts[1] + [C] * counts[2]
            rows.append(torch.tensor([BOS, *letters, EQUALS, target]))
        tokens = torch.nn.utils.rnn.pad_sequence(rows, batch_first=True, padding_value=EOS)
        ends = self.lengths(examples)
        return Batch(tokens, torch.stack([ends - 2, ends - 1], dim=1), targets)

    def to_config(self) -> dict:
        return {
            "name": self.name,
            "vocab": list(self.vocab),
            "seed": self.seed,
            "size": self.size,
            "max_train": self.max_train,
        }


def main() -> None:
    task = Plurality()
    model = headcoop.train(
        task,
        headcoop.ModelConfig(d_model=16, n_heads=4, d_head=4),
        headcoop.TrainConfig(epochs=30),
        progress=True,
    )
    test = task.split("test")[:200]
    bag = headcoop.predict(model, task, test, mode="bag")
    full = headcoop.predict(model, task, test, mode="full")
    print(f"test accuracy: {headcoop.evaluate(model, task, task.split('test'))}")
    print(f"bag vs full sequences, largest logit difference: {(bag - full).abs().max():.2e}")


if __name__ == "__main__":
    main()
