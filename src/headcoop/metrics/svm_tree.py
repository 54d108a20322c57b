"""`fit_separators` on the CPU: the sets' squared-hinge problems solved one at a time down the
tree of sets, compiled by numba.

`headcoop.metrics.separation` defines the problem and solves batches of sets with whole-batch
torch operations. On a CPU each of those streams [set, example] arrays of tens of megabytes
through memory, so a Newton step of a batch runs at memory speed. Here a set is solved alone:
its margins and active examples (one vector over the examples each) stay in the core's cache
through its Newton steps, and its step touches only its own features.

The sets form a forest: a set's parent is the set less its highest head, where that is among
the sets. Solved in depth-first order, a child starts where its parent ended, with the
parent's margins, active examples and Gram matrix, as the batched solver does. Each set keeps
its Gram matrix only over the features that it or its descendants use (`_needed_features`).
Subtrees are split into jobs of a size fixed by the number of sets (so the result does not
depend on the number of threads) and run on a pool of threads; each job's first set starts
afresh from its parent's optimum. The arithmetic is the batched solver's, with a Cholesky
factorisation for the Newton system.
"""

from concurrent.futures import ThreadPoolExecutor
from typing import no_type_check

import numba
import numpy as np

from headcoop.progress import progress_bar

_FASTMATH = {"reassoc", "contract", "nsz"}
"""Sums in any order and fused multiply-adds (the order of a sum is rounding), nothing else."""

JOBS = 64
"""About this many jobs of subtrees share the threads (the trunk above them runs first)."""


def fit_tree(
    signed: np.ndarray,
    keep: np.ndarray,
    parent: np.ndarray,
    sample: np.ndarray,
    C: float,
    max_iter: int,
    threads: int,
    progress: bool = False,
) -> np.ndarray:
    """The optimal weights of each set: ndarray of shape (n_sets, n_features).

    Args:
        signed: ndarray of shape (n_examples, n_features), float64: each example's features
            (the intercept's 1 last) times its class sign.
        keep: ndarray of shape (n_sets, n_features), bool: each set's features.
        parent: ndarray of shape (n_sets,): each set's parent row (a subset of it), or -1.
        sample: indices of the examples whose optimum starts a set without a parent.
        C, max_iter: as `headcoop.metrics.separation.fit_separators`.
        threads: threads that solve the jobs.
        progress: show a progress bar over the jobs.
    """
    order, size, depth = _forest(parent)
    need = _needed_features(keep, parent, order)
    weights = np.zeros(keep.shape, np.float64)
    xt = np.ascontiguousarray(signed.T)  # [feature example]: a step's margins, feature by feature
    xr = np.ascontiguousarray(signed)  # [example feature]: an example's Gram term
    sample_xt, sample_xr = np.ascontiguousarray(xt[:, sample]), np.ascontiguousarray(xr[sample])
    levels = int(depth.max()) + 1 if len(depth) else 1

    def solve(nodes: np.ndarray) -> np.ndarray:
        _solve_sequence(xt, xr, sample_xt, sample_xr, nodes, parent, keep, need, weights,
                        float(C), int(max_iter), levels)  # fmt: skip
        return nodes

    trunk, jobs = _jobs(order, size, parent)
    solve(trunk)
    jobs.sort(key=len, reverse=True)  # the largest first: the threads finish together
    bar = progress_bar(
        total=len(keep), initial=len(trunk), desc="s-acc", unit="set", disable=not progress
    )
    with bar, ThreadPoolExecutor(max(1, threads)) as pool:
        for nodes in pool.map(solve, jobs):
            bar.update(len(nodes))
    return weights


