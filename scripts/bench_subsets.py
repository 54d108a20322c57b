"""All-subsets analysis speed and s-acc accuracy, against scikit-learn's LinearSVC.

For one trained model of the paper's setup (16 heads), times l-acc, ROC AUC and s-acc of all
65,536 sets of heads (after a first call on a few sets, which compiles the CPU kernels or loads
them from numba's cache). Then times the separators' fit down the tree of sets (the CPU
solver) against the batched solver (the one other devices use) on all sets, side by side, and
compares their optima; checks s-acc against ``LinearSVC(C=1000)`` (squared hinge, L2) on
random sets, and times LinearSVC fitted set by set on both cores (joblib), extrapolated to all
sets.

    python scripts/bench_subsets.py runs/seeds/seed_0 [--check 200]
"""

import argparse
import time
import warnings

import numpy as np
import torch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", help="a trained 16-head checkpoint (or run directory)")
    parser.add_argument("--check", type=int, default=200, help="sets compared with LinearSVC")
    quick = "the 256 sets of the first 8 heads, 20 compared (a smoke run)"
    parser.add_argument("--quick", action="store_true", help=quick)
    args = parser.parse_args()
    if args.quick:
        args.check = 20

    from headcoop.memory import keep_freed_memory

    keep_freed_memory()  # as the command line does (see headcoop.memory)

    from joblib import Parallel, delayed

    from headcoop import Definition, SetLogits, load_checkpoint, task_from_config
    from headcoop.engine.cache import collect
    from headcoop.heads.set_scorer import SetScorer
    from headcoop.metrics.separation import fit_separators
    from headcoop.metrics.subsets import all_subsets, logit_metrics

    model, config = load_checkpoint(args.checkpoint)
    task = task_from_config(config["task"])
    start = time.perf_counter()
    train = collect(model, task, task.split("train"))
    test = collect(model, task, task.split("test"))
    logits = SetLogits.of(model, task, train, test, task.split("test"))
    measure = SetScorer(task, train, test, logits)
    cache_seconds = time.perf_counter() - start

    masks = all_subsets(model.cfg.n_heads)
    if args.quick:  # the sets of the first 8 heads
        masks = masks[: 2**8]
    read = task.decision
    targets, candidates = test.targets[:, read], measure.candidates
    start = time.perf_counter()
    measure(masks[:64])
    first_call = time.perf_counter() - start
    timings = {}
    for definition in Definition:
        start = time.perf_counter()
        logit_metrics(logits.readers[definition], masks, targets, read, candidates)
        timings[f"l-acc, AUC ({definition.value})"] = time.perf_counter() - start
    start = time.perf_counter()
    s_acc = measure.s_acc(masks, progress=True)
    timings["s-acc"] = time.perf_counter() - start
    total = sum(timings.values())
    print(
        f"{len(masks)} sets of {model.cfg.n_heads} heads; {len(train)} train and "
        f"{len(test)} test examples (caches: {cache_seconds:.1f} s; first call on 64 sets, "
        f"compiling or loading the kernels: {first_call:.1f} s)"
    )
    for name, seconds in timings.items():
        print(f"  {name:<24} {seconds:8.1f} s")
    print(f"  {'total':<24} {total:8.1f} s")

    positive, test_positive = measure.train_labels == 1, measure.test_labels == 1
    compare_solvers(train.z[:, read], positive, test.z[:, read], masks)

    from sklearn.svm import LinearSVC

    x, y = train.z[:, read].flatten(1).double().numpy(), positive.numpy()
    x_test, y_test = test.z[:, read].flatten(1).numpy(), test_positive.numpy()
    picks = torch.randperm(len(masks) - 1, generator=torch.Generator().manual_seed(0))
    picks = (picks[: args.check] + 1).tolist()  # not the empty set
    ours_w = fit_separators(train.z[:, read], positive, masks[picks]).numpy()
    d_head = model.cfg.d_head

    def fit(index: int, tol: float, max_iter: int) -> tuple[float, np.ndarray]:
        cols = masks[index].repeat_interleave(d_head).numpy()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # liblinear's ConvergenceWarning at max_iter
            svc = LinearSVC(C=1000, tol=tol, max_iter=max_iter).fit(x[:, cols], y)
        return svc.score(x_test[:, cols], y_test), np.append(svc.coef_[0], svc.intercept_[0])

    def objective(index: int, w: np.ndarray) -> float:
        cols = masks[index].repeat_interleave(d_head).numpy()
        features = np.hstack([x[:, cols], np.ones((len(x), 1))])
        slack = np.maximum(0, 1 - np.where(y, 1, -1) * (features @ w))
        return 0.5 * w @ w + 1000 * (slack**2).sum()

    for label, tol, max_iter in (("default", 1e-4, 1000), ("tol 1e-8", 1e-8, 100_000)):
        start = time.perf_counter()
        fitted = Parallel(n_jobs=2)(delayed(fit)(i, tol, max_iter) for i in picks)
        seconds = (time.perf_counter() - start) / len(picks) * len(masks)
        differences = (s_acc[picks] - torch.tensor([a for a, _ in fitted])).abs()
        no_worse = np.mean(
            [
                objective(i, _own(ours, masks[i], d_head)) <= objective(i, theirs) * (1 + 1e-9)
                for i, ours, (_, theirs) in zip(picks, ours_w, fitted, strict=True)
            ]
        )
        print(
            f"LinearSVC ({label}) on {len(picks)} random sets: s-acc max |difference| "
            f"{differences.max():.4f}, mean {differences.mean():.5f}, within 1 point "
            f"{(differences <= 0.01 + 1e-6).float().mean():.1%}; our objective no higher in "
            f"{no_worse:.1%}; set by set on 2 cores, extrapolated to {len(masks)} sets: "
            f"{seconds:.0f} s, ratio to our s-acc {seconds / timings['s-acc']:.1f}"
        )


