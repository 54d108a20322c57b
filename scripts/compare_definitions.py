"""The two definitions of a set's logits on the main models: the paper's head-only logits and
ablation with the direct path kept, seed by seed.

Trains (or reads from the figures cache) the main models of `make figures` and prints, for
each seed, how many single heads and pairs are above chance in answer l-acc and perfect in
[EOS] l-acc under each definition, and the direct path's size.

    python scripts/compare_definitions.py [--cache runs/figures] [--quick]
"""

import argparse
import json


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", default="runs/figures", help="the figures' cache directory")
    parser.add_argument("--quick", action="store_true", help="the quick plan (a smoke test)")
    args = parser.parse_args()

    from headcoop.metrics.attribution import SUFFIX
    from headcoop.metrics.classes import CHANCE_MARGIN
    from headcoop.paper.compute import FigureData
    from headcoop.paper.plan import FigurePlan

    plan = FigurePlan.quick() if args.quick else FigurePlan.paper()
    data = FigureData(plan, args.cache, progress=True)
    report = {}
    for seed in plan.main_seeds:
        found = data.analysis(seed)
        heads, pairs, summary = found["heads"], found["pairs"], found["summary"]
        chance = summary["majority_share"]
        row = {"classes": summary["classes"], "direct_path": summary["direct_path"]}
        for name, suffix in SUFFIX.items():
            row[name] = {
                "single_heads_above_chance": int(
                    (heads[f"l_acc{suffix}"] > chance + CHANCE_MARGIN).sum()
                ),
                "pairs_above_chance": int((pairs[f"l_acc{suffix}"] > chance + CHANCE_MARGIN).sum()),
                "eos_perfect_single_heads": int((heads[f"eos_l_acc{suffix}"] >= 1.0).sum()),
                "eos_perfect_pairs": int((pairs[f"eos_l_acc{suffix}"] >= 1.0).sum()),
            }
        report[seed] = row
        print(f"seed {seed}: {json.dumps(row)}")


if __name__ == "__main__":
    main()
