"""Sweep speed: Table 1's stacks and the Fig 2 grid on the stacked engine, against one
TransformerLens model at a time on bags, and against the arithmetic floor, in one run.

For each workload (the paper plan's Table 1 stacks, as `make figures` builds them, and the
Fig 2 grid), training steps of the paper's settings (7,000 examples, batch 64, AdamW) run

- on the sweep engine: `headcoop.train_models` on each stack, one epoch (building the models
  is not timed), in this process with every core, then spread over one single-threaded worker
  process per core as `make figures` runs it (timed: the busiest worker's training);
- one model at a time through the TransformerLens forward on bags (the bag hook on the
  pattern, `batch_loss`, backward, AdamW): a few hundred steps of one model per shape,
  extrapolated to the workload;

and each is reported in model-examples per second, with their ratio. The floor is the
workload's forward and backward arithmetic counted per model at its own shape (3 times the
forward's multiply-adds: the essential products of attention over the token types present,
the output projection, LayerNorm and unembedding), over this machine's dense float32 matmul
rate, measured here; the engine's share is floor time / engine time.

Run on idle cores: anything else running slows every number.

    python scripts/bench_sweep.py [--steps 200]
"""

import argparse
import time
from collections import Counter


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=200, help="steps of each lone model")
    parser.add_argument("--quick", action="store_true", help="the quick plan's sweeps, 10 steps")
    args = parser.parse_args()

    from headcoop.memory import keep_freed_memory

    keep_freed_memory()  # as the command line does (see headcoop.memory)

    import torch

    from headcoop import TrainConfig, build_model, train_models
    from headcoop.engine.batches import read_logits
    from headcoop.engine.loss import batch_loss
    from headcoop.paper.compute import grid_stacks, table1_stacks
    from headcoop.paper.plan import Plan
    from headcoop.runinfo import machine

    plan = Plan.quick() if args.quick else Plan.paper()
    task, steps = plan.make_task(), 10 if args.quick else args.steps
    cfg = TrainConfig(epochs=1)
    n_train = len(task.split("train"))
    info = machine()
    print(
        f"{info['cores']} cores, torch {info['torch']} ({info['torch_threads']} threads), "
        f"transformer-lens {info['transformer_lens']}; {n_train} training examples"
    )
    rate = dense_matmul_rate(torch)
    print(f"dense float32 matmul: {rate / 1e9:.1f} GFLOP/s")

    bags = task.bags(task.split("train"))
    for name, stacks in (("Table 1", table1_stacks(plan)), ("Fig 2 grid", grid_stacks(plan))):
        experiments = [e for stack in stacks for e in stack]
        n_models = len(experiments)
        built = [[build_model(e.model, len(task.vocab), e.seed) for e in s] for s in stacks]
        start = time.perf_counter()
        for models in built:
            train_models(task, models, cfg)
        engine = time.perf_counter() - start
        pooled = time_in_workers(stacks, task, info["cores"])

        shapes = Counter(e.model for e in experiments)
        lone = 0.0
        for shape, count in shapes.items():
            model = build_model(shape, len(task.vocab), 0)
            optimizer = torch.optim.AdamW(
                [p for p in model.parameters() if p.requires_grad], lr=cfg.lr
            )
            batches = torch.randperm(n_train).split(cfg.batch_size)[:steps]
            start = time.perf_counter()
            for idx in batches:
                batch = bags[idx]
                loss = batch_loss(read_logits(model, batch), batch.targets)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
            per_example = (time.perf_counter() - start) / sum(len(b) for b in batches)
            lone += per_example * n_train * count

        floor = sum(forward_flops(e.model, len(task.vocab), 2) for e in experiments)
        floor_seconds = 3 * floor * n_train / rate
        work = n_models * n_train
        print(f"{name}: {n_models} models in {len(stacks)} stack(s), one epoch each")
        print(
            f"  sweep engine:              {work / engine:12,.0f} model-examples/s ({engine:.1f} s)"
        )
        print(
            f"  one TL model at a time:    {work / lone:12,.0f} model-examples/s "
            f"({lone:.1f} s, extrapolated from {steps} steps a shape)"
        )
        print(
            f"  sweep engine, {info['cores']} workers: {work / pooled:12,.0f} model-examples/s "
            f"({pooled:.1f} s)"
        )
        print(f"  ratio sweep engine / one TL model at a time: {lone / engine:.1f}x")
        print(f"  ratio sweep engine in workers / one TL model at a time: {lone / pooled:.1f}x")
        print(
            f"  floor: {3 * floor * n_train / 1e9:.2f} GFLOP, {floor_seconds:.2f} s at the "
            f"matmul rate; the engine runs at {100 * floor_seconds / engine:.1f}% of it "
            f"({100 * floor_seconds / pooled:.1f}% in workers)"
        )


def time_in_workers(stacks, task, workers: int) -> float:
    """Training time of one epoch of every stack spread over ``workers`` single-threaded
    processes: the busiest worker's total, building the models left out, as above."""
    import multiprocessing
    from collections import defaultdict
    from concurrent.futures import ProcessPoolExecutor

    context = multiprocessing.get_context("spawn")
    busy = defaultdict(float)
    with ProcessPoolExecutor(workers, context, one_thread) as pool:
        for worker, seconds in pool.map(train_one_epoch, stacks, [task] * len(stacks)):
            busy[worker] += seconds
    return max(busy.values())


def one_thread() -> None:
    import torch

    torch.set_num_threads(1)


def train_one_epoch(experiments, task) -> tuple[int, float]:
    """One epoch of a stack on ``task``, in a worker: (the worker's pid, seconds of training)."""
    import os

    from headcoop import TrainConfig, build_model, train_models

    models = [build_model(e.model, len(task.vocab), e.seed) for e in experiments]
    start = time.perf_counter()
    train_models(task, models, TrainConfig(epochs=1))
    return os.getpid(), time.perf_counter() - start


def forward_flops(model, d_vocab: int, reads: int) -> float:
    """Multiply-adds x 2 of one example's forward at its scored positions: attention of each
    head over the token types (at most d_vocab present), the output projection, the final
    LayerNorm and the unembedding; the per-step tables (d_vocab-sized) are left out, since a
    batch shares them."""
    d, h, e = model.d_model, model.n_heads, model.d_head
    attention = d_vocab * h * (e + 1) * 2
    projection = h * e * d * 2
    norm = 8 * d if model.layernorm else 0
    unembed = d * d_vocab * 2
    return reads * (attention + projection + norm + unembed)


def dense_matmul_rate(torch, n: int = 1024, repeats: int = 20) -> float:
    """Float32 FLOP/s of a square matmul on this machine."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * n**3 * repeats / (time.perf_counter() - start)


if __name__ == "__main__":
    main()
