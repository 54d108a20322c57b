"""All-subsets analysis speed and s-acc accuracy, against scikit-learn's LinearSVC.

For one trained model of the paper's setup (16 heads), times l-acc, ROC AUC and s-acc of all
65,536 sets of heads, then checks s-acc against ``LinearSVC(C=1000)`` (squared hinge, L2) on
random sets and times LinearSVC fitted set by set on both cores (joblib), extrapolated to all
sets.

    python scripts/bench_subsets.py runs/seeds/seed_0 [--check 200]
"""

import argparse
import time
import warnings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", help="a trained 16-head checkpoint (or run directory)")
    parser.add_argument("--check", type=int, default=200, help="sets compared with LinearSVC")
    args = parser.parse_args()

    import torch
    from joblib import Parallel, delayed

    from headcoop import load_checkpoint, task_from_config
    from headcoop.analysis import SetMeasure
    from headcoop.attribution import decompose
    from headcoop.cache import collect
    from headcoop.subsets import all_subsets, learned_accuracy, roc_auc

    model, config = load_checkpoint(args.checkpoint)
    task = task_from_config(config["task"])
    start = time.perf_counter()
    train = collect(model, task, task.split("train"))
    test = collect(model, task, task.split("test"))
    measure = SetMeasure(task, train, test, decompose(model, test))
    cache_seconds = time.perf_counter() - start

    masks = all_subsets(model.cfg.n_heads)
    targets, choices = test.targets[:, 0], measure.choices
    timings = {}
    start = time.perf_counter()
    learned_accuracy(measure.decomposition, masks, targets, 0, choices)
    timings["l-acc"] = time.perf_counter() - start
    start = time.perf_counter()
    roc_auc(measure.decomposition, masks, targets, 0, choices)
    timings["ROC AUC"] = time.perf_counter() - start
    start = time.perf_counter()
    s_acc = measure.s_acc(masks, progress=True)
    timings["s-acc"] = time.perf_counter() - start
    total = sum(timings.values())
    print(
        f"{len(masks)} sets of {model.cfg.n_heads} heads; {len(train)} train and "
        f"{len(test)} test examples (caches: {cache_seconds:.1f} s)"
    )
    for name, seconds in timings.items():
        print(f"  {name:<8} {seconds:8.1f} s")
    print(f"  {'total':<8} {total:8.1f} s")

    from sklearn.svm import LinearSVC

    first = measure.choices[0]
    x, y = train.z[:, 0].flatten(1).numpy(), (train.targets[:, 0] == first).numpy()
    x_test, y_test = test.z[:, 0].flatten(1).numpy(), (test.targets[:, 0] == first).numpy()
    picks = torch.randperm(len(masks) - 1, generator=torch.Generator().manual_seed(0))[: args.check]
    picks = picks + 1  # not the empty set
    d_head = model.cfg.d_head

    def fit(index: int) -> float:
        cols = masks[index].repeat_interleave(d_head).numpy()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # liblinear's ConvergenceWarning at max_iter
            svc = LinearSVC(C=1000, loss="squared_hinge", penalty="l2").fit(x[:, cols], y)
        return svc.score(x_test[:, cols], y_test)

    start = time.perf_counter()
    reference = Parallel(n_jobs=2)(delayed(fit)(int(i)) for i in picks)
    sk_seconds = (time.perf_counter() - start) / len(picks) * len(masks)
    differences = (s_acc[picks] - torch.tensor(reference)).abs()
    print(
        f"s-acc vs LinearSVC on {len(picks)} random sets: max |difference| "
        f"{differences.max():.4f}, mean {differences.mean():.5f}, within 1 point: "
        f"{(differences <= 0.01 + 1e-6).float().mean():.1%}"
    )
    print(
        f"LinearSVC set by set on 2 cores, extrapolated to {len(masks)} sets: "
        f"{sk_seconds:.0f} s; ratio LinearSVC / batched s-acc: {sk_seconds / timings['s-acc']:.1f}"
    )


if __name__ == "__main__":
    main()
