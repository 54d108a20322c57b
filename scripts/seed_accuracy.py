"""Train the paper's model (default settings) for several seeds and report test accuracy.

Each seed is exactly ``headcoop train --seed S``; runs resume where they stopped. Writes
``OUT/seed_accuracy.csv`` and ``.json`` and prints a table.

    python scripts/seed_accuracy.py --seeds 0 1 2 3 4 5 6 7 8 9 --out runs/seeds
"""

import argparse
import json
import statistics
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=list(range(10)))
    parser.add_argument("--out", type=Path, default=Path("runs/seeds"))
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--lr-schedule", default="cosine", choices=("cosine", "constant"))
    args = parser.parse_args()

    from headcoop import Count01, ModelConfig, TrainConfig, evaluate, train
    from headcoop.files import write_atomic

    task, rows = Count01(), []
    for seed in args.seeds:
        start = time.perf_counter()
        model = train(
            task,
            ModelConfig(),
            TrainConfig(seed=seed, epochs=args.epochs, lr_schedule=args.lr_schedule),
            out=args.out / f"seed_{seed}",
            resume=True,
            progress=True,
        )
        test = evaluate(model, task, task.split("test"))
        rows.append(
            {
                "seed": seed,
                "test_answer": test["answer"],
                "test_eos": test["eos"],
                "seconds": round(time.perf_counter() - start, 1),
            }
        )
        print(f"seed {seed}: test answer {test['answer']:.4f}, eos {test['eos']:.4f}", flush=True)

    accuracies = [r["test_answer"] for r in rows]
    summary = {"rows": rows, "mean": statistics.mean(accuracies), "min": min(accuracies)}
    name = "seed_accuracy" + (
        "" if args.seeds == list(range(10)) else "_" + "_".join(map(str, args.seeds))
    )
    write_atomic(args.out / f"{name}.json", json.dumps(summary, indent=2) + "\n")
    lines = ["seed,test_answer,test_eos,seconds"]
    lines += [f"{r['seed']},{r['test_answer']},{r['test_eos']},{r['seconds']}" for r in rows]
    write_atomic(args.out / f"{name}.csv", "\n".join(lines) + "\n")
    print(
        f"mean test accuracy {summary['mean']:.4f}, min {summary['min']:.4f} over {len(rows)} seeds"
    )


if __name__ == "__main__":
    main()
