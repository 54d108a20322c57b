"""Training steps of the paper's stacks: the compiled CPU kernel against the torch path.

For each of Table 1's eight stacks and the Fig 2 grid's five, builds the stack the sweep
trains, then times training steps (loss, backward, AdamW) on one thread, alternating rounds of
the two paths on the same batches, and prints milliseconds per step and their ratio. The
kernel is `Stack.loss` (`headcoop.engine.fused`); the torch path is
``batch_loss(stack.logits(...))``, what other devices run. Run it on idle cores.

    python scripts/bench_fused.py [--steps 100] [--rounds 3]
"""

import argparse


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=100, help="steps per round and path")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds per path")
    args = parser.parse_args()

    from headcoop.memory import keep_freed_memory

    keep_freed_memory()  # as the command line does (see headcoop.memory)

    import torch

    from headcoop import Count01, TrainConfig, build_model
    from headcoop.paper.compute import grid_stacks, table1_stacks
    from headcoop.paper.plan import Plan
    from headcoop.training.trainer import _StackedStep, make_optimizer

    torch.set_num_threads(1)
    torch.set_flush_denormal(True)  # as in training
    plan, task, cfg = Plan.paper(), Count01(), TrainConfig()
    stacks = [("Table 1", s) for s in table1_stacks(plan)]
    stacks += [("Fig 2 grid", s) for s in grid_stacks(plan)]
    print(f"torch {torch.__version__}, 1 thread, {args.rounds} x {args.steps} steps a path")
    print(f"{'stack':<36} {'kernel ms':>9} {'torch ms':>9} {'ratio':>6}")
    for name, experiments in stacks:
        models = [build_model(e.model, len(task.vocab), e.seed) for e in experiments]
        step = _StackedStep(task, models, cfg)
        optimizer = make_optimizer(step.params, cfg)
        batches = torch.randperm(len(step.train_bags)).split(cfg.batch_size)[: args.steps]
        generator = torch.Generator().manual_seed(0)

        timed = (step, optimizer, batches, generator, cfg.dropout)
        _ms_per_step(*timed, fused=True), _ms_per_step(*timed, fused=False)  # compile, warm up
        times = {True: [], False: []}
        for _ in range(args.rounds):
            for fused in (True, False):
                times[fused].append(_ms_per_step(*timed, fused=fused))
        kernel, torch_path = min(times[True]), min(times[False])
        shape = experiments[0].model
        heads = max(e.model.n_heads for e in experiments)
        label = f"{name}: {len(models)} x d_model {shape.d_model}, {heads} heads"
        print(f"{label:<36} {kernel:>9.2f} {torch_path:>9.2f} {torch_path / kernel:>5.2f}x")


def _ms_per_step(step, optimizer, batches, generator, dropout, fused: bool) -> float:
    """Milliseconds per training step (loss, backward, AdamW) over ``batches``, on the kernel
    (``fused``) or the torch path."""
    import time

    from headcoop.engine.loss import batch_loss

    start = time.perf_counter()
    for rows in batches:
        pairs, targets = step.train_pairs[rows], step.train_bags.targets[rows]
        if fused:
            loss = step.stack.loss(pairs, targets, dropout, generator)
        else:
            loss = batch_loss(step.stack.logits(pairs, dropout, generator), targets)
        loss.item()
        optimizer.zero_grad(set_to_none=True)
        (loss * len(step.models)).backward()
        optimizer.step()
    return (time.perf_counter() - start) / len(batches) * 1e3


if __name__ == "__main__":
    main()