def _jobs(
    order: np.ndarray, size: np.ndarray, parent: np.ndarray
) -> tuple[np.ndarray, list[np.ndarray]]:
    """The trunk (sets whose subtree holds more than 1/JOBS of the sets, in depth-first order)
    and the jobs: runs of whole subtrees below it, each of at most that many sets."""
    limit = max(1, len(order) // JOBS)
    trunk = size > limit
    position = np.empty_like(order)
    position[order] = np.arange(len(order))
    roots = order[~trunk[order] & ((parent[order] < 0) | trunk[np.maximum(parent[order], 0)])]
    jobs, batch, batch_size = [], [], 0
    for root in roots.tolist():
        if batch and batch_size + size[root] > limit:
            jobs.append(np.concatenate(batch))
            batch, batch_size = [], 0
        batch.append(order[position[root] : position[root] + size[root]])
        batch_size += size[root]
    if batch:
        jobs.append(np.concatenate(batch))
    return order[trunk[order]], jobs


@no_type_check  # compiled by numba: no runtime type checks
@numba.njit(cache=True, nogil=True)
def _forest(parent):
    """Depth-first order of the forest (children in row order), each set's subtree size and
    depth."""
    n = len(parent)
    first = np.zeros(n + 2, np.int64)  # children of row r at first[r + 1] : first[r + 2]
    for r in range(n):
        first[parent[r] + 2] += 1
    for r in range(1, n + 2):
        first[r] += first[r - 1]
    children = np.empty(n, np.int64)
    fill = first[:-1].copy()
    for r in range(n):
        children[fill[parent[r] + 1]] = r
        fill[parent[r] + 1] += 1
    order = np.empty(n, np.int64)
    depth = np.zeros(n, np.int64)
    stack = np.empty(n, np.int64)
    top = 0
    for k in range(first[1] - 1, first[0] - 1, -1):  # roots, the first on top
        stack[top] = children[k]
        top += 1
    count = 0
    while top > 0:
        top -= 1
        r = stack[top]
        order[count] = r
        count += 1
        for k in range(first[r + 2] - 1, first[r + 1] - 1, -1):
            stack[top] = children[k]
            depth[children[k]] = depth[r] + 1
            top += 1
    size = np.ones(n, np.int64)
    for k in range(n - 1, -1, -1):
        r = order[k]
        if parent[r] >= 0:
            size[parent[r]] += size[r]
    return order, size, depth


@no_type_check  # compiled by numba: no runtime type checks
@numba.njit(cache=True, nogil=True)
def _needed_features(keep, parent, order):
    """Each set's features or any of its descendants': where its Gram matrix is kept."""
    need = keep.copy()
    for k in range(len(order) - 1, -1, -1):
        r = order[k]
        if parent[r] >= 0:
            need[parent[r]] |= need[r]
    return need


@no_type_check  # compiled by numba: no runtime type checks
@numba.njit(fastmath=_FASTMATH, cache=True, nogil=True, error_model="numpy")
def _solve_sequence(xt, xr, sample_xt, sample_xr, nodes, parent, keep, need, weights, C,
                    max_iter, levels):  # fmt: skip
    """Solve ``nodes`` in order (depth-first order of whole subtrees, or the trunk). A set
    whose parent is the last set solved at the level above takes over its parent's state;
    any other starts from its parent's weights (already solved), or from the optimum on the
    sample if it has no parent."""
    n_examples, n_features = xr.shape
    margins = np.empty((levels, n_examples))
    active = np.empty((levels, n_examples), np.bool_)
    grams = np.zeros((levels, n_features, n_features))
    held = np.full(levels, -1)  # the set whose state each level holds
    work = _scratch(n_examples, n_features)
    n_sample = len(sample_xr)  # the state of a set without a parent, solved on the sample
    sample_margins, sample_active = np.empty(n_sample), np.empty(n_sample, np.bool_)
    sample_gram, sample_work = np.empty((n_features, n_features)), _scratch(n_sample, n_features)
    top = -1
    for node in nodes:
        p = parent[node]
        while top >= 0 and held[top] != p:
            top -= 1
        cols, needed = np.flatnonzero(keep[node]), np.flatnonzero(need[node])
        w = weights[node]
        if top >= 0:
            level = top + 1
            margins[level] = margins[top]
            active[level] = active[top]
            grams[level] = grams[top]
            w[:] = weights[p]
        else:
            level = 0
            if p >= 0:
                w[:] = weights[p]
            else:
                w[:] = 0.0
                sample_state = (w, sample_margins, sample_active, sample_gram)
                _start(sample_xt, sample_xr, cols, cols, *sample_state)
                _newton(sample_xt, sample_xr, cols, cols, *sample_state, C, max_iter, sample_work)
            _start(xt, xr, cols, needed, w, margins[level], active[level], grams[level])
        _newton(xt, xr, cols, needed, w, margins[level], active[level], grams[level], C,
                max_iter, work)  # fmt: skip
        held[level] = node
        top = level


@no_type_check  # compiled by numba: no runtime type checks
@numba.njit(cache=True, nogil=True)
def _scratch(n_examples, n_features):
    """Scratch arrays of `_newton`: step margins, changed examples, Hessian, step, gradient."""
    square, vector = np.empty((n_features, n_features)), np.empty(n_features)
    return np.empty(n_examples), np.empty(n_examples, np.int64), square, vector, vector.copy()


@no_type_check  # compiled by numba: no runtime type checks
@numba.njit(fastmath=_FASTMATH, cache=True, nogil=True, error_model="numpy")
def _start(xt, xr, cols, needed, w, margins, active, gram):
    """Margins, active examples and Gram matrix (over ``needed``) at ``w``, from scratch."""
    _combine(xt, cols, w[cols], margins)
    for n in range(len(margins)):
        active[n] = margins[n] < 1.0
    _rebuild_gram(xr, needed, active, gram)


@no_type_check  # compiled by numba: no runtime type checks
@numba.njit(fastmath=_FASTMATH, cache=True, nogil=True, error_model="numpy")
def _rebuild_gram(xr, needed, active, gram):
    """gram[needed, needed] = the sum of x x^T over the active examples."""
    for a in needed:
        for b in needed:
            gram[a, b] = 0.0
    for n in range(len(active)):
        if active[n]:
            _add_outer(xr[n], needed, 1.0, gram)


@no_type_check  # compiled by numba: no runtime type checks
@numba.njit(fastmath=_FASTMATH, cache=True, nogil=True, error_model="numpy")
def _add_outer(x, needed, sign, gram):
    """gram[needed, needed] += sign * x x^T (over ``needed``)."""
    for i in needed:
        xi = sign * x[i]
        for j in needed:
            gram[i, j] += xi * x[j]


@no_type_check  # compiled by numba: no runtime type checks
@numba.njit(fastmath=_FASTMATH, cache=True, nogil=True, error_model="numpy")
def _newton(xt, xr, cols, needed, w, margins, active, gram, C, max_iter, work):
    """Newton's method from ``w`` (with its margins, active examples and Gram matrix) to the
    optimum on features ``cols``; every argument after ``cols`` is updated in place. As
    `headcoop.metrics.separation._newton`: a full step that leaves the active examples
    unchanged has landed on the optimum."""
    n_examples, f = len(margins), len(cols)
    sm, changed, hessian, step, grad = work
    hessian, step, grad = hessian[:f, :f], step[:f], grad[:f]
    for _ in range(max_iter):
        for a in range(f):
            grad[a] = w[cols[a]]
        for n in range(n_examples):
            if active[n]:
                r = 2.0 * C * (margins[n] - 1.0)
                x = xr[n]
                for a in range(f):
                    grad[a] += r * x[cols[a]]
        for a in range(f):
            for b in range(a + 1):
                hessian[a, b] = 2.0 * C * gram[cols[a], cols[b]]
            hessian[a, a] += 1.0
        _cholesky_solve(hessian, grad, step)
        _combine(xt, cols, step, sm)
        alpha = _step_length(w, cols, step, margins, sm, C)
        for a in range(f):
            w[cols[a]] -= alpha * step[a]
        n_changed, n_active = 0, 0
        for n in range(n_examples):  # branch-free: few examples change
            margins[n] -= alpha * sm[n]
            now = margins[n] < 1.0
            n_changed += now != active[n]
            n_active += now
        if n_changed > 0:
            k = 0
            for n in range(n_examples):
                now = margins[n] < 1.0
                if now != active[n]:
                    changed[k] = n
                    k += 1
                    active[n] = now
        if n_changed > n_active:
            _rebuild_gram(xr, needed, active, gram)
        else:
            for k in range(n_changed):
                n = changed[k]
                _add_outer(xr[n], needed, 1.0 if active[n] else -1.0, gram)
        if n_changed == 0 and alpha == 1.0:
            return


@no_type_check  # compiled by numba: no runtime type checks
@numba.njit(fastmath=_FASTMATH, cache=True, nogil=True, error_model="numpy")
def _combine(xt, cols, coefs, out):
    """out = sum_a coefs[a] xt[cols[a]]: four rows a pass, so that ``out`` is read and
    written once per four rows (the pass runs at the speed of the cache that holds it)."""
    n, f = len(out), len(cols)
    out[:] = 0.0
    a = 0
    while a < f:
        if a + 4 <= f:
            c0, c1, c2, c3 = coefs[a], coefs[a + 1], coefs[a + 2], coefs[a + 3]
            r0, r1, r2, r3 = xt[cols[a]], xt[cols[a + 1]], xt[cols[a + 2]], xt[cols[a + 3]]
            for k in range(n):
                out[k] += (c0 * r0[k] + c1 * r1[k]) + (c2 * r2[k] + c3 * r3[k])
            a += 4
        else:
            c0, r0 = coefs[a], xt[cols[a]]
            for k in range(n):
                out[k] += c0 * r0[k]
            a += 1


@no_type_check  # compiled by numba: no runtime type checks
@numba.njit(fastmath=_FASTMATH, cache=True, nogil=True, error_model="numpy")
def _cholesky_solve(h, b, x):
    """x = h^-1 b for a symmetric positive definite h given by its lower triangle, which is
    overwritten by its Cholesky factor."""
    f = len(b)
    for j in range(f):
        s = h[j, j]
        for k in range(j):
            s -= h[j, k] * h[j, k]
        h[j, j] = np.sqrt(s)
        for i in range(j + 1, f):
            s = h[i, j]
            for k in range(j):
                s -= h[i, k] * h[j, k]
            h[i, j] = s / h[j, j]
    for i in range(f):
        s = b[i]
        for k in range(i):
            s -= h[i, k] * x[k]
        x[i] = s / h[i, i]
    for i in range(f - 1, -1, -1):
        s = x[i]
        for k in range(i + 1, f):
            s -= h[k, i] * x[k]
        x[i] = s / h[i, i]


@no_type_check  # compiled by numba: no runtime type checks
@numba.njit(fastmath=_FASTMATH, cache=True, nogil=True, error_model="numpy")
def _step_length(w, cols, step, margins, step_margins, C):
    """`headcoop.metrics.separation._line_search` for one set: 1 unless the objective
    already rises there, else the exact minimiser in (0, 1) by safeguarded Newton steps on
    the slope."""
    wd, dd, ww = 0.0, 0.0, 0.0
    for a in range(len(cols)):
        wa = w[cols[a]]
        wd += wa * step[a]
        dd += step[a] * step[a]
        ww += wa * wa
    slope, curvature = _slope(1.0, wd, dd, margins, step_margins, C)
    if not slope > 1e-9 * curvature or dd <= 1e-24 * max(ww, 1.0):
        return 1.0
    lo, hi, alpha = 0.0, 1.0, 1.0
    for _ in range(30):
        newton = alpha - slope / curvature
        alpha = newton if lo < newton < hi else (lo + hi) / 2
        slope, curvature = _slope(alpha, wd, dd, margins, step_margins, C)
        if not abs(slope) > 1e-9 * curvature * alpha:
            break
        if slope <= 0:
            lo = alpha
        else:
            hi = alpha
    return alpha


@no_type_check  # compiled by numba: no runtime type checks
@numba.njit(fastmath=_FASTMATH, cache=True, nogil=True, error_model="numpy")
def _slope(alpha, wd, dd, margins, step_margins, C):
    """The objective's slope and curvature along the step at ``alpha``."""
    pull, bend = 0.0, 0.0
    for n in range(len(margins)):
        s = max(0.0, 1.0 - margins[n] + alpha * step_margins[n])
        pull += step_margins[n] * s
        bend += step_margins[n] * step_margins[n] * (s > 0.0)
    return alpha * dd - wd + 2.0 * C * pull, dd + 2.0 * C * bend
