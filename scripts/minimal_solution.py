"""Test accuracy of the paper's hand-built minimal solution (appendix A) for several N.

python scripts/minimal_solution.py [--N 4 5 6 7 8 10]
"""

import argparse


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--N", type=float, nargs="+", default=[4, 5, 6, 7, 8, 10])
    args = parser.parse_args()

    from headcoop import Count01, evaluate
    from headcoop.paper.minimal import minimal_solution

    task = Count01()
    for n in args.N:
        metrics = evaluate(minimal_solution(N=n), task, task.split("test"))
        print(
            f"N = {n:g}: test accuracy answer {metrics['answer']:.4f}, [EOS] {metrics['eos']:.4f}"
        )


if __name__ == "__main__":
    main()
