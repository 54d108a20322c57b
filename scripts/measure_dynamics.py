"""Heads over training and at initialisation, with timings.

For each run directory: s-acc and head weight of every head at every saved epoch (one CSV per
run); pooled over the runs from epoch 10 on, the Pearson correlation of the head-weighted s-acc
with model accuracy. Then the s-acc of N freshly initialised heads. Writes OUT/*.csv and
OUT/dynamics.json.

    python scripts/measure_dynamics.py runs/seeds/seed_0 runs/seeds/seed_1 --out runs/dynamics
"""

import argparse
import json
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path, help="training run directories")
    parser.add_argument("--out", type=Path, default=Path("runs/dynamics"))
    parser.add_argument("--random-heads", type=int, default=10_000)
    args = parser.parse_args()

    import pandas as pd
    import torch

    from headcoop import Count01, ModelConfig
    from headcoop.files import write_atomic
    from headcoop.heads.dynamics import random_head_s_acc, trajectory, weighted_s_acc_correlation
    from headcoop.metrics.classes import SUCCESSFUL

    report: dict = {"runs": {}}
    paths = []
    for run in args.runs:
        start = time.perf_counter()
        path = trajectory(run, progress=True)
        seconds = time.perf_counter() - start
        paths.append(path)
        write_atomic(args.out / f"trajectory_{run.name}.csv", path.to_pandas().to_csv(index=False))
        final = path.s_acc[-1]
        report["runs"][str(run)] = {
            "checkpoints": len(path.epochs),
            "seconds": round(seconds, 1),
            "final_accuracy": path.accuracy[-1].item(),
            "final_successful_heads": int((final >= SUCCESSFUL).sum()),
        }
        print(f"{run}: {len(path.epochs)} checkpoints in {seconds:.1f} s")

    frames = [path.to_pandas(run=str(run)) for run, path in zip(args.runs, paths, strict=True)]
    pooled, r = weighted_s_acc_correlation(pd.concat(frames), first_epoch=10)
    report["weighted_s_acc_vs_accuracy"] = {"points": len(pooled), "pearson_r": r}
    print(f"head-weighted s-acc vs accuracy, {len(pooled)} checkpoints: Pearson r = {r:.3f}")

    start = time.perf_counter()
    s_acc = random_head_s_acc(Count01(), ModelConfig(), args.random_heads, progress=True)
    seconds = time.perf_counter() - start
    write_atomic(args.out / "random_heads.csv", "s_acc\n" + "\n".join(f"{v:.6f}" for v in s_acc))
    quantiles = torch.quantile(s_acc, torch.tensor([0.1, 0.5, 0.9])).tolist()
    report["random_heads"] = {
        "n": len(s_acc),
        "seconds": round(seconds, 1),
        "mean": s_acc.mean().item(),
        "quantiles_10_50_90": quantiles,
        "share_at_least_0.98": (s_acc >= SUCCESSFUL).float().mean().item(),
    }
    print(
        f"{len(s_acc)} random heads in {seconds:.1f} s: mean s-acc {s_acc.mean():.3f}, "
        f"10/50/90% {quantiles[0]:.3f}/{quantiles[1]:.3f}/{quantiles[2]:.3f}, "
        f"share >= 0.98: {report['random_heads']['share_at_least_0.98']:.3f}"
    )
    write_atomic(args.out / "dynamics.json", json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
