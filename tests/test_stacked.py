"""The stacked engine must match each model's HookedTransformer forward."""

import pytest
import torch

from headcoop.compat import attention_scale, load_parameters, parameters
from headcoop.config import ModelConfig, TrainConfig
from headcoop.engine.batches import read_logits
from headcoop.engine.stack import PairCounts, Stack
from headcoop.errors import HeadcoopError
from headcoop.model import build_model
from headcoop.tasks import Count01
from headcoop.training.trainer import train_models


def run_stack(models, bags):
    stack = Stack.of(models)
    return stack.params, stack.logits(bags)


@pytest.mark.parametrize(
    "cfg",
    [
        ModelConfig(),
        ModelConfig(layernorm=False),
        ModelConfig(d_model=1, n_heads=1, d_head=1, layernorm=False),
    ],
)
def test_stacked_logits_match_each_hooked_transformer(cfg):
    task = Count01()
    models = [build_model(cfg, 8, seed) for seed in range(4)]
    bags = task.bags(task.split("test")[:200])
    _, logits = run_stack(models, bags)
    for model, stacked in zip(models, logits, strict=True):
        assert (stacked - read_logits(model, bags)).abs().max() < 1e-5


@pytest.mark.parametrize("layernorm", [True, False])
def test_pair_counts_computed_once_serve_any_rows(layernorm):
    """A split's pair counts, computed once, give each selection of rows the logits that the
    rows' own bags give."""
    task = Count01()
    models = [build_model(ModelConfig(layernorm=layernorm, n_heads=h), 8, h) for h in (16, 3)]
    bags = task.bags(task.split("test")[:120])
    stack, pairs = Stack.of(models), PairCounts.of(bags, 8)
    assert torch.equal(stack.logits(pairs), stack.logits(bags))
    rows = torch.tensor([7, 3, 3, 100, 0])
    assert (stack.logits(pairs[rows]) - stack.logits(bags[rows])).abs().max() < 1e-5
    assert len(pairs.queries) == 3  # '=', '4' and '5' are the only tokens read


def test_stacked_logits_match_a_trained_model(trained):
    bag = Count01().bags(Count01().split("test")[:100])
    _, logits = run_stack([trained], bag)
    assert (logits[0] - read_logits(trained, bag)).abs().max() < 1e-4


def test_gradients_stay_within_each_model():
    task = Count01()
    models = [build_model(ModelConfig(), 8, seed) for seed in range(2)]
    bag = task.bags(task.split("train")[:32])
    params, logits = run_stack(models, bag)
    logits[0].sum().backward()
    for grad in (p.grad for p in params.values() if p.requires_grad):
        assert grad[0].abs().sum() > 0 and grad[1].abs().sum() == 0


def test_unstack_writes_parameters_back():
    models = [build_model(ModelConfig(), 8, seed) for seed in range(2)]
    stack = Stack.of(models)
    params = stack.params
    with torch.no_grad():
        params["blocks.0.attn.W_Q"][1] += 1.0
    before = models[0].blocks[0].attn.W_Q.clone()
    stack.write_back(models)
    assert torch.equal(models[0].blocks[0].attn.W_Q, before)
    assert torch.equal(models[1].blocks[0].attn.W_Q, params["blocks.0.attn.W_Q"][1])


def test_stacked_models_must_share_all_but_their_sizes():
    with pytest.raises(HeadcoopError, match="differ only in n_heads and d_model"):
        Stack.of([build_model(ModelConfig(), 8, 0), build_model(ModelConfig(d_head=3), 8, 0)])
    with pytest.raises(HeadcoopError, match="without positions"):
        Stack.of([build_model(ModelConfig(positional=True), 8, 0)])


@pytest.mark.parametrize("layernorm", [True, False])
def test_models_of_different_sizes_stack_exactly(layernorm):
    task = Count01()
    shapes = [(32, 16), (8, 1), (2, 4)]  # (d_model, n_heads)
    models = [
        build_model(ModelConfig(d_model=d, n_heads=h, layernorm=layernorm), 8, seed)
        for seed, (d, h) in enumerate(shapes)
    ]
    bag = task.bags(task.split("test")[:60])
    params, logits = run_stack(models, bag)
    assert params["embed.W_E"].shape == (3, 8, 32)
    assert ("dim_mask" in params) == layernorm
    for model, stacked in zip(models, logits, strict=True):
        assert (stacked - read_logits(model, bag)).abs().max() < 1e-5


