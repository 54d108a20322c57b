import pytest
import torch

from headcoop.engine.batches import read_logits
from headcoop.engine.cache import collect
from headcoop.metrics.attribution import decompose, head_unembed, head_weights
from headcoop.metrics.subsets import all_subsets
from tests.hooks import paper_logits_by_hook


@pytest.fixture(params=["trained", "trained_no_ln"])
def model(request):
    return request.getfixturevalue(request.param)


def random_sets(n: int, seed: int) -> torch.Tensor:
    order = torch.randperm(2**16, generator=torch.Generator().manual_seed(seed))
    return all_subsets(16)[order[:n]]


def test_head_attributions_plus_the_rest_equal_the_logits(model, task):
    cache = collect(model, task, task.split("test"))
    parts = decompose(model, cache)
    total = parts.base_logits + parts.head_logits.sum(2)
    assert (total - cache.logits).abs().max() < 1e-4


def test_direct_definition_equals_ablation_by_hook(model, task):
    counts = task.split("test")[:100]
    parts = decompose(model, collect(model, task, counts))
    subsets = random_sets(12, seed=0)
    bags = task.bags(counts)
    for read in (0, 1):
        logits = parts.ablated(subsets, read, torch.arange(8))
        for keep, cached in zip(subsets, logits, strict=True):

            def ablate(z, hook, keep=keep):
                return z * keep[None, None, :, None]

            hooked = read_logits(model, bags, [("blocks.0.attn.hook_z", ablate)])[:, read]
            assert (cached - hooked).abs().max() < 1e-4


def test_paper_definition_equals_head_only_logits_by_hook(model, task):
    counts = task.split("test")[:100]
    parts = decompose(model, collect(model, task, counts))
    bags = task.bags(counts)
    subsets = torch.cat([torch.eye(16, dtype=torch.bool)[:3], random_sets(6, seed=1)])
    for read in (0, 1):
        logits = parts.head_only(subsets, read, torch.arange(8))
        for keep, cached in zip(subsets, logits, strict=True):
            hooked = paper_logits_by_hook(model, bags, keep)[:, read]
            assert (cached - hooked).abs().max() < 1e-4


def test_the_definitions_differ_by_the_direct_path_alone_without_layernorm(trained_no_ln, task):
    cache = collect(trained_no_ln, task, task.split("test")[:50])
    parts = decompose(trained_no_ln, cache)
    sets = random_sets(5, seed=2)
    paper = parts.head_only(sets, 0, torch.arange(8))
    direct = parts.ablated(sets, 0, torch.arange(8))
    embedding = trained_no_ln.W_E[task.vocab.index("=")]  # read 0 is at '='
    expected = (embedding @ trained_no_ln.W_U).detach()
    assert (direct - paper - expected).abs().max() < 1e-4


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


def test_head_weights_of_three_candidates_ignore_a_shared_shift(trained_no_ln):
    w = head_unembed(trained_no_ln)[:, :, [1, 2, 3]]
    centred = w - w.mean(-1, keepdim=True)
    by_hand = centred.flatten(1).norm(dim=1)
    assert torch.allclose(head_weights(trained_no_ln, (1, 2, 3)), by_hand / by_hand.sum())
    with torch.no_grad():
        trained_no_ln.W_U[:, [1, 2, 3]] += trained_no_ln.W_U[:, [4]]  # moves all three alike
        shifted = head_weights(trained_no_ln, (1, 2, 3))
        trained_no_ln.W_U[:, [1, 2, 3]] -= trained_no_ln.W_U[:, [4]]
    assert torch.allclose(shifted, by_hand / by_hand.sum(), atol=1e-6)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_head_attributions_are_transformer_lens_logit_attrs_with_the_ln_weight(model, task):
    """TransformerLens's per-head attribution, ``ActivationCache.logit_attrs`` of
    ``stack_head_results(apply_ln=True)``, reads each head through W_U alone: it assumes the
    final LayerNorm's weight was folded into W_U (``fold_ln``). headcoop's keeps the weight, so
    on a model with a final LayerNorm the two differ (on the paper's trained model by up to
    about 1.7 logits a head); TransformerLens's ``apply_ln_to_stack`` read through
    diag(w_ln) W_U, the folded read-out, gives headcoop's exactly, and without a LayerNorm
    ``logit_attrs`` does."""
    gen = torch.Generator().manual_seed(0)
    n0 = torch.randint(0, 31, (40,), generator=gen)
    n1 = torch.randint(0, 31, (40,), generator=gen)
    examples = torch.stack([n0, n1, 60 - n0 - n1], dim=1)  # one length, one read position
    batch = task.sequences(examples)
    position = int(batch.read_pos[0, task.decision])
    _, cache = model.run_with_cache(batch.tokens)
    stack = cache.stack_head_results(layer=-1, pos_slice=position)  # [head example d_model]
    target = batch.targets[:, task.decision]
    ours = decompose(model, collect(model, task, examples)).head_logits[:, task.decision]
    ours = ours.gather(2, target[:, None, None].expand(-1, ours.shape[1], 1))[..., 0].T
    theirs = cache.logit_attrs(stack, tokens=target, pos_slice=position)  # [head example]
    if model.cfg.normalization_type is not None:
        assert (ours - theirs).abs().max() > 1e-2  # far beyond rounding: W_U alone is not it
        normalised = cache.apply_ln_to_stack(stack, layer=-1, pos_slice=position)
        folded = model.ln_final.w[:, None] * model.W_U[:, target]  # fold_ln's read-out
        theirs = torch.einsum("hem,me->he", normalised, folded)
    assert (ours - theirs).abs().max() < 1e-4
