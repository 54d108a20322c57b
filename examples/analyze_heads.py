"""Analyse the heads of a trained Count01 model from Python.

headcoop train --out runs/paper        # or: make train
python examples/analyze_heads.py runs/paper
"""

import sys

import torch

import headcoop
from headcoop.analysis.dynamics import trajectory
from headcoop.analysis.heads import analyze, attention_sweep
from headcoop.metrics.attribution import decompose
from headcoop.metrics.cache import collect

run = sys.argv[1] if len(sys.argv) > 1 else "runs/paper"
model, config = headcoop.load_checkpoint(run)
task = headcoop.task_from_config(config["task"])

# Every per-head metric, and the three decision metrics of each pair of heads.
result = analyze(model, task, subsets=False, progress=True)
print(result.heads_frame().round(3).to_string(index=False))
print(result.summary["classes"])

# Logit attribution: z_{t,i} for each test example, head and token; adds up to the logits.
cache = collect(model, task, task.split("test"))
parts = decompose(model, cache)
four, five = task.vocab.index("4"), task.vocab.index("5")
bias_toward_4 = (parts.head_logits[:, 0, :, four] - parts.head_logits[:, 0, :, five]).mean(0)
print("mean z_4 - z_5 by head:", [round(v, 2) for v in bias_toward_4.tolist()])

# Fix the attention at '=' (no '2', w01 swept) and measure each head again (Figure 8).
ratios = torch.logspace(-3, 3, 7).tolist()
s_acc = attention_sweep(model, task, [{"w01": r} for r in ratios])
for r, row in zip(ratios, s_acc, strict=True):
    print(f"w01 = {r:8.3f}: s-acc mean {row.mean():.3f}, std {row.std():.3f}")

# Heads over training, from the run's epoch checkpoints.
path = trajectory(run, task, epochs=[10, 50, 100])
print(path.to_pandas().groupby("epoch")[["s_acc", "accuracy", "weighted_s_acc"]].mean())
