"""The judged definitions of a set's logits on the main models (the paper's head-only logits
and ablation with the direct path kept), seed by seed.

Trains (or reads from the figures cache) the main models of `make figures` and prints, for
each seed, how many single heads and pairs are above chance in answer l-acc and perfect in
[EOS] l-acc and how many answer one class almost always, under each definition, and the direct
path's size.

    python scripts/compare_definitions.py [--cache runs/figures] [--quick]
"""

import argparse
import json


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", default="runs/figures", help="the figures' cache directory")
    parser.add_argument("--quick", action="store_true", help="the quick plan (a smoke test)")
    args = parser.parse_args()

    from headcoop import Definition
    from headcoop.paper.compute import FigureData
    from headcoop.paper.plan import Plan
    from headcoop.paper.summary import l_acc_counts

    plan = Plan.quick() if args.quick else Plan.paper()
    data = FigureData(plan, args.cache, progress=True)
    for seed in plan.main_seeds:
        found = data.analysis(seed)
        summary = found.summary
        shares = list(summary["class_shares"].values())
        row = {"classes": summary["classes"], "direct_path": summary["direct_path"]}
        for definition in Definition.judged_ones():
            counts = l_acc_counts(
                found.heads_frame(),
                found.pairs_frame(),
                summary["majority_share"],
                shares,
                definition,
            )
            row[definition.value] = {definition.plain(k): n for k, n in counts.items()}
        print(f"seed {seed}: {json.dumps(row)}")


if __name__ == "__main__":
    main()
