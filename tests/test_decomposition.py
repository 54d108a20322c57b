"""Sparse attention decomposition: exactness against the model's own scores, hand-built heads
whose answer is known, and the tracer on a trained induction model."""

import json
import math

import pytest
import torch

from headcoop.cli import main
from headcoop.compat import attention_scores, load_parameters, parameters
from headcoop.config import ModelConfig, TrainConfig
from headcoop.metrics.attention import weight_ratio
from headcoop.model import build_model
from headcoop.tasks import Count01, Induction
from headcoop.trace import (  # the public entry point the method is used by
    all_pair_terms,
    component_order,
    contributions,
    head_input,
    intervene,
    qk_svd,
    ratio_components,
    residual_sources,
    selected_components,
    sparsity,
    trace,
)
from headcoop.training.trainer import train


def random_model(
    layernorm: bool,
    dtype: torch.dtype = torch.float32,
    seed: int = 0,
    normalization: str = "LN",
    d_mlp: int = 0,
):
    """A two-layer model with positions and every bias and normalization weight random."""
    cfg = ModelConfig(d_model=16, n_heads=3, d_head=4, n_layers=2, positional=True,
                      layernorm=layernorm, n_ctx=32, normalization=normalization,
                      d_mlp=d_mlp)  # fmt: skip
    model = build_model(cfg, d_vocab=11, seed=seed)
    gen = torch.Generator().manual_seed(seed + 1)
    state = {
        name: torch.randn(param.shape, generator=gen) * 0.5 + name.endswith(".w")
        if name.split(".")[-1] in ("b_Q", "b_K", "b_V", "b_O", "b", "w", "W_pos")
        else param
        for name, param in parameters(model).items()
    }
    load_parameters(model, state)
    model.to(dtype)
    model.cfg.dtype = dtype
    return model


@pytest.mark.parametrize("layernorm", [False, True])
@pytest.mark.parametrize(("dtype", "tolerance"), [(torch.float32, 1e-4), (torch.float64, 1e-8)])
def test_terms_add_up_to_the_attention_scores(layernorm, dtype, tolerance):
    model = random_model(layernorm, dtype)
    tokens = torch.randint(0, 11, (3, 20), generator=torch.Generator().manual_seed(2))
    _, cache = model.run_with_cache(tokens)
    causal = torch.ones(20, 20, dtype=torch.bool).tril()
    for layer in range(2):
        x = head_input(model, cache, layer)
        for head in range(3):
            svd = qk_svd(model, layer, head)
            assert svd.S.shape == (4,) and (svd.S[:-1] >= svd.S[1:]).all()
            scores = all_pair_terms(svd, x).sum(-1)  # [batch query key]
            expected = attention_scores(model, cache, layer)[:, head] * svd.attn_scale
            assert (scores - expected)[:, causal].abs().max() < tolerance * expected.abs().max()


@pytest.mark.parametrize(
    ("layernorm", "normalization", "d_mlp"),
    [(False, "LN", 0), (True, "LN", 0), (True, "RMS", 8), (True, "LNPre", 8)],
)
def test_sources_add_up_to_the_head_input(layernorm, normalization, d_mlp):
    model = random_model(layernorm, torch.float64, normalization=normalization, d_mlp=d_mlp)
    tokens = torch.randint(0, 11, (2, 12), generator=torch.Generator().manual_seed(3))
    _, cache = model.run_with_cache(tokens)
    sources = residual_sources(model, cache, 1)
    expected = {"embed", "pos_embed", "L0H0", "L0H1", "L0H2", "b_O0", "bias"}
    assert set(sources) == expected | ({"MLP0"} if d_mlp else set())
    total = sum(sources.values())
    assert (total - head_input(model, cache, 1)).abs().max() < 1e-10


@pytest.mark.parametrize("normalization", ["RMS", "LNPre"])
def test_terms_add_up_under_every_normalization(normalization):
    model = random_model(True, torch.float64, normalization=normalization, d_mlp=8)
    tokens = torch.randint(0, 11, (2, 12), generator=torch.Generator().manual_seed(4))
    _, cache = model.run_with_cache(tokens)
    x = head_input(model, cache, 1)
    svd = qk_svd(model, 1, 0)
    expected = attention_scores(model, cache, 1)[:, 0] * svd.attn_scale
    causal = torch.ones(12, 12, dtype=torch.bool).tril()
    error = (all_pair_terms(svd, x).sum(-1) - expected)[:, causal].abs().max()
    assert error < 1e-8 * expected.abs().max()


def test_sparsity_counts_the_components_that_reach_the_total():
    terms = torch.tensor([[0.1, 3.0, -1.0, 0.5], [-2.0, 0.5, -1.0, -0.1], [1.0, 1.0, 1.0, 1.0]])
    assert sparsity(terms).tolist() == [1, 2, 4]
    assert selected_components(terms)[1].tolist() == [True, False, True, False]
    # Rounding leaves every prefix of these float32 terms short of their total: all count.
    rounded = torch.tensor([5.984480857849121, 12.700825691223145, 7.501173973083496,
                            1.4313209056854248, 7.87601375579834, 10.228540420532227,
                            5.05545711517334, 9.657257080078125])  # fmt: skip
    signed = rounded.sort(descending=True).values.cumsum(0)
    assert not (signed >= rounded.sum()).any()
    assert sparsity(rounded[None]).tolist() == [8]
    assert component_order(rounded[None])[0][0, 0] == 1  # the largest comes first


