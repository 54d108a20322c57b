"""Models per minute of the claims search, beside the grid's default setting, in one run.

Both train and measure (the claims' evidence) the paper plan's models from an empty cache:
first the lab's default setting (its 5 seeds as one stack, as the grid trains it), then a
search of N trials in batches over the worker processes. The search's trials vary epochs and
batch size, so its models per minute are also given per default-model's worth of training
(epochs over the default's). Run on idle cores.

    python scripts/bench_search.py [--trials 8] [--workers 2]
"""

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

from headcoop.memory import keep_freed_memory
from headcoop.paper.lab import setting, train_settings
from headcoop.paper.plan import Plan
from headcoop.paper.search import SearchRun, search
from headcoop.paper.search_report import trials_frame


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--quick", action="store_true", help="the quick plan (a smoke run)")
    args = parser.parse_args()
    keep_freed_memory()
    plan = Plan.quick() if args.quick else Plan.paper()
    root = Path(tempfile.mkdtemp(prefix="bench-search-"))
    seeds = len(plan.lab.seeds)

    clock = time.perf_counter()
    train_settings(plan, [setting({})], plan.make_task(), root / "grid" / "claims", 1, False, None)
    grid = time.perf_counter() - clock

    clock = time.perf_counter()
    run = SearchRun(batch=args.workers * 2, workers=args.workers)
    study = search(plan, root / "search", root / "lab", args.trials, run)
    searched = time.perf_counter() - clock
    trials = trials_frame(study)
    models, worth = len(trials) * seeds, float(trials["cost"].sum())

    grid_rate = 60 * seeds / grid
    rate, worth_rate = 60 * models / searched, 60 * worth / searched
    print(f"grid's default setting: {seeds} models in {grid:.1f} s: {grid_rate:.1f} models/min")
    print(
        f"search: {len(trials)} trials, {models} models ({worth:.1f} default models' worth) in "
        f"{searched:.1f} s on {args.workers} workers: {rate:.1f} models/min, {worth_rate:.1f} "
        f"default models' worth/min ({worth_rate / grid_rate:.2f}x the grid's rate)"
    )
    print(f"1,000 models at this rate: {1000 / rate:.1f} min")
    return 0


if __name__ == "__main__":
    sys.exit(main())
