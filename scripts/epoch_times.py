"""Epoch times of one sweep stack over its training, and how often it needs the underflow path.

Trains one stack of the paper plan (Table 1's rows, or the Fig 2 grid's d_model stacks) on one
thread, the way a sweep worker does, and prints every ``--every`` epochs the mean time of an
epoch and the number of steps in which some model's softmax denominators underflowed (so that
those models' reads were recomputed one by one). ``--keep-denormals`` trains without flushing
denormal floats to zero, to show what the flush saves: run both on idle cores, one after the
other.

    python scripts/epoch_times.py --table1-row 0 [--epochs 100] [--keep-denormals]
    python scripts/epoch_times.py --grid-stack 4
"""

import argparse
import contextlib
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--table1-row", type=int, help="index of a Table 1 row (0-7)")
    which.add_argument("--grid-stack", type=int, help="index of a Fig 2 grid stack (0-4)")
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--every", type=int, default=10, help="epochs per printed line")
    parser.add_argument("--keep-denormals", action="store_true", help="do not flush them")
    args = parser.parse_args()

    from headcoop.memory import keep_freed_memory

    keep_freed_memory()  # as the command line does (see headcoop.memory)

    import torch

    import headcoop.engine.fused as fused_module
    import headcoop.training.trainer as trainer_module
    from headcoop import Count01, TrainConfig, build_model
    from headcoop.paper.compute import grid_stacks, table1_stacks
    from headcoop.paper.plan import Plan

    torch.set_num_threads(1)
    plan, task = Plan.paper(), Count01()
    if args.table1_row is not None:
        experiments = table1_stacks(plan)[args.table1_row]
    else:
        experiments = grid_stacks(plan)[args.grid_stack]
    if args.keep_denormals:
        trainer_module._denormals_flushed = contextlib.nullcontext

    underflows = 0
    stack_loss = fused_module.stack_loss

    def counted(*call_args):
        nonlocal underflows
        losses, lowest = stack_loss(*call_args)
        underflows += bool((lowest < call_args[-1]).any())  # the last argument: the floor
        return losses, lowest

    fused_module.stack_loss = counted
    shape = experiments[0].model
    print(
        f"{len(experiments)} models, d_model {shape.d_model}, up to "
        f"{max(e.model.n_heads for e in experiments)} heads, "
        f"denormals {'kept' if args.keep_denormals else 'flushed'}"
    )
    models = [build_model(e.model, len(task.vocab), e.seed) for e in experiments]
    last = time.perf_counter()

    def report(end) -> None:
        nonlocal last, underflows
        if end.epoch % args.every == 0:
            now = time.perf_counter()
            print(
                f"epochs {end.epoch - args.every + 1}-{end.epoch}: "
                f"{(now - last) / args.every:.2f} s/epoch, {underflows} steps with underflow"
            )
            last, underflows = now, 0

    trainer_module.train_models(task, models, TrainConfig(epochs=args.epochs), on_epoch=report)


if __name__ == "__main__":
    main()
