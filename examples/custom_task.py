"""A task of your own, in one file: define it, train a model on it, analyse its heads.

"Twice as many?": ``[BOS] {x,y,z}* = {Y,N} [EOS]`` answers Y when the string holds more than
twice as many x as y. Like Count01 the answer depends on counts alone, so the task builds on
`headcoop.CountingLanguage` and gets the exact bag engine for free; a task of
another shape implements the `headcoop.Task` protocol directly (see
`headcoop.tasks.histogram` for one that runs on full sequences).

    python examples/custom_task.py [--epochs N] [--out DIR]
"""

import argparse
from dataclasses import dataclass
from typing import ClassVar

import torch

import headcoop
from headcoop import CountingLanguage, split_generator


@headcoop.register_task
@dataclass(frozen=True)
class TwiceAsMany(CountingLanguage):
    """Are there more than twice as many x as y? Trained on short strings, tested on long."""

    seed: int = 0
    size: int = 2000

    name = "twice_as_many"
    counted = ("x", "y", "z")
    answers = ("Y", "N")
    # A head that solves it should weigh one x against half a y at '=': w_xy near 1/2.
    attention_ratios: ClassVar = {"w_xy": ("=", "x", "y"), "w_xz": ("=", "x", "z")}

    def split(self, name: str) -> torch.Tensor:
        """Counts (nx, ny, nz): up to 40 of each in training, 41-80 in val, 81-120 in test."""
        gen = split_generator(self.seed, name)
        lo, hi = {"train": (0, 40), "val": (41, 80), "test": (81, 120)}[name]
        ny = torch.randint(lo // 2, hi // 2 + 1, (self.size, 1), generator=gen)
        nx = 2 * ny + torch.randint(-6, 7, (self.size, 1), generator=gen)  # near the boundary
        nz = torch.randint(lo, hi + 1, (self.size, 1), generator=gen)
        return torch.cat([nx.clamp(min=0), ny, nz], dim=1)

    def answer_index(self, counts: torch.Tensor) -> torch.Tensor:
        return torch.where(counts[:, 0] > 2 * counts[:, 1], 0, 1)  # 0: 'Y', 1: 'N'

    def to_config(self) -> dict:
        return {"name": self.name, "vocab": list(self.vocab), "seed": self.seed, "size": self.size}


def main(epochs: int = 30, size: int = 2000, out: str | None = None) -> headcoop.HeadAnalysis:
    task = TwiceAsMany(size=size)
    model = headcoop.train(
        task,
        headcoop.ModelConfig(d_model=16, n_heads=4, d_head=2),
        headcoop.TrainConfig(epochs=epochs, lr=3e-3),
    )
    print(f"test accuracy: {headcoop.evaluate(model, task, task.split('test'))}")
    result = headcoop.analyze(model, task)
    print(result.heads_frame().round(3).to_string(index=False))
    print(f"direct path: {result.summary['direct_path']}")
    if out is not None:
        result.save(out)
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--out", default=None, help="write heads.csv, pairs.csv, ... here")
    args = parser.parse_args()
    main(args.epochs, out=args.out)
