"""A stack's training loss and its gradient in one compiled pass over each model, on the CPU.

`headcoop.engine.stack` defines what a stack computes with whole-stack torch operations. On a
CPU those stream every intermediate ([model, ..., read] tensors of megabytes) through memory
once per operation, so a step of a large stack runs at memory speed, several times below what
the cores compute. This module computes the same loss and gradients model by model, in one
function compiled by numba: a model's tables and its reads' activations (a few kilobytes)
stay in the core's cache from the first operation to the last. `Stack.loss` uses it on CPU
stacks and checks it against the torch path in the tests, quantity by quantity.

The arithmetic is the torch path's, in the same order of operations except where a sum runs
in another order (float32 rounding), and with an exp of its own (`_exp_in_place`, within a
unit in the last place). Beyond that:
- A read sees only pairs of its own query token, so the reads are sorted by query token and
  each contracts only its query's block of the (query, key) tables.
- A model whose softmax denominators underflow under one shift per query token is computed
  again with a shift per read, as the torch path does (`_attend_read_by_read`).
- The gradient is computed in the forward pass (a training step asks for both), and the
  autograd backward only scales it.
"""

import math
from typing import Any, no_type_check

import numba
import numpy as np
import torch
from jaxtyping import Float, Int

_FASTMATH = {"reassoc", "contract", "nsz"}
"""Reordered sums and fused multiply-adds (float32 rounding, as torch's own kernels), never
approximate functions or assumptions about infinities."""


class FusedLoss(torch.autograd.Function):
    """Each model's mean negative log-likelihood over the reads, with the gradient of every
    parameter computed in the same pass; backward scales it by the incoming gradient.

    ``reads`` are a step's pair counts [read pair], the reads' own tokens, their targets and
    the query tokens; ``params`` the stack's tensors in `PARAM_ORDER`. The second output is
    each model's smallest softmax denominator under one shift per query token (below
    ``floor``, `_step` has recomputed the model with a shift per read).
    """

    @staticmethod
    def forward(ctx: Any, reads: tuple[torch.Tensor, ...], mask: torch.Tensor, eps: float,
                scale: float, floor: float, flags: tuple[bool, bool],
                *params: torch.Tensor):  # fmt: skip
        sorted_reads = _sort_reads(*(t.contiguous().numpy() for t in reads))
        arrays = [p.detach().contiguous().numpy() for p in params]
        grads = [np.empty_like(a) for a in arrays]
        n_models = arrays[0].shape[0]
        loss = np.empty(n_models, np.float32)
        lowest = np.empty(n_models, np.float32)
        scalars = np.float32(eps), np.float32(scale), np.float32(floor)  # float32 throughout
        _step(*sorted_reads, mask.numpy(), *scalars, *flags, *arrays, loss, lowest, *grads)
        ctx.save_for_backward(*(torch.from_numpy(g) for g in grads))
        lowest_t = torch.from_numpy(lowest)
        ctx.mark_non_differentiable(lowest_t)
        return torch.from_numpy(loss), lowest_t

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor, _: Any) -> tuple[torch.Tensor | None, ...]:
        scaled = [g.mul_(grad.view(-1, *[1] * (g.dim() - 1))) for g in ctx.saved_tensors]
        return (None,) * 6 + tuple(scaled)


PARAM_ORDER = (
    "embed.W_E",
    "blocks.0.ln1.w",
    "blocks.0.ln1.b",
    "blocks.0.attn.W_Q",
    "blocks.0.attn.W_K",
    "blocks.0.attn.W_V",
    "blocks.0.attn.b_Q",
    "blocks.0.attn.b_K",
    "blocks.0.attn.b_V",
    "blocks.0.attn.W_O",
    "blocks.0.attn.b_O",
    "ln_final.w",
    "ln_final.b",
    "unembed.W_U",
    "unembed.b_U",
    "dim_mask",
)
"""The tensors the kernel reads, in its order. A stack without LayerNorms passes stand-ins
(ones and zeros) for their four entries, and all ones for ``dim_mask`` when unpadded."""