def test_padding_gets_exactly_zero_gradient():
    models = [build_model(ModelConfig(d_model=d, n_heads=h), 8, 0) for d, h in [(8, 4), (3, 2)]]
    bag = Count01().bags(Count01().split("train")[:32])
    params, logits = run_stack(models, bag)
    logits.sum().backward()
    small = parameters(models[1])
    for name, p in params.items():
        if p.requires_grad:
            inside = torch.zeros_like(p.grad[1], dtype=torch.bool)
            inside[tuple(map(slice, small[name].shape))] = True
            assert p.grad[1][~inside].abs().sum() == 0 and p[1][~inside].abs().sum() == 0


@pytest.mark.parametrize("optimizer", ["adamw", "adam", "sgd"])
def test_a_model_trains_the_same_beside_a_larger_one(optimizer):
    task = Count01(
        splits={
            "train": {"size": 300, "n01": (0, 20), "n2": (0, 20)},
            "val": {"size": 50, "n01": (21, 30), "n2": (0, 30)},
            "test": {"size": 50, "n01": (31, 40), "n2": (0, 40)},
        }
    )
    cfg = TrainConfig(
        epochs=2, dropout=0.0, optimizer=optimizer, lr=0.1 if optimizer == "sgd" else 1e-3
    )
    small = ModelConfig(d_model=8, n_heads=2)
    alone = [build_model(small, 8, 0)]
    beside = [build_model(small, 8, 0), build_model(ModelConfig(), 8, 1)]
    train_models(task, alone, cfg)
    train_models(task, beside, cfg)
    trained_beside = parameters(beside[0])
    for name, value in parameters(alone[0]).items():
        if name == "blocks.0.attn.b_K":  # zero true gradient: Adam steps on rounding noise
            continue
        assert (value - trained_beside[name]).abs().max() < 1e-5, name


def test_scores_spread_beyond_the_float_range_match_the_hooked_transformer():
    """With one shift per query token, a read that never sees its query's best-scored key
    gets weights of exp(-gap) on every key it sees, which underflow; the stack then shifts each
    read's scores on its own, as the full forward does, for the models that need it (here the
    first and the last: the middle one is left as initialised)."""
    task = Count01()
    cfg = ModelConfig(d_model=4, n_heads=1, layernorm=False)
    models = [build_model(cfg, 8, seed) for seed in (0, 1, 2)]
    equals, two = task.vocab.index("="), task.vocab.index("2")
    for model in (models[0], models[2]):
        _favour_key(model, query=equals, key=two, gap=120.0)  # e^-120: 0 in float32
    # (n0, n1, n2): reads with no '2' beside reads with some
    examples = torch.tensor([[3, 4, 0], [5, 2, 0], [2, 2, 6], [4, 1, 3], [0, 0, 0], [1, 0, 2]])
    stack = Stack.of(models)
    logits = stack.logits(task.bags(examples))
    logits.sum().backward()
    assert torch.isfinite(logits).all()
    assert all(torch.isfinite(p.grad).all() for p in stack.trainable().values())
    for model, stacked in zip(models, logits, strict=True):
        expected = read_logits(model, task.sequences(examples))  # the full forward
        assert ((stacked - expected).abs() / expected.abs().clamp(min=1)).max() < 1e-4


def _favour_key(model, query, key, gap):
    """Re-embed token ``key`` so that a single-head model without LayerNorm scores it ``gap``
    above every other key token for query token ``query``."""
    state = {k: v.detach().clone() for k, v in parameters(model).items()}
    w_e, w_q, w_k = (state[n] for n in ("embed.W_E", "blocks.0.attn.W_Q", "blocks.0.attn.W_K"))
    q = w_e[query] @ w_q[0]  # [d_head]
    direction = w_k[0] @ q  # [d_model]: raises the score along it
    scale = attention_scale(model)
    scores = (w_e @ w_k[0]) @ q / scale
    best_other = scores[torch.arange(len(scores)) != key].max()
    w_e[key] = direction * (best_other + gap) * scale / direction.dot(direction)
    load_parameters(model, state)