def planted_model():
    """Two layers, one head each, d_model 4, no LayerNorm. Every token's embedding holds 1 in
    dimension 0; the layer-0 head copies that 1 into dimension 2 ('feature a'); the layer-1
    head is rank 1 with u = e_2 (it queries feature a) and v = e_3, which the embedding of
    token 1 writes. So each of its scores on a token-1 key is (x_i . e_2)(x_j . e_3): sparsity
    1, the query side owed to the layer-0 head, the key side to the embedding."""
    cfg = ModelConfig(d_model=4, n_heads=1, d_head=2, n_layers=2, positional=True,
                      layernorm=False, n_ctx=16)  # fmt: skip
    model = build_model(cfg, d_vocab=3, seed=0)
    with torch.no_grad():
        for param in model.parameters():
            param.zero_()
        model.embed.W_E[:, 0] = 1.0
        model.embed.W_E[1, 3] = 2.0
        model.blocks[0].attn.W_V[0, 0, 0] = 1.0
        model.blocks[0].attn.W_O[0, 0, 2] = 1.5
        model.blocks[1].attn.W_Q[0, 2, 0] = 1.0
        model.blocks[1].attn.W_K[0, 3, 0] = 1.0
    return model


def test_a_planted_rank_one_head_is_traced_to_the_head_that_wrote_its_feature():
    model = planted_model()
    tokens = torch.tensor([[0, 1, 2, 1, 0, 1]])
    _, cache = model.run_with_cache(tokens)
    svd = qk_svd(model, 1, 0)
    assert svd.S[1] < 1e-6 and svd.S[0] == pytest.approx(1.0)
    x = head_input(model, cache, 1)
    terms = all_pair_terms(svd, x)[0]  # [query key component]
    firing = (0, 5, 3)  # query at the last token, key on a token 1
    assert terms[5, 3, 0] == pytest.approx(1.5 * 2.0) and sparsity(terms[5, 3]).item() == 1
    chosen = selected_components(terms[5, 3])
    sources = residual_sources(model, cache, 1)
    query = contributions(svd, sources, x, firing, chosen, "query")
    key = contributions(svd, sources, x, firing, chosen, "key")
    assert query["L0H0"] == pytest.approx(3.0) and key["embed"] == pytest.approx(3.0)
    assert all(abs(v) < 1e-6 for k, v in query.items() if k != "L0H0")
    assert all(abs(v) < 1e-6 for k, v in key.items() if k != "embed")


def test_ratio_components_add_up_to_the_log_attention_ratios(trained):
    task = Count01()
    rows = ratio_components(trained, task)
    for head in (0, 7):
        for name, (q, a, b) in task.attention_ratios.items():
            mine = [r for r in rows if r["head"] == head and r["ratio"] == name]
            ids = [task.vocab.index(t) for t in (q, a, b)]
            expected = math.log(weight_ratio(trained, *ids)[head].item())
            assert sum(r["log_ratio_part"] for r in mine) == pytest.approx(expected, abs=1e-4)


@pytest.fixture(scope="module")
def induction_model():
    task = Induction(size=2000)
    cfg = ModelConfig(d_model=32, n_heads=4, d_head=8, n_layers=2, positional=True,
                      layernorm=False, n_ctx=17)  # fmt: skip
    model = train(task, cfg, TrainConfig(epochs=14, lr=3e-3, dropout=0.0))
    return task, model


def test_the_tracer_finds_the_previous_token_head_behind_the_induction_heads(induction_model):
    task, model = induction_model
    examples = task.split("test")[:16]
    found = trace(model, task, examples)
    graph = found.graph()
    nodes = {n["id"]: n for n in graph["nodes"]}
    induction = [n for n in nodes.values() if n["layer"] == 1 and n.get("median_offset") == 7]
    assert induction, "no layer-1 head attends to the token after the earlier copy"
    key_edges = [e for e in graph["edges"] if e["side"] == "key" and e["source"].startswith("L0")]
    strongest = max(key_edges, key=lambda e: e["mean_contribution"])
    assert nodes[strongest["target"]].get("median_offset") == 7
    mean_sparsity = sum(f["sparsity"] for f in found.firings) / len(found.firings)
    assert mean_sparsity < 0.6 * model.cfg.d_head  # a few of the eight components per score
    effects = intervene(model, task, examples, found, max_firings=8)
    mine = {
        e["removed"]: e
        for e in effects
        if (e["source"], e["target"], e["side"])
        == (strongest["source"], strongest["target"], "key")
    }
    assert mine["selected"]["score_change"] < 5 * min(mine["random"]["score_change"], -0.1)
    assert mine["selected"]["margin_change"] < mine["random"]["margin_change"] - 0.1


def test_trace_writes_its_files(induction_model, tmp_path, capsys):
    task, model = induction_model
    from headcoop.loading.checkpoint import save_checkpoint

    save_checkpoint(tmp_path / "ckpt", model, {"task": task.to_config(), "train": {}})
    out = tmp_path / "trace"
    assert main(["trace", str(tmp_path / "ckpt"), "--out", str(out), "--prompts", "6"]) == 0
    assert "components each" in capsys.readouterr().out
    for name in ("terms.csv", "graph.json", "interventions.csv", "summary.json", "trace.html"):
        assert (out / name).stat().st_size > 100, name
    summary = json.loads((out / "summary.json").read_text())
    assert summary["sparsity"]["scores"] > 0 and summary["edges"]
