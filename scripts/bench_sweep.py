"""Sweep speed: a grid of differently shaped models trained as one padded stack, against the
same models trained one stack per model, measured side by side in one run.

Both sides run the same code (`headcoop.train_models` on bags) for the same epochs on the
paper's 7,000 training examples; only the stacking differs. The grid is Fig 2's (heads 1-16 ×
d_model 2-32) with ``--seeds`` seeds per cell. One-at-a-time is timed on one seed per cell and
multiplied by the number of seeds (every seed of a cell costs the same).

    python scripts/bench_sweep.py [--seeds 10] [--epochs 1]
"""

import argparse
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--epochs", type=int, default=1)
    args = parser.parse_args()

    import torch

    from headcoop import Count01, ModelConfig, TrainConfig, build_model, train_models

    task, cfg = Count01(), TrainConfig(epochs=args.epochs)
    shapes = [(h, d) for h in (1, 2, 4, 8, 16) for d in (2, 4, 8, 16, 32)]

    def models(seeds: int) -> list:
        return [
            build_model(ModelConfig(d_model=d, n_heads=h), len(task.vocab), s)
            for h, d in shapes
            for s in range(seeds)
        ]

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; {len(shapes)} shapes")
    start = time.perf_counter()
    for model in models(1):
        train_models(task, [model], cfg)
    alone = (time.perf_counter() - start) * args.seeds

    grid = models(args.seeds)
    start = time.perf_counter()
    train_models(task, grid, cfg)
    stacked = time.perf_counter() - start

    n, per = len(grid), f"s per {args.epochs} epoch(s)"
    print(
        f"one model at a time ({n} models, extrapolated from 1 seed per shape): {alone:.1f} {per}"
    )
    print(f"one padded stack of all {n} models:                               {stacked:.1f} {per}")
    print(f"ratio: {alone / stacked:.1f}x")


if __name__ == "__main__":
    main()