@no_type_check  # compiled by numba: no runtime type checks
@numba.njit(cache=True, boundscheck=False, nogil=True)
def _sort_reads(counts, read_tokens, targets, queries):
    """A step's reads sorted by query token (stable), as `_step` takes them: the pair counts
    [pair read], where each query token's reads start (and the last ends), the reads' own
    tokens, their targets, their positions in the step (where `_step` finds their dropout
    multipliers), and [query key] the pairs some read sees."""
    R, P = counts.shape
    U = len(queries)
    V = P // U
    query = np.empty(R, np.int64)
    starts = np.zeros(U + 1, np.int64)
    for r in range(R):
        query[r] = np.searchsorted(queries, read_tokens[r])
        starts[query[r] + 1] += 1
    for u in range(U):
        starts[u + 1] += starts[u]
    free = starts[:U].copy()  # each query's next place
    order = np.empty(R, np.int64)
    for r in range(R):
        order[free[query[r]]] = r
        free[query[r]] += 1
    C = np.empty((P, R), np.float32)
    tok = np.empty(R, np.int64)
    tgt = np.empty(R, np.int64)
    visible = np.zeros((U, V), np.bool_)
    for i in range(R):
        r = order[i]
        tok[i], tgt[i] = read_tokens[r], targets[r]
        for p in range(P):
            C[p, i] = counts[r, p]
            if counts[r, p] > 0:
                visible[p // V, p % V] = True
    return C, starts, tok, tgt, queries, visible, order


@no_type_check  # compiled by numba: no runtime type checks
@numba.njit(fastmath=_FASTMATH, error_model="numpy", cache=True, boundscheck=False, nogil=True)
def _step(
    C, starts, tok, tgt, queries, visible, order, mask, eps, scale, floor, has_ln1, has_lnf,
    W_E, ln1_w, ln1_b, W_Q, W_K, W_V, b_Q, b_K, b_V, W_O, b_O, lnf_w, lnf_b, W_U, b_U, dim_mask,
    loss, lowest,
    gW_E, gln1_w, gln1_b, gW_Q, gW_K, gW_V, gb_Q, gb_K, gb_V, gW_O, gb_O, glnf_w, glnf_b, gW_U,
    gb_U, g_dim_mask,
):  # fmt: skip
    n_models, V, Dm = W_E.shape
    H, E = W_Q.shape[1], W_Q.shape[3]
    U, R = len(queries), C.shape[1]
    has_mask = mask.shape[2] == R
    inv_r = np.float32(1.0 / R)
    # one model's intermediates, reused model after model
    x = np.empty((V, Dm), np.float32)  # LayerNorm-ed embeddings (the keys' and queries' input)
    xhat1 = np.empty((V, Dm), np.float32)
    rstd1 = np.empty(V, np.float32)
    xT = np.empty((Dm, V), np.float32)
    q = np.empty((H, E, U), np.float32)
    kT = np.empty((H, E, V), np.float32)
    val = np.empty((H, E, V), np.float32)
    scores = np.empty((H, U, V), np.float32)
    w = np.empty((H, U, V), np.float32)  # exp(score - shift), 0 where unseen
    gN = np.empty((H, E, U, V), np.float32)  # gradient of the numerator tables
    gw = np.empty((H, U, V), np.float32)  # ... and of the weights
    gq = np.empty((H, E, U), np.float32)
    gk = np.empty((H, E, V), np.float32)
    grow = np.empty(V, np.float32)
    gval = np.empty((H, E, V), np.float32)
    gx = np.empty((V, Dm), np.float32)
    gxT = np.empty((Dm, V), np.float32)
    den = np.empty((H, R), np.float32)
    z = np.empty((H * E, R), np.float32)
    attn = np.empty((Dm, R), np.float32)
    resid = np.empty((Dm, R), np.float32)  # the residual, then its normalised form
    fin = np.empty((Dm, R), np.float32)
    rstd = np.empty(R, np.float32)
    p = np.empty((V, R), np.float32)  # logits, then softmax, then the loss's gradient
    dfin = np.empty((Dm, R), np.float32)
    dz = np.empty((H * E, R), np.float32)  # the gradient of z
    mx = np.empty(R, np.float32)
    acc = np.empty(R, np.float32)
    acc2 = np.empty(R, np.float32)
    accv = np.empty(V, np.float32)
    accv2 = np.empty(V, np.float32)
    bits = np.empty(max(R, H * U * V), np.int32)
    for m in range(n_models):
        width = np.float32(0)
        for d in range(Dm):
            width += dim_mask[m, d]
        # --- tables: the query, key and value of every token type, and exp(scores) ---
        for v in range(V):
            for d in range(Dm):
                x[v, d] = W_E[m, v, d]
        if has_ln1:
            _layernorm_rows(x, xhat1, rstd1, ln1_w[m], ln1_b[m], dim_mask[m], width, eps)
        _tables(x, xT, queries, visible, W_Q[m], W_K[m], W_V[m], b_Q[m], b_K[m], b_V[m], scale,
                q, kT, val, scores, w)  # fmt: skip
        _exp_in_place(w.reshape(-1), bits)  # all heads' weights at once
        # --- each read's attention output: counted means over its query's block ---
        lowest[m] = _attend(C, starts, w, val, den, z, floor)
        by_read = lowest[m] < floor  # then each read's scores get a shift of their own
        if by_read:
            _attend_read_by_read(C, starts, scores, val, den, z)
        _project(W_O[m], z, attn)
        # --- residual, final LayerNorm, logits and loss ---
        for d in range(Dm):
            act = attn[d]
            for r in range(R):
                act[r] += b_O[m, d]
            if has_mask:
                md = mask[m, d]
                for r in range(R):
                    act[r] *= md[order[r]]
            rd = resid[d]
            for r in range(R):
                rd[r] = W_E[m, tok[r], d] + act[r]
        if has_lnf:
            _layernorm_columns(resid, fin, rstd, acc, acc2, lnf_w[m], lnf_b[m], dim_mask[m],
                               width, eps)  # fmt: skip
        else:
            fin[:] = resid
        for v in range(V):
            pv = p[v]
            pv[:] = b_U[m, v]
            for d in range(Dm):
                _axpy(pv, W_U[m, d, v], fin[d])
        mx[:] = p[0]
        for v in range(1, V):
            pv = p[v]
            for r in range(R):
                mx[r] = max(mx[r], pv[r])
        total = np.float32(0)
        for r in range(R):
            total += mx[r] - p[tgt[r], r]
        acc[:] = 0
        for v in range(V):
            pv = p[v]
            for r in range(R):
                pv[r] -= mx[r]
            _exp_in_place(pv, bits)
            for r in range(R):
                acc[r] += pv[r]
        for r in range(R):
            total += math.log(acc[r])
            acc[r] = inv_r / acc[r]
        loss[m] = total * inv_r
        for v in range(V):
            _mul(p[v], acc)
        for r in range(R):
            p[tgt[r], r] -= inv_r
        # --- backward: unembedding, final LayerNorm, embedding of the reads ---
        for v in range(V):
            gb_U[m, v] = np.sum(p[v])
            for d in range(Dm):
                gW_U[m, d, v] = _dot(fin[d], p[v])
        for d in range(Dm):
            dfin[d] = 0
            for v in range(V):
                _axpy(dfin[d], W_U[m, d, v], p[v])
        if has_lnf:
            _layernorm_columns_backward(dfin, resid, rstd, acc, acc2, lnf_w[m], dim_mask[m],
                                        width, glnf_w[m], glnf_b[m])  # fmt: skip
        for v in range(V):
            for d in range(Dm):
                gx[v, d] = 0
        for d in range(Dm):
            for r in range(R):
                gx[tok[r], d] += dfin[d, r]  # the embedding's direct path, before the tables'
            if has_mask:
                md, gd = mask[m, d], dfin[d]
                for r in range(R):
                    gd[r] *= md[order[r]]
            gb_O[m, d] = np.sum(dfin[d])
        for v in range(V):
            for d in range(Dm):
                gW_E[m, v, d] = gx[v, d]
        # --- backward: output projection and counted means, to the tables ---
        _project_backward(W_O[m], z, dfin, gW_O[m], dz)
        if by_read:
            _attend_read_by_read_backward(C, starts, scores, val, den, z, dz, gw, gval)
        else:
            _attend_backward(C, starts, den, z, dz, gN, gw, acc)
        # --- backward: exp(scores), queries, keys, values, to the embeddings ---
        _tables_backward(x, xT, queries, visible, W_Q[m], W_K[m], W_V[m], scale, q, kT, val, w,
                         gN, gw, by_read, gq, gk, gval, gx, gxT, grow, gW_Q[m], gW_K[m],
                         gW_V[m], gb_Q[m], gb_K[m], gb_V[m])  # fmt: skip
        if has_ln1:
            _layernorm_rows_backward(gx, xhat1, rstd1, ln1_w[m], dim_mask[m], width, accv,
                                     accv2, gln1_w[m], gln1_b[m])  # fmt: skip
        else:
            for d in range(Dm):
                gln1_w[m, d] = 0
                gln1_b[m, d] = 0
        if not has_lnf:
            for d in range(Dm):
                glnf_w[m, d] = 0
                glnf_b[m, d] = 0
        for v in range(V):
            for d in range(Dm):
                gW_E[m, v, d] += gx[v, d]
                g_dim_mask[m, d] = 0


@no_type_check  # compiled by numba: no runtime type checks
@numba.njit(fastmath=_FASTMATH, error_model="numpy", cache=True, boundscheck=False, inline="always")
def _layernorm_rows(x, xhat, rstd, weight, bias, dim_mask, width, eps):
    """TransformerLens LayerNorm of each row of ``x`` in place (keeping the normalised rows
    and their 1/std for the backward), over the model's own width."""
    for v in range(x.shape[0]):
        mean = np.float32(0)
        for d in range(x.shape[1]):
            mean += x[v, d] * dim_mask[d]
        mean /= width
        var = np.float32(0)
        for d in range(x.shape[1]):
            c = (x[v, d] - mean) * dim_mask[d]
            xhat[v, d] = c
            var += c * c
        rstd[v] = 1 / math.sqrt(var / width + eps)
        for d in range(x.shape[1]):
            xhat[v, d] *= rstd[v]
            x[v, d] = xhat[v, d] * weight[d] + bias[d]


@no_type_check  # compiled by numba: no runtime type checks
@numba.njit(fastmath=_FASTMATH, error_model="numpy", cache=True, boundscheck=False, inline="always")
def _layernorm_rows_backward(g, xhat, rstd, weight, dim_mask, width, acc, acc2, gw, gb):
    """`_layernorm_rows` backward: ``g`` (the output's gradient) becomes the input's, in
    place; ``gw`` and ``gb`` receive the weight's and bias's."""
    for d in range(g.shape[1]):
        s = np.float32(0)
        s2 = np.float32(0)
        for v in range(g.shape[0]):
            s += g[v, d] * xhat[v, d]
            s2 += g[v, d]
        gw[d] = s
        gb[d] = s2
    for v in range(g.shape[0]):
        a = np.float32(0)
        a2 = np.float32(0)
        for d in range(g.shape[1]):
            g[v, d] *= weight[d]
            a += g[v, d] * dim_mask[d]
            a2 += g[v, d] * xhat[v, d]
        acc[v] = a / width
        acc2[v] = a2 / width
    for v in range(g.shape[0]):
        for d in range(g.shape[1]):
            g[v, d] = (g[v, d] - acc[v] - xhat[v, d] * acc2[v]) * rstd[v] * dim_mask[d]


@no_type_check  # compiled by numba: no runtime type checks
@numba.njit(fastmath=_FASTMATH, error_model="numpy", cache=True, boundscheck=False, inline="always")
def _layernorm_columns(x, out, rstd, mean, var, weight, bias, dim_mask, width, eps):
    """TransformerLens LayerNorm of each column of ``x`` (a read's residual): ``x`` becomes
    the normalised columns, ``out`` the LayerNorm's output."""
    Dm, R = x.shape
    for r in range(R):
        mean[r] = 0
        var[r] = 0
    for d in range(Dm):
        for r in range(R):
            mean[r] += x[d, r] * dim_mask[d]
    for r in range(R):
        mean[r] /= width
    for d in range(Dm):
        for r in range(R):
            c = (x[d, r] - mean[r]) * dim_mask[d]
            x[d, r] = c
            var[r] += c * c
    for r in range(R):
        rstd[r] = 1 / math.sqrt(var[r] / width + eps)
    for d in range(Dm):
        for r in range(R):
            x[d, r] *= rstd[r]
            out[d, r] = x[d, r] * weight[d] + bias[d]


@no_type_check  # compiled by numba: no runtime type checks
@numba.njit(fastmath=_FASTMATH, error_model="numpy", cache=True, boundscheck=False, inline="always")
def _layernorm_columns_backward(g, xhat, rstd, acc, acc2, weight, dim_mask, width, gw, gb):
    """`_layernorm_columns` backward, in place on ``g``; ``gw``, ``gb`` as in the rows'."""
    Dm, R = g.shape
    for r in range(R):
        acc[r] = 0
        acc2[r] = 0
    for d in range(Dm):
        s = np.float32(0)
        s2 = np.float32(0)
        for r in range(R):
            s += g[d, r] * xhat[d, r]
            s2 += g[d, r]
            g[d, r] *= weight[d]
            acc[r] += g[d, r] * dim_mask[d]
            acc2[r] += g[d, r] * xhat[d, r]
        gw[d] = s
        gb[d] = s2
    for r in range(R):
        acc[r] /= width
        acc2[r] /= width
    for d in range(Dm):
        for r in range(R):
            g[d, r] = (g[d, r] - acc[r] - xhat[d, r] * acc2[r]) * rstd[r] * dim_mask[d]


def stack_loss(
    params: dict[str, torch.Tensor],
    counts: Float[torch.Tensor, "read pair"],
    read_tokens: Int[torch.Tensor, " read"],
    queries: Int[torch.Tensor, " query"],
    targets: Int[torch.Tensor, " read"],
    mask: Float[torch.Tensor, "model d_model read"] | None,
    eps: float,
    attn_scale: float,
    floor: float,
) -> tuple[Float[torch.Tensor, " model"], Float[torch.Tensor, " model"]]:
    """Each model's mean loss over the reads, and its smallest softmax denominator.

    ``params`` are a float32 CPU stack's (`headcoop.engine.stack.Stack.params`); ``mask`` is
    the dropout multiplier of the attention output, or None without dropout. A model whose
    softmax denominators, under one shift per query token, fall below ``floor`` at some read
    (its smallest is in the second output) is computed again with each read's scores shifted
    on their own, as the torch path does (`headcoop.engine.stack.UNDERFLOW`).
    """
    reads = (counts, read_tokens, targets, queries)
    n_models, d_vocab, d_model = params["embed.W_E"].shape
    ones = params["embed.W_E"].new_ones(n_models, d_model)
    stand_ins = {
        "blocks.0.ln1.w": ones,
        "blocks.0.ln1.b": torch.zeros_like(ones),
        "ln_final.w": ones,
        "ln_final.b": torch.zeros_like(ones),
        "unembed.b_U": ones.new_zeros(n_models, d_vocab),
        "dim_mask": ones,
    }
    tensors = [params[n] if n in params else stand_ins[n] for n in PARAM_ORDER]
    if mask is None:
        mask = ones.new_empty(n_models, d_model, 0)
    flags = ("blocks.0.ln1.w" in params, "ln_final.w" in params)
    return FusedLoss.apply(reads, mask, eps, attn_scale, floor, flags, *tensors)


@no_type_check  # compiled by numba: no runtime type checks
@numba.njit(fastmath=_FASTMATH, error_model="numpy", cache=True, boundscheck=False, inline="always")
def _axpy(y, a, x):
    """y += a * x, for 1-d arrays (written as a loop over 1-d views, which vectorises)."""
    for i in range(len(y)):
        y[i] += a * x[i]


@no_type_check  # compiled by numba: no runtime type checks
@numba.njit(fastmath=_FASTMATH, error_model="numpy", cache=True, boundscheck=False, inline="always")
def _mul(y, x):
    """y *= x, elementwise."""
    for i in range(len(y)):
        y[i] *= x[i]


@no_type_check  # compiled by numba: no runtime type checks
@numba.njit(fastmath=_FASTMATH, error_model="numpy", cache=True, boundscheck=False, inline="always")
def _dot(x, y):
    """The dot product of two 1-d arrays, accumulated in float32."""
    s = np.float32(0)
    for i in range(len(x)):
        s += x[i] * y[i]
    return s


_EXP_LOWEST = np.float32(-87.0)
"""Below this, exp gives 0 here (float32's smallest normal number is exp(-87.3))."""


@no_type_check  # compiled by numba: no runtime type checks
@numba.njit(fastmath={"contract"}, error_model="numpy", cache=True, boundscheck=False)
def _exp_in_place(x, bits):
    """exp of every entry of ``x`` (all <= 0, -inf allowed), in place, within a unit in the
    last place of float32 (measured 7e-8 relative).

    The scalar exp of the C library does not vectorise, and a softmax of a large stack makes
    hundreds of thousands of calls per step. This is the classic float32 scheme: x = k ln 2 + r
    with |r| <= ln(2) / 2 (ln 2 split in two constants, so k ln 2 is exact), a degree-7
    polynomial for exp(r), and 2^k made from its exponent bits (``bits``: int32 scratch at
    least as long as ``x``). Compiled without reassociation, which would undo the split.
    """
    n = len(x)
    for i in range(n):
        v = max(x[i], _EXP_LOWEST)
        k = np.rint(v * np.float32(1.44269504088896341))  # v / ln 2, rounded
        r = v - k * np.float32(0.693359375) - k * np.float32(-2.12194440e-4)
        p = np.float32(1.9875691500e-4)
        p = p * r + np.float32(1.3981999507e-3)
        p = p * r + np.float32(8.3334519073e-3)
        p = p * r + np.float32(4.1665795894e-2)
        p = p * r + np.float32(1.6666665459e-1)
        p = p * r + np.float32(5.0000001201e-1)
        bits[i] = (np.int32(k) + 127) << 23  # the float32 2^k
        x[i] = p * r * r + r + 1 if x[i] >= _EXP_LOWEST else np.float32(0)
    scale = bits[:n].view(np.float32)
    for i in range(n):
        x[i] *= scale[i]


@no_type_check  # compiled by numba: no runtime type checks
@numba.njit(fastmath=_FASTMATH, error_model="numpy", cache=True, boundscheck=False)
def _attend(C, starts, w, val, den, z, floor):
    """One model's attention at every read: ``den`` [head read] the softmax denominators, ``z``
    [head * d_head, read] the heads' outputs. Returns the smallest denominator; one below
    ``floor`` divides as if it were ``floor`` (a finite stand-in, which
    `_attend_read_by_read` replaces).

    Reads are innermost, and each query token's block of reads contracts only that query's
    rows of the tables. (Heads innermost, one read at a time, measured slower even at 64
    heads.)"""
    H, U, V = w.shape
    E = val.shape[1]
    low = np.float32(np.inf)
    for u in range(U):
        r0, r1 = starts[u], starts[u + 1]
        for h in range(H):
            dn = den[h, r0:r1]
            dn[:] = 0
            for v in range(V):
                if w[h, u, v] != 0:
                    _axpy(dn, w[h, u, v], C[u * V + v, r0:r1])
            for r in range(r1 - r0):
                low = min(low, dn[r])
            for e in range(E):
                ze = z[h * E + e, r0:r1]
                ze[:] = 0
                for v in range(V):
                    if w[h, u, v] != 0:
                        _axpy(ze, w[h, u, v] * val[h, e, v], C[u * V + v, r0:r1])
                for r in range(r1 - r0):
                    ze[r] /= max(dn[r], floor)
    return low


@no_type_check  # compiled by numba: no runtime type checks
@numba.njit(fastmath=_FASTMATH, error_model="numpy", cache=True, boundscheck=False)
def _attend_backward(C, starts, den, z, dz, gN, gw, acc):
    """`_attend` backward: from ``dz`` [head * d_head, read], the gradient of ``z`` (divided
    by the denominators in place), the gradients of the numerator (``gN``) and weight
    (``gw``) tables."""
    H, E, U, V = gN.shape
    R = z.shape[1]
    for h in range(H):
        for u in range(U):
            for v in range(V):
                gw[h, u, v] = 0
        for e in range(E):
            zhe, dzhe = z[h * E + e], dz[h * E + e]
            for r in range(R):
                dzhe[r] /= den[h, r]
                acc[r] = -dzhe[r] * zhe[r]
            for u in range(U):
                r0, r1 = starts[u], starts[u + 1]
                for v in range(V):
                    row = C[u * V + v, r0:r1]
                    gN[h, e, u, v] = _dot(dzhe[r0:r1], row)
                    gw[h, u, v] += _dot(acc[r0:r1], row)


@no_type_check  # compiled by numba: no runtime type checks
@numba.njit(fastmath=_FASTMATH, error_model="numpy", cache=True, boundscheck=False)
def _attend_read_by_read(C, starts, scores, val, den, z):
    """`_attend` with each read's softmax shifted by its own largest visible score, as the
    full forward does: for a model whose scores spread so far that one shift per query token
    underflows some read's every weight. Scalar code: few models ever need it."""
    H, U, V = scores.shape
    E = val.shape[1]
    for u in range(U):
        for r in range(starts[u], starts[u + 1]):
            for h in range(H):
                shift = _read_shift(C, scores, h, u, r)
                total = np.float32(0)
                for e in range(E):
                    z[h * E + e, r] = 0
                for v in range(V):
                    c = C[u * V + v, r]
                    if c > 0:
                        a = c * math.exp(scores[h, u, v] - shift)
                        total += a
                        for e in range(E):
                            z[h * E + e, r] += a * val[h, e, v]
                den[h, r] = total
                for e in range(E):
                    z[h * E + e, r] /= total


@no_type_check  # compiled by numba: no runtime type checks
@numba.njit(fastmath=_FASTMATH, error_model="numpy", cache=True, boundscheck=False)
def _attend_read_by_read_backward(C, starts, scores, val, den, z, dz, gs, gval):
    """`_attend_read_by_read` backward: from ``dz``, the gradient of ``z``, the gradients of the
    scores (``gs``) and of the values (``gval``), each read's attention a softmax of its own."""
    H, U, V = scores.shape
    E = val.shape[1]
    gs[:] = 0
    gval[:] = 0
    for u in range(U):
        for r in range(starts[u], starts[u + 1]):
            for h in range(H):
                shift = _read_shift(C, scores, h, u, r)
                mean = np.float32(0)  # dz . z: the output's gradient along itself
                for e in range(E):
                    mean += dz[h * E + e, r] * z[h * E + e, r]
                for v in range(V):
                    c = C[u * V + v, r]
                    if c > 0:
                        a = c * math.exp(scores[h, u, v] - shift) / den[h, r]
                        g = -mean
                        for e in range(E):
                            g += dz[h * E + e, r] * val[h, e, v]
                            gval[h, e, v] += dz[h * E + e, r] * a
                        gs[h, u, v] += a * g


@no_type_check  # compiled by numba: no runtime type checks
@numba.njit(fastmath=_FASTMATH, error_model="numpy", cache=True, boundscheck=False)
def _tables(x, xT, queries, visible, W_Q, W_K, W_V, b_Q, b_K, b_V, scale, q, kT, val, scores,
            w):  # fmt: skip
    """One model's tables from its (LayerNorm-ed) embeddings ``x`` [vocab d_model]: queries
    ``q`` [head d_head query], keys ``kT`` and values ``val`` [head d_head vocab], ``scores``
    [head query key], and in ``w`` the scores minus each query's largest visible one (-inf
    where unseen), for the caller's exp. Vectors run over the vocabulary."""
    H, Dm, E = W_Q.shape
    U, V = visible.shape
    for v in range(V):
        for d in range(Dm):
            xT[d, v] = x[v, d]
    for h in range(H):
        for e in range(E):
            kr, vr = kT[h, e], val[h, e]
            kr[:] = b_K[h, e]
            vr[:] = b_V[h, e]
            for d in range(Dm):
                _axpy(kr, W_K[h, d, e], xT[d])
                _axpy(vr, W_V[h, d, e], xT[d])
            for u in range(U):
                s = b_Q[h, e]
                for d in range(Dm):
                    s += x[queries[u], d] * W_Q[h, d, e]
                q[h, e, u] = s
        for u in range(U):
            row = w[h, u]
            row[:] = 0
            for e in range(E):
                _axpy(row, q[h, e, u], kT[h, e])
            shift = np.float32(-np.inf)
            for v in range(V):
                row[v] /= scale
                scores[h, u, v] = row[v]
                if visible[u, v]:
                    shift = max(shift, row[v])
            for v in range(V):
                row[v] = row[v] - shift if visible[u, v] else -np.inf


@no_type_check  # compiled by numba: no runtime type checks
@numba.njit(fastmath=_FASTMATH, error_model="numpy", cache=True, boundscheck=False)
def _tables_backward(x, xT, queries, visible, W_Q, W_K, W_V, scale, q, kT, val, w, gN, gw,
                     by_read, gq, gk, gval, gx, gxT, grow, gW_Q, gW_K, gW_V, gb_Q, gb_K,
                     gb_V):  # fmt: skip
    """`_tables` backward, with exp: from the gradients of the numerator and weight tables
    (``gN``, ``gw``), or, for a model computed read by read (``by_read``), from the scores'
    gradient in ``gw`` and the values' in ``gval``: the projections' gradients, and in ``gx``
    [vocab d_model] the embeddings'."""
    H, Dm, E = W_Q.shape
    U, V = visible.shape
    gxT[:] = 0
    for h in range(H):
        gk[h] = 0
        gq[h] = 0
        if not by_read:  # (read by read, it holds the values' gradient already)
            gval[h] = 0
        for u in range(U):
            for v in range(V):
                if not visible[u, v]:
                    grow[v] = 0
                elif by_read:
                    grow[v] = gw[h, u, v] / scale
                else:
                    g = gw[h, u, v]
                    for e in range(E):
                        g += gN[h, e, u, v] * val[h, e, v]
                        gval[h, e, v] += gN[h, e, u, v] * w[h, u, v]
                    grow[v] = g * w[h, u, v] / scale  # through exp and the scale
            for e in range(E):
                gq[h, e, u] = _dot(grow, kT[h, e])
                _axpy(gk[h, e], q[h, e, u], grow)
        for e in range(E):
            gb_Q[h, e] = np.sum(gq[h, e])
            gb_K[h, e] = np.sum(gk[h, e])
            gb_V[h, e] = np.sum(gval[h, e])
            for d in range(Dm):
                s = np.float32(0)
                for u in range(U):
                    s += x[queries[u], d] * gq[h, e, u]
                    gxT[d, queries[u]] += W_Q[h, d, e] * gq[h, e, u]
                gW_Q[h, d, e] = s
                gW_K[h, d, e] = _dot(xT[d], gk[h, e])
                gW_V[h, d, e] = _dot(xT[d], gval[h, e])
                _axpy(gxT[d], W_K[h, d, e], gk[h, e])
                _axpy(gxT[d], W_V[h, d, e], gval[h, e])
    for v in range(V):
        for d in range(Dm):
            gx[v, d] = gxT[d, v]


@no_type_check  # compiled by numba: no runtime type checks
@numba.njit(fastmath=_FASTMATH, error_model="numpy", cache=True, boundscheck=False)
def _read_shift(C, scores, h, u, r):
    """The largest score of head ``h`` over the key tokens that read ``r`` (of query ``u``)
    sees: its own softmax shift."""
    V = scores.shape[2]
    shift = np.float32(-np.inf)
    for v in range(V):
        if C[u * V + v, r] > 0:
            shift = max(shift, scores[h, u, v])
    return shift


@no_type_check  # compiled by numba: no runtime type checks
@numba.njit(fastmath=_FASTMATH, error_model="numpy", cache=True, boundscheck=False)
def _project(W_O, z, attn):
    """``attn`` [d_model read]: the heads' outputs ``z`` [head * d_head, read] projected by
    ``W_O`` (without b_O)."""
    H, E, Dm = W_O.shape
    for d in range(Dm):
        attn[d] = 0
        for h in range(H):
            for e in range(E):
                _axpy(attn[d], W_O[h, e, d], z[h * E + e])


@no_type_check  # compiled by numba: no runtime type checks
@numba.njit(fastmath=_FASTMATH, error_model="numpy", cache=True, boundscheck=False)
def _project_backward(W_O, z, dattn, gW_O, dz):
    """`_project` backward: from ``dattn`` [d_model read], the gradient of ``W_O`` and, in
    ``dz`` [head * d_head, read], that of ``z``."""
    H, E, Dm = W_O.shape
    for h in range(H):
        for e in range(E):
            he = h * E + e
            for d in range(Dm):
                gW_O[h, e, d] = _dot(z[he], dattn[d])
            dz[he] = 0
            for d in range(Dm):
                _axpy(dz[he], W_O[h, e, d], dattn[d])