def compare_solvers(
    x: torch.Tensor, positive: torch.Tensor, x_test: torch.Tensor, masks: torch.Tensor
) -> None:
    """The separators of all sets down the tree and in batches: time, objective, predictions."""
    from headcoop.metrics.separation import _fit_batches, _problem, _with_intercept, fit_separators

    start = time.perf_counter()
    tree = fit_separators(x, positive, masks)
    tree_seconds = time.perf_counter() - start
    problem = _problem(x, positive, masks)
    start = time.perf_counter()
    batches = _fit_batches(*problem, 1000.0, 100, False)
    batch_seconds = time.perf_counter() - start
    signed, test = problem[0], _with_intercept(x_test.flatten(1))
    gaps, agree = [], []
    for t, b in zip(tree.split(4096), batches.split(4096), strict=True):
        objectives = [
            0.5 * (w * w).sum(-1) + 1000 * ((1 - w @ signed.T).clamp(min=0) ** 2).sum(-1)
            for w in (t, b)
        ]
        gaps.append((objectives[0] - objectives[1]) / objectives[1])
        agree.append(((t @ test.T > 0) == (b @ test.T > 0)).all(-1))
    gap, agree = torch.cat(gaps), torch.cat(agree)
    print(
        f"separators of all {len(masks)} sets: down the tree {tree_seconds:.1f} s vs in batches "
        f"{batch_seconds:.1f} s, ratio {batch_seconds / tree_seconds:.1f}; objective relative "
        f"difference max {gap.abs().max():.1e} (tree higher by more than 1e-9 on "
        f"{int((gap > 1e-9).sum())}); identical test predictions on {agree.float().mean():.2%}"
    )


def _own(weights: np.ndarray, mask: torch.Tensor, d_head: int) -> np.ndarray:
    """The weights of a set's own features (and the intercept) from the full layout."""
    return np.append(weights[:-1][mask.repeat_interleave(d_head).numpy()], weights[-1])


if __name__ == "__main__":
    main()
