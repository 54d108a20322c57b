import pytest
import torch

from headcoop.metrics.attribution import decompose, head_unembed, head_weights
from headcoop.metrics.cache import collect
from headcoop.engine.bags import read_logits
from headcoop.metrics.subsets import all_subsets


@pytest.fixture(params=["trained", "trained_no_ln"])
def model(request):
    return request.getfixturevalue(request.param)


def test_head_attributions_plus_the_rest_equal_the_logits(model, task):
    cache = collect(model, task, task.split("test"))
    parts = decompose(model, cache)
    total = parts.base_logits + parts.head_logits.sum(2)
    assert (total - cache.logits).abs().max() < 1e-4


def test_subset_logits_equal_ablation_by_hook(model, task):
    counts = task.split("test")[:100]
    parts = decompose(model, collect(model, task, counts))
    subsets = all_subsets(16)[torch.randperm(2**16, generator=torch.Generator().manual_seed(0))]
    subsets = subsets[:12]
    logits = parts.subset_logits(subsets, 0, torch.arange(8))
    bags = task.bags(counts)
    for keep, cached in zip(subsets, logits, strict=True):

        def ablate(z, hook, keep=keep):
            return z * keep[None, None, :, None]

        hooked = read_logits(model, bags, [("blocks.0.attn.hook_z", ablate)])[:, 0]
        assert (cached - hooked).abs().max() < 1e-4


def test_without_layernorm_head_terms_are_the_papers_z_t_i(trained_no_ln, task):
    cache = collect(trained_no_ln, task, task.split("test")[:50])
    parts = decompose(trained_no_ln, cache)
    w = trained_no_ln.W_O[0] @ trained_no_ln.W_U  # [head d_head d_vocab]
    z_t_i = torch.einsum("erhk,hkv->erhv", cache.z, w)
    assert torch.allclose(parts.head_logits, z_t_i, atol=1e-5)
    assert torch.allclose(head_unembed(trained_no_ln), w)


def test_head_weights_are_normalised_output_differences(trained_no_ln):
    hw = head_weights(trained_no_ln, (5, 6))
    w = (trained_no_ln.W_O[0] @ trained_no_ln.W_U).detach()
    by_hand = (w[:, :, 6] - w[:, :, 5]).norm(dim=1)
    assert torch.allclose(hw, by_hand / by_hand.sum())
    assert hw.sum() == pytest.approx(1.0)
