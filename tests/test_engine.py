"""Bag compression must reproduce the full-sequence HookedTransformer forward exactly."""

import pytest
import torch

from headcoop.config import ModelConfig
from headcoop.engine.bags import bag_exact, multiplicity_hook
from headcoop.engine.batches import FULL_ATTENTION_BUDGET, iter_batches, read_logits
from headcoop.engine.loss import batch_loss
from headcoop.engine.run import evaluate, predict
from headcoop.errors import HeadcoopError
from headcoop.model import build_model
from headcoop.tasks import Count01

TOL = 1e-4


def assert_bag_matches_full(model, counts):
    bag = predict(model, Count01(), counts, mode="bag")
    full = predict(model, Count01(), counts, mode="full")
    assert (bag - full).abs().max() < TOL


EDGE_CASES = torch.tensor(
    [[0, 5, 7], [6, 0, 3], [4, 9, 0], [0, 0, 11], [0, 0, 0], [3, 3, 3], [150, 151, 0]]
)


@pytest.mark.parametrize("layernorm", [True, False])
def test_bag_matches_full_on_random_models(layernorm):
    for seed in range(3):
        model = build_model(ModelConfig(layernorm=layernorm), d_vocab=8, seed=seed)
        assert_bag_matches_full(model, torch.cat([Count01().split("test")[:16], EDGE_CASES]))


def test_bag_matches_full_on_a_trained_model(trained):
    assert evaluate(trained, Count01(), Count01().split("val")[:300])["answer"] > 0.8
    assert_bag_matches_full(trained, torch.cat([Count01().split("test")[:16], EDGE_CASES]))


def test_bag_matches_full_on_2000_token_sequences(trained):
    counts = torch.tensor([[700, 690, 606], [0, 1000, 996], [1996, 0, 0]])
    assert (Count01().lengths(counts) + 1 == 2000).all()  # with [EOS]: 2,000 tokens
    assert_bag_matches_full(trained, counts)


def test_bag_matches_full_for_other_shapes():
    model = build_model(ModelConfig(d_model=4, n_heads=3, d_head=5), d_vocab=8, seed=0)
    assert_bag_matches_full(model, Count01().split("val")[:20])


def test_full_sequences_need_no_bag_hook_and_bags_need_an_exact_model():
    positional = build_model(ModelConfig(positional=True), d_vocab=8, seed=0)
    two_layers = build_model(ModelConfig(n_layers=2), d_vocab=8, seed=0)
    assert bag_exact(build_model(ModelConfig(), d_vocab=8, seed=0))
    for model in (positional, two_layers):
        assert not bag_exact(model)
        with pytest.raises(HeadcoopError, match="not exact"):
            read_logits(model, Count01().bags(EDGE_CASES))


def test_bags_would_be_wrong_for_two_layers():
    """Why two layers fall back: a key's residual after layer 1 depends on its own prefix."""
    model = build_model(ModelConfig(n_layers=2), d_vocab=8, seed=0)
    counts = Count01().split("test")[:20]
    bags = Count01().bags(counts)
    hooks = [
        (f"blocks.{layer}.attn.hook_pattern", multiplicity_hook(bags.multiplicity))
        for layer in range(2)
    ]
    with model.hooks(fwd_hooks=hooks):
        forced = model(bags.tokens)[:, 4]
    full = predict(model, Count01(), counts)  # falls back to full sequences
    assert (forced - full[:, 0]).abs().max() > 1e-3


def test_predict_modes_agree_and_keep_example_order(trained):
    task = Count01()
    counts = task.split("test")[:64]
    auto, full = predict(trained, task, counts), predict(trained, task, counts, mode="full")
    assert (auto - full).abs().max() < TOL
    assert (auto[5] - read_logits(trained, task.bags(counts[5:6]))[0]).abs().max() < TOL


def test_full_batches_respect_the_attention_budget():
    task = Count01()
    counts = torch.tensor([[1000, 900, 0]] * 40)
    order = torch.arange(40)
    sizes = [len(idx) for idx, _ in iter_batches(task, counts, order, 64, False, n_heads=16)]
    assert sum(sizes) == 40 and max(sizes) < 40
    assert max(sizes) * 16 * 1903**2 <= FULL_ATTENTION_BUDGET


def test_evaluate_reports_each_scored_prediction(trained):
    metrics = evaluate(trained, Count01(), Count01().split("test")[:100])
    assert set(metrics) == {"answer", "eos", "loss"}
    assert 0 <= metrics["answer"] <= 1 and metrics["loss"] > 0


def test_batch_loss_and_its_gradient_are_the_mean_nll():
    """The written-out gradient against autograd through log_softmax, with a model axis whose
    models share the targets."""
    logits = (torch.randn(3, 5, 2, 8) * 4).requires_grad_()
    targets = torch.randint(0, 8, (5, 2))
    loss = batch_loss(logits, targets)
    (grad,) = torch.autograd.grad(loss, logits)
    log_p = torch.log_softmax(logits, -1)
    expected = -log_p.gather(-1, targets.expand(3, 5, 2)[..., None]).mean()
    (expected_grad,) = torch.autograd.grad(expected, logits)
    assert torch.allclose(loss, expected) and torch.allclose(grad, expected_grad, atol=1e-7)
