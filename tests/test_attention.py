import pytest
import torch

from headcoop.config import ModelConfig
from headcoop.engine.cache import collect
from headcoop.engine.fixed_attention import fixed_attention_hook, fixed_attention_outputs
from headcoop.heads.analyze import analyze
from headcoop.heads.interventions import attention_sweep, intervention_curves, ratio_weights
from headcoop.metrics.attention import weight_ratio
from headcoop.metrics.classes import labels
from headcoop.metrics.separation import separation_accuracy
from headcoop.model import build_model
from headcoop.tasks import Count01, SplitSpec
from headcoop.tasks.count01 import BOS, EOS, EQUALS, FIVE, FOUR, ONE, TWO, ZERO


def test_w01_and_w02_match_patterns_of_real_sequences(trained, task):
    batch = task.sequences(torch.tensor([[3, 4, 5], [7, 1, 2]]))
    _, cache = trained.run_with_cache(batch.tokens, names_filter="blocks.0.attn.hook_pattern")
    pattern = cache["blocks.0.attn.hook_pattern"]  # [batch head query key]
    w01, w02 = weight_ratio(trained, EQUALS, ZERO, ONE), weight_ratio(trained, EQUALS, ZERO, TWO)
    for row in range(2):
        tokens, query = batch.tokens[row], batch.read_pos[row, 0]
        first = {t: int(torch.nonzero(tokens == t)[0]) for t in (ZERO, ONE, TWO)}
        at_query = pattern[row, :, query]  # [head key]
        assert torch.allclose(at_query[:, first[ZERO]] / at_query[:, first[ONE]], w01, rtol=1e-4)
        assert torch.allclose(at_query[:, first[ZERO]] / at_query[:, first[TWO]], w02, rtol=1e-4)


def test_fixed_attention_gives_the_same_outputs_on_bags_and_sequences(trained, task):
    counts = task.split("test")[:20]
    weights = ratio_weights(task, {"w01": 0.3})

    def intervene(batch):
        return [fixed_attention_hook(batch, 0, weights)]

    bag = collect(trained, task, counts, "bag", intervention=intervene)
    full = collect(trained, task, counts, "full", intervention=intervene)
    assert (bag.z - full.z).abs().max() < 1e-4
    mass = bag.mass[:, 0]  # [example head d_vocab]: 0.3 per '0', 1 per '1', nothing else
    n0, n1 = counts[:, 0:1].float(), counts[:, 1:2].float()
    assert torch.allclose(mass[..., ZERO], 0.3 * n0 / (0.3 * n0 + n1), atol=1e-6)
    assert (mass[..., TWO] == 0).all() and (mass[..., EQUALS] == 0).all()


def test_ratio_weights_realise_the_named_ratios(task):
    weights = ratio_weights(task, {"w01": 1.0, "w02": 4.0})
    assert weights[ZERO] / weights[ONE] == 1.0 and weights[ZERO] / weights[TWO] == 4.0
    assert weights.count_nonzero() == 3


def hand_built_counter():
    """One head that attends to '0' and '1' tokens equally from '=' and to nothing else
    (scores -30 elsewhere), with value vectors -30 and +30 apart on one axis: its output at
    '=' is 30 (n1 - n0) / (n0 + n1) (to within exp(-30))."""
    model = build_model(ModelConfig(d_model=8, n_heads=1, d_head=2, layernorm=False), 8, seed=0)
    with torch.no_grad():
        for param in model.parameters():
            param.zero_()
        model.embed.W_E.copy_(torch.eye(8))
        model.blocks[0].attn.W_Q[0, EQUALS, 0] = 1.0
        for token in (BOS, TWO, EQUALS, FOUR, FIVE, EOS):
            model.blocks[0].attn.W_K[0, token, 0] = -30 * 2**0.5  # score -30 (scaled by sqrt 2)
        model.blocks[0].attn.W_V[0, ZERO, 0] = -30.0
        model.blocks[0].attn.W_V[0, ONE, 0] = 30.0
    return model


def test_a_head_with_w01_one_and_no_attention_to_2_separates_perfectly(task):
    """Its outputs split the classes exactly; on the test split, whose counts are larger, the
    separator fitted to the training split (halfway across the training gap) misses only
    some near-ties, so the head is successful but not perfect."""
    model = hand_built_counter()
    assert weight_ratio(model, EQUALS, ZERO, ONE).item() == pytest.approx(1.0)
    assert weight_ratio(model, EQUALS, ZERO, TWO).item() > 1e12
    train = collect(model, task, task.split("train"))
    x, y = train.z[:, 0], labels(task, train.targets)
    assert separation_accuracy(x, y, x, y, torch.ones(1, 1, dtype=torch.bool)).item() == 1.0
    measured = analyze(model, task, subsets=False)
    assert measured.heads["class"] == ["successful"]


def test_extreme_w01_collapses_the_outputs(trained, task):
    s_acc = attention_sweep(trained, task, [{"w01": 1.0}, {"w01": 1e-3}, {"w01": 1e3}])
    assert s_acc.shape == (3, 16)
    assert (s_acc[1:].mean(1) < s_acc[0].mean() - 0.2).all()


def test_intervention_curves_sweep_both_ratios(trained, task):
    curves = intervention_curves(trained, task, ratios=(0.01, 1.0, 100.0))
    assert list(curves.columns) == ["sweep", "ratio", "mean", "std"]
    assert curves["sweep"].tolist() == ["w01"] * 3 + ["w02"] * 3
    w01 = curves[curves["sweep"] == "w01"].set_index("ratio")["mean"]
    assert w01[1.0] > max(w01[0.01], w01[100.0])  # the healthy region is around 1
    w02 = curves[curves["sweep"] == "w02"].set_index("ratio")["mean"]
    assert w02[100.0] >= w02[0.01]  # attending to '2' adds noise


def test_fixed_attention_on_bags_matches_the_pattern_hook(trained):
    spec = SplitSpec(150, n01=(0, 30), n2=(0, 30))
    task = Count01(splits={"train": spec, "val": spec, "test": spec})
    settings = [{"w01": 1.0}, {"w01": 1e-3}, {"w01": 1.0, "w02": 10.0}, {"w01": 1e3}]
    weights = torch.stack([ratio_weights(task, s) for s in settings])
    examples = task.split("test")
    fast = fixed_attention_outputs(trained, task, examples, weights)
    for k, w in enumerate(weights):
        hooked = collect(
            trained, task, examples, mode="full",
            intervention=lambda batch, w=w: [fixed_attention_hook(batch, task.decision, w)],
        )  # fmt: skip
        torch.testing.assert_close(fast[k], hooked.z[:, task.decision], atol=1e-5, rtol=1e-5)
    s_acc = attention_sweep(trained, task, settings)
    hooked_s_acc = attention_sweep(trained, task, settings, mode="full")
    assert (s_acc - hooked_s_acc).abs().max() <= 1 / 150  # at most a near-tie apart
