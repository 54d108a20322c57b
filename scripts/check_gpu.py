"""The GPU check: headcoop's stages on CUDA and on the CPU side by side, in one call.

Trains the paper's model, analyses it (every set of heads included), and runs
``figures --quick`` on each device, then prints each stage's time on both and the largest
difference of every number the stages report. Exit 0 only where they agree within the stated
tolerances. Without a CUDA device the CPU half runs and one line says no GPU was there.

    bash scripts/check_gpu.sh            # sets up .venv, then this script
    python scripts/check_gpu.py --out runs/gpu-check --epochs 20

Tolerances: the analysis reads one checkpoint (trained on the CPU) on both devices, so its
numbers differ by float32 rounding alone, and an s-acc or l-acc by at most a couple of test
examples (`ANALYSIS_TOLERANCE`); training and ``figures --quick`` train on each device,
whose kernels order their sums differently, so they are held to `TRAINED_TOLERANCE`.
"""

import argparse
import gzip
import io
import json
import subprocess
import sys
import time
from pathlib import Path

ANALYSIS_TOLERANCE = 2e-3
"""Largest difference allowed between the devices' analyses of one checkpoint (3 of 1,500
test examples)."""
TRAINED_TOLERANCE = 0.05
"""Largest difference allowed between numbers of models trained on each device."""


def run(out: Path, device: str, argv: list[str]) -> float:
    """``headcoop`` with ``argv`` on ``device``; its wall time in seconds."""
    clock = time.perf_counter()
    command = [sys.executable, "-m", "headcoop.cli", *argv, "--device", device]
    done = subprocess.run(command, capture_output=True, text=True)
    (out / f"{device}.log").open("a").write(done.stdout + done.stderr)
    if done.returncode != 0:
        sys.exit(f"check_gpu: `headcoop {argv[0]}` failed on {device}: {done.stderr[-400:]}")
    return time.perf_counter() - clock


def stages(out: Path, device: str, epochs: int) -> dict[str, float]:
    """Every stage on ``device``, into ``out/device``; the seconds of each."""
    where = out / device
    seconds = {}
    train = ["train", "--out", str(where / "paper"), "--epochs", str(epochs), "--quiet"]
    seconds["train"] = run(out, device, [*train, "--overwrite"])
    checkpoint = out / "cpu" / "paper"  # both devices analyse one checkpoint
    analyze = ["analyze", str(checkpoint), "--out", str(where / "analysis"), "--quiet"]
    seconds["analyze (all sets)"] = run(out, device, [*analyze, "--subsets", "all"])
    figures = ["figures", "--quick", "--no-png", "--quiet", "--out", str(where / "figures")]
    figures += ["--cache", str(where / "cache"), "--claims", str(where / "no-lab")]
    seconds["figures --quick"] = run(out, device, figures)
    summary = json.loads((where / "analysis" / "summary.json").read_text())
    seconds["all-subsets pass"] = summary["seconds"].get("all_subsets", float("nan"))
    return seconds


def numbers(frame_bytes: bytes, gz: bool = False) -> "object":
    """The numeric columns of a CSV file's bytes (gzipped where ``gz``)."""
    import pandas as pd

    raw = gzip.decompress(frame_bytes) if gz else frame_bytes
    return pd.read_csv(io.BytesIO(raw)).select_dtypes("number")


def largest_differences(out: Path) -> dict[str, tuple[float, float]]:
    """For each reported file: the largest difference between the devices, and its
    tolerance."""
    found = {}
    files = {
        "analysis/heads.csv": ANALYSIS_TOLERANCE,
        "analysis/pairs.csv": ANALYSIS_TOLERANCE,
        "analysis/subsets.csv.gz": ANALYSIS_TOLERANCE,
        "figures/table1.csv": TRAINED_TOLERANCE,
    }
    for name, tolerance in files.items():
        a, b = (
            numbers((out / d / name).read_bytes(), name.endswith(".gz")) for d in ("cuda", "cpu")
        )
        found[name] = (float((a - b).abs().max().max()), tolerance)
    metrics = [json.loads((out / d / "paper" / "final" / "config.json").read_text())["metrics"]
               for d in ("cuda", "cpu")]  # fmt: skip
    accuracy = [m["test"][next(iter(m["test"]))] for m in metrics]
    found["train: test accuracy"] = (abs(accuracy[0] - accuracy[1]), TRAINED_TOLERANCE)
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("runs/gpu-check"))
    parser.add_argument("--epochs", type=int, default=20, help="epochs of the paper's model")
    args = parser.parse_args()
    import torch

    args.out.mkdir(parents=True, exist_ok=True)
    cpu = stages(args.out, "cpu", args.epochs)
    if not torch.cuda.is_available():
        times = ", ".join(f"{k} {v:.1f} s" for k, v in cpu.items())
        print(f"no CUDA device here: the CPU half ran ({times}); run this on a GPU machine")
        return 0
    cuda = stages(args.out, "cuda", args.epochs)
    print(f"{'stage':<22} {'cuda (s)':>9} {'cpu (s)':>9}")
    for stage in cpu:
        print(f"{stage:<22} {cuda[stage]:9.1f} {cpu[stage]:9.1f}")
    agree = True
    print(f"\n{'numbers':<26} {'largest difference':>18} {'tolerance':>10}")
    for name, (difference, tolerance) in largest_differences(args.out).items():
        agree &= difference <= tolerance
        print(f"{name:<26} {difference:18.2e} {tolerance:10.0e}")
    print("the devices agree" if agree else "the devices DISAGREE beyond the tolerances")
    return 0 if agree else 1


if __name__ == "__main__":
    sys.exit(main())
