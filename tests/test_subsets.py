import pytest
import torch
from sklearn.metrics import roc_auc_score

from headcoop.engine.cache import collect
from headcoop.engine.run import evaluate
from headcoop.metrics.attribution import decompose
from headcoop.metrics.subsets import all_subsets, auc, learned_accuracy, roc_auc, singles_and_pairs
from headcoop.tasks.count01 import FIVE, FOUR

CHOICES = torch.tensor([FOUR, FIVE])


@pytest.fixture(scope="module")
def parts(trained, task):
    cache = collect(trained, task, task.split("test"))
    return decompose(trained, cache), cache.targets[:, 0]


def test_all_subsets_are_distinct_and_complete():
    masks = all_subsets(5)
    assert masks.shape == (32, 5)
    assert len({tuple(m.tolist()) for m in masks}) == 32
    assert masks.sum().item() == 5 * 16


def test_singles_then_pairs():
    masks = singles_and_pairs(4)
    assert masks.sum(1).tolist() == [1] * 4 + [2] * 6
    assert torch.nonzero(masks[4]).flatten().tolist() == [0, 1]


def test_direct_l_acc_of_all_heads_is_the_models_accuracy(trained, task, parts):
    decomposition, targets = parts
    everything = torch.ones(1, 16, dtype=torch.bool)
    l_acc = learned_accuracy(decomposition.ablated, everything, targets, 0, CHOICES)
    assert l_acc.item() == pytest.approx(evaluate(trained, task, task.split("test"))["answer"])


def test_with_every_head_ablated_the_prediction_is_one_constant_class(parts):
    decomposition, targets = parts
    nothing = torch.zeros(1, 16, dtype=torch.bool)
    l_acc = learned_accuracy(decomposition.ablated, nothing, targets, 0, CHOICES).item()
    shares = {(targets == FOUR).float().mean().item(), (targets == FIVE).float().mean().item()}
    assert min(abs(l_acc - s) for s in shares) < 1e-6
    assert roc_auc(decomposition.ablated, nothing, targets, 0, CHOICES).item() == 0.5


@pytest.mark.parametrize("reader", ["head_only", "ablated"])
def test_roc_auc_matches_scikit_learn(parts, reader):
    decomposition, targets = parts
    reader = getattr(decomposition, reader)
    masks = all_subsets(16)[torch.randperm(2**16, generator=torch.Generator().manual_seed(1))[:6]]
    ours = roc_auc(reader, masks, targets, 0, CHOICES)
    logits = reader(masks, 0, CHOICES)
    for k in range(len(masks)):
        expected = max(
            roc_auc_score((targets == FOUR).numpy(), logits[k, :, 0].numpy()),
            roc_auc_score((targets == FIVE).numpy(), logits[k, :, 1].numpy()),
        )
        assert ours[k].item() == pytest.approx(expected, abs=1e-6)


def test_auc_handles_ties_like_scikit_learn():
    scores = torch.tensor([[0.0, 1.0, 1.0, 2.0, 2.0, 3.0]])
    labels = torch.tensor([False, True, False, True, False, True])
    assert auc(scores, labels).item() == pytest.approx(roc_auc_score(labels, scores[0]))


def test_auc_matches_scikit_learn_on_many_ties_and_signed_zeros():
    generator = torch.Generator().manual_seed(0)
    scores = (torch.randn(50, 3001, generator=generator) * 3).round()  # a few values, tied
    scores[0] = 0.0
    scores[1, ::2] = -0.0  # equal to +0.0: tied with it, not below it
    scores[2] = -scores[2].abs() - 1e30  # large negatives: their bits sort in reverse
    labels = torch.rand(3001, generator=generator) < 0.3
    expected = [roc_auc_score(labels.numpy(), row.numpy()) for row in scores]
    assert auc(scores, labels).tolist() == pytest.approx(expected, abs=1e-7)


def test_roc_auc_of_more_candidates_is_the_mean_one_vs_rest_auc():
    from headcoop.metrics.subsets import _candidate_auc

    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 300, 3, generator=gen)
    candidates = torch.tensor([4, 5, 6])
    targets = candidates[torch.randint(0, 3, (300,), generator=gen)]
    logits[1, :, 0] += 2.0 * (targets == 4)  # the second set tells candidate 4 apart
    ours = _candidate_auc(logits, targets, candidates)
    for k in range(2):
        per = [
            roc_auc_score((targets == t).numpy(), logits[k, :, i]) for i, t in enumerate([4, 5, 6])
        ]
        assert ours[k].item() == pytest.approx(sum(per) / 3, abs=1e-6)
    assert ours[1] > ours[0]


def test_the_merge_and_the_binary_search_count_the_same_pairs():
    """The CPU's merge (`_merge_count`) and the other devices' binary search agree, ties
    (many equal keys) included."""
    from headcoop.metrics.subsets import _merge_count, _search_count

    gen = torch.Generator().manual_seed(0)
    pos = torch.randint(-5, 6, (40, 37), generator=gen, dtype=torch.int32).sort(-1).values
    neg = torch.randint(-5, 6, (40, 23), generator=gen, dtype=torch.int32).sort(-1).values
    merged = torch.from_numpy(_merge_count(pos.numpy(), neg.numpy()))
    below = (neg[:, None, :] < pos[:, :, None]).sum((1, 2))
    at_most = (neg[:, None, :] <= pos[:, :, None]).sum((1, 2))
    assert torch.equal(merged, (below + at_most).double())
    assert torch.equal(_search_count(pos, neg), merged)
