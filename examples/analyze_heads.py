"""Analyse the heads of a trained model from Python (any registered task; Count01 here).

headcoop train --out runs/paper        # or: make train
python examples/analyze_heads.py runs/paper
"""

import sys

import torch

import headcoop
from headcoop import attention_sweep, candidate_ids, collect, decompose, trajectory

run = sys.argv[1] if len(sys.argv) > 1 else "runs/paper"
model, config = headcoop.load_checkpoint(run)
task = headcoop.task_from_config(config["task"])

# Every per-head metric, and the metrics of each pair of heads, under both definitions of a
# set's logits: the paper's head-only logits (l_acc) and ablation with the direct path kept.
result = headcoop.analyze(model, task, subsets=False, progress=True)
print(result.heads_frame().round(3).to_string(index=False))
print(result.summary["classes"], result.summary["direct_path"])

# Logit attribution: z_{t,i} for each test example, head and token; adds up to the logits.
cache = collect(model, task, task.split("test"))
parts = decompose(model, cache)
first, second = candidate_ids(task, task.decision)[:2].tolist()
decision = parts.head_logits[:, task.decision]  # [example head d_vocab]
bias = (decision[..., first] - decision[..., second]).mean(0)
print(
    f"mean z_{task.vocab[first]} - z_{task.vocab[second]} by head:",
    [round(v, 2) for v in bias.tolist()],
)

# Fix the attention at the decision (for Count01: no '2', w01 swept) and measure each head
# again (the paper's Figure 8).
ratio = next(iter(task.attention_ratios))
ratios = torch.logspace(-3, 3, 7).tolist()
s_acc = attention_sweep(model, task, [{ratio: r} for r in ratios])
for r, row in zip(ratios, s_acc, strict=True):
    print(f"{ratio} = {r:8.3f}: s-acc mean {row.mean():.3f}, std {row.std():.3f}")

# Heads over training, from the run's epoch checkpoints.
path = trajectory(run, task, epochs=[10, 50, 100])
print(path.to_pandas().groupby("epoch")[["s_acc", "accuracy", "weighted_s_acc"]].mean())
