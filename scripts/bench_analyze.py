"""Speed of `headcoop analyze` beyond one attention-only layer, side by side in one run.

1. All 256 sets of a two-layer induction model (2 x 4 heads) on 4,000 test sequences of 17
   tokens, `_direct` and `_mean`: the ablation engine (one forward pass per distinct set of
   layer-0 heads, the last layer per set at the scored positions) against the plain approach,
   one hooked forward of the whole test split per set and definition, timed on 16 sets and
   scaled to 256.
2. The paper's model (16 heads, 65,536 sets): `analyze` with its defaults (200 bootstrap
   resamples behind every interval) against the same without intervals (``bootstrap=0``).
3. A one-layer 16-head induction model (24 classes): `analyze` with its defaults, and what
   its s-acc budget chose.

Run on idle cores: `make bench-analyze` (the paper's model from `make train`); `--quick`
(`make bench QUICK=1`) checks that it runs, in seconds.
"""

import sys
import time

import torch

from headcoop import analyze, build_model, load_checkpoint
from headcoop.config import BOOTSTRAP, ModelConfig
from headcoop.engine.ablation import Ablation, ablation_means
from headcoop.engine.batches import inference_batches, read_logits
from headcoop.engine.cache import collect
from headcoop.metrics.subsets import all_subsets
from headcoop.tasks import Count01, Induction
from headcoop.tasks.base import candidate_ids

TWO_LAYERS = ModelConfig(
    d_model=32, n_heads=4, d_head=8, n_layers=2, positional=True, layernorm=False, n_ctx=17
)


def engine_seconds(model, task, masks) -> float:
    """Every set's decision logits, zero and mean ablation, by the ablation engine."""
    test, train = task.split("test"), collect(model, task, task.split("train"))
    clock = time.perf_counter()
    for means in (None, ablation_means(train)):
        Ablation(model, task, test, means).set_logits(masks, task.decision, _candidates(task))
    return time.perf_counter() - clock


def plain_seconds(model, task, masks) -> float:
    """The same by one hooked forward of the whole test split per set (zero ablation; the
    mean's passes cost the same, so the time is doubled)."""
    clock = time.perf_counter()
    for mask in masks:
        hooks = [
            (f"blocks.{layer}.attn.hook_z", _zero(mask[layer * 4 : layer * 4 + 4]))
            for layer in range(2)
        ]
        for _, batch in inference_batches(model, task, task.split("test"), "full", 512):
            read_logits(model, batch, hooks)
    return 2 * (time.perf_counter() - clock)


def _zero(keep: torch.Tensor):
    return lambda z, hook: z * keep.float()[None, None, :, None]


def _candidates(task):
    return candidate_ids(task, task.decision)


@torch.no_grad()
def main(paper_run: str, quick: bool = False) -> None:
    """The three measurements; ``quick``: 400 sequences, 4 sets timed plainly, the paper's
    model and the wide one on every set of their first heads only (a smoke run)."""
    torch.manual_seed(0)
    task = Induction(size=400 if quick else 4000)
    model = build_model(TWO_LAYERS, len(task.vocab), seed=0)
    masks = all_subsets(8)
    timed = 4 if quick else 16
    engine = engine_seconds(model, task, masks)
    plain = plain_seconds(model, task, masks[:: len(masks) // timed]) * len(masks) / timed
    print(f"two-layer induction, 256 sets x {task.size:,} sequences, _direct and _mean: "
          f"engine {engine:.1f} s, plain per-set passes {plain:.0f} s ({timed} sets timed, "
          f"scaled): {plain / engine:.0f}x")  # fmt: skip
    subsets = "sampled" if quick else True
    paper, _ = load_checkpoint(paper_run)
    seconds = {}
    for bootstrap in (0, BOOTSTRAP):
        clock = time.perf_counter()
        result = analyze(paper, Count01(), subsets=subsets, bootstrap=bootstrap)
        seconds[bootstrap] = time.perf_counter() - clock
        print(f"paper's model, 65,536 sets, {bootstrap} resamples: {seconds[bootstrap]:.1f} s "
              f"(stages {result.summary['seconds']})")  # fmt: skip
    print(f"the intervals cost {seconds[BOOTSTRAP] / seconds[0] - 1:+.0%} on top")
    wide = build_model(ModelConfig(n_heads=16, positional=True, n_ctx=17), len(task.vocab), 0)
    clock = time.perf_counter()
    result = analyze(wide, task, subsets=subsets)
    plan = result.summary["subsets"]
    print(f"one-layer induction, 16 heads, 24 classes, defaults: "
          f"{time.perf_counter() - clock:.1f} s; the plan: {plan}")  # fmt: skip


if __name__ == "__main__":
    arguments = [a for a in sys.argv[1:] if a != "--quick"]
    main(arguments[0] if arguments else "runs/paper", quick="--quick" in sys.argv)
