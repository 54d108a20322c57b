import torch

from headcoop.engine.cache import collect
from headcoop.engine.run import predict


def test_bag_and_full_caches_agree(trained, task):
    counts = torch.cat([task.split("test")[:24], torch.tensor([[0, 4, 3], [5, 0, 0]])])
    bag, full = collect(trained, task, counts, "bag"), collect(trained, task, counts, "full")
    for name in ("z", "result", "mass", "rest", "logits"):
        assert (getattr(bag, name) - getattr(full, name)).abs().max() < 1e-4, name


def test_cache_matches_the_forward_pass_and_keeps_order(trained, task):
    counts = task.split("val")
    cache = collect(trained, task, counts, batch_size=64)
    assert torch.equal(cache.logits, predict(trained, task, counts))
    assert torch.equal(cache.targets, task.targets(counts))
    assert torch.allclose(cache.mass.sum(-1), torch.ones(len(counts), 2, 16))


def test_attention_mass_counts_each_token_type(random_model, task):
    counts = torch.tensor([[3, 0, 5]])
    mass = collect(random_model, task, counts).mass[0, 0]  # at '=': [head d_vocab]
    assert (mass[:, 2] == 0).all()  # no '1' in the input
    assert (mass[:, [1, 3]] > 0).all() and (mass[:, 5:] == 0).all()  # 4, 5, [EOS] come later
