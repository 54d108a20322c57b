"""The compiled CPU kernel (`headcoop.engine.fused`) must give the torch path's loss and
gradients, parameter by parameter."""

import math

import pytest
import torch

from headcoop.config import ModelConfig
from headcoop.engine import fused
from headcoop.engine.loss import batch_loss
from headcoop.engine.stack import UNDERFLOW, PairCounts, Stack
from headcoop.model import build_model
from headcoop.tasks import Count01
from tests.test_stacked import _favour_key


def _loss_and_grads(stack, pairs, targets, dropout, fused_path):
    """The training loss and each trainable parameter's gradient, by one path."""
    generator = torch.Generator().manual_seed(11)  # the same dropout masks for both paths
    for p in stack.trainable().values():
        p.grad = None
    if fused_path:
        loss = stack.loss(pairs, targets, dropout, generator)
    else:
        loss = batch_loss(stack.logits(pairs, dropout, generator), targets)
    loss.backward()
    return loss.item(), {n: p.grad.clone() for n, p in stack.trainable().items()}


@pytest.mark.parametrize(
    ("configs", "dropout"),
    [
        # Table 1's shape: d_head 1, no LayerNorm, many heads
        ([ModelConfig(d_model=2, n_heads=6, d_head=1, layernorm=False)] * 3, 0.1),
        # LayerNorms, d_head 2, padded to the largest n_heads and d_model (a dim_mask)
        ([ModelConfig(d_model=8, n_heads=3), ModelConfig(d_model=5, n_heads=2)], 0.0),
        ([ModelConfig(d_model=8, n_heads=4, d_head=3)] * 2, 0.3),
        # many heads, with and without LayerNorm
        ([ModelConfig(d_model=2, n_heads=20, d_head=1, layernorm=False)] * 2, 0.1),
        ([ModelConfig(d_model=6, n_heads=8, d_head=2), ModelConfig(d_model=4, n_heads=5)], 0.2),
    ],
)
def test_fused_loss_and_gradients_match_the_torch_path(configs, dropout):
    task = Count01()
    models = [build_model(cfg, 8, seed) for seed, cfg in enumerate(configs)]
    stack = Stack.of(models)
    bags = task.bags(task.split("train")[:96])
    pairs, targets = PairCounts.of(bags, 8), bags.targets
    loss, grads = _loss_and_grads(stack, pairs, targets, dropout, fused_path=True)
    ref_loss, ref_grads = _loss_and_grads(stack, pairs, targets, dropout, fused_path=False)
    assert loss == pytest.approx(ref_loss, rel=1e-6)
    _assert_close(grads, ref_grads)


def _kernel(stack, pairs, targets):
    """The kernel's per-model losses and smallest denominators, without dropout."""
    counts, read_tokens = pairs.counts.flatten(0, 1), pairs.read_tokens.flatten()
    return fused.stack_loss(
        stack.params, counts, read_tokens, pairs.queries, targets.flatten(), None, stack.eps,
        stack.attn_scale, UNDERFLOW,
    )  # fmt: skip


def _assert_close(grads, ref_grads, floor_ratio=1e-6):
    """Every gradient within float32 rounding of the reference. (A gradient that is zero in
    exact arithmetic, such as b_K's, is rounding noise in both: hence a floor of
    ``floor_ratio`` times the largest gradient.)"""
    assert set(grads) == set(ref_grads)
    floor = floor_ratio * max(g.abs().max().item() for g in ref_grads.values())
    for name, ref in ref_grads.items():
        assert (grads[name] - ref).abs().max().item() < 1e-5 * ref.abs().max().item() + floor


def test_fused_kernel_sees_each_models_own_loss():
    """The kernel's per-model losses are each model's own mean NLL, and the reads' sorting by
    query token does not mix the models' dropout masks: the per-model values equal a stack of
    one model each."""
    task = Count01()
    models = [build_model(ModelConfig(n_heads=2, d_model=4), 8, seed) for seed in range(3)]
    bags = task.bags(task.split("val")[:50])
    pairs = PairCounts.of(bags, 8)
    stack = Stack.of(models)

    together, _ = _kernel(stack, pairs, bags.targets)
    alone = torch.cat([_kernel(Stack.of([m]), pairs, bags.targets)[0] for m in models])
    assert torch.allclose(together, alone, rtol=1e-6)
    assert together.mean().item() == pytest.approx(stack.loss(pairs, bags.targets).item())


def test_underflowing_models_are_computed_read_by_read():
    """Scores so spread that a read's every softmax weight underflows (the case of
    `test_scores_spread_beyond_the_float_range_match_the_hooked_transformer`): the kernel
    reports it by the model's smallest denominator and computes that model again with each
    read's own shift, as the torch path does: finite loss and gradients, the torch path's."""
    task = Count01()
    models = [build_model(ModelConfig(d_model=4, n_heads=1, layernorm=False), 8, s) for s in (0, 1)]
    # e^-40 on every key a read sees, when it does not see '2': below UNDERFLOW
    _favour_key(models[0], query=task.vocab.index("="), key=task.vocab.index("2"), gap=40.0)
    examples = torch.tensor([[3, 4, 0], [5, 2, 0], [2, 2, 6], [4, 1, 3], [1, 0, 2]])
    bags = task.bags(examples)
    pairs, stack = PairCounts.of(bags, 8), Stack.of(models)
    _, lowest = _kernel(stack, pairs, bags.targets)
    assert lowest[0] < UNDERFLOW <= lowest[1]
    loss, grads = _loss_and_grads(stack, pairs, bags.targets, 0.0, fused_path=True)
    ref_loss, ref_grads = _loss_and_grads(stack, pairs, bags.targets, 0.0, fused_path=False)
    assert math.isfinite(loss) and loss == pytest.approx(ref_loss, rel=1e-6)
    assert all(g.isfinite().all() for g in grads.values())
    # The re-embedded '2' has entries in the hundreds, whose products cancel in its scores:
    # the scores' gradients (1e-4 of the largest) then keep only a few float32 digits, and
    # their rounding differs between the paths (1.3e-6 of the largest apart, measured).
    _assert_close(grads, ref_grads, floor_ratio=1e-5)


def test_exp_is_within_float32_rounding_of_the_exact_value():
    x = torch.cat([torch.linspace(-86.9, 0, 10_001), torch.tensor([-1e-30, -0.0])])
    out = x.clone().numpy()
    fused._exp_in_place(out, torch.empty(len(x), dtype=torch.int32).numpy())
    exact = torch.exp(x.double())
    assert ((torch.from_numpy(out).double() - exact).abs() / exact).max() < 2.0**-23
    below = torch.tensor([-87.5, -1e4, -float("inf")]).numpy()
    fused._exp_in_place(below, torch.empty(3, dtype=torch.int32).numpy())
    assert (below == 0).all()  # where float32 has no normal number to give
