"""Successor heads: the task, succession scores of hand-built heads whose answer is known,
periodic features planted in an embedding, and steering with them."""

import json

import pytest
import torch

from headcoop.config import ModelConfig
from headcoop.errors import HeadcoopError
from headcoop.model import build_model
from headcoop.successor import (  # the public entry point the method is used by
    effective_ov,
    head_inputs,
    succession_scores,
    successor_heads,
)
from headcoop.successor.periodic import (
    feature_table,
    probe_features,
    residue_means,
    residue_shares,
    steer,
)
from headcoop.tasks import Successor
from headcoop.tasks.successor import DOMAINS, successors

TASK = Successor()
V = len(TASK.vocab)


def one_hot_model(n_heads: int = 1):
    """d_model = d_vocab: one-hot embeddings and unembedding, W_V the identity; each head's
    W_O is what the test sets."""
    cfg = ModelConfig(d_model=V, n_heads=n_heads, d_head=V, layernorm=False)
    model = build_model(cfg, d_vocab=V, seed=0)
    with torch.no_grad():
        model.embed.W_E.copy_(torch.eye(V))
        model.unembed.W_U.copy_(torch.eye(V))
        model.blocks[0].attn.W_V.copy_(torch.eye(V).expand(n_heads, V, V))
    return model


def successor_matrix() -> torch.Tensor:
    shift = torch.zeros(V, V)
    for tokens, cyclic in DOMAINS.values():
        for item, following in successors(tokens, cyclic).items():
            shift[TASK.vocab.index(item), TASK.vocab.index(following)] = 1.0
    return shift


def test_the_task_asks_every_item_that_has_a_successor():
    assert len(TASK.asked) == 99 + 7 + 12 + 25
    targets = TASK.targets(TASK.examples(["_0 Sun =", "Dec _2 _2 =", "98 ="]))[:, 0]
    assert [TASK.vocab[t] for t in targets] == ["Mon", "Jan", "99"]
    for bad, fragment in (("_0 99 =", "has no successor"), ("_0 3 4 =", "a second item"),
                          ("_0 =", "expected an item"), ("3 _0", "expected '='")):  # fmt: skip
        with pytest.raises(HeadcoopError, match=fragment):
            TASK.parse(bad)
    examples = TASK.split("test")[:20]
    bag, full = TASK.bags(examples), TASK.sequences(examples)
    assert torch.equal(bag.targets, full.targets)
    assert (full.tokens[torch.arange(20), full.read_pos[:, 0]] == TASK.vocab.index("=")).all()


def test_a_head_that_maps_each_item_to_the_next_scores_one_and_a_copying_head_zero():
    model = one_hot_model(n_heads=2)
    with torch.no_grad():
        model.blocks[0].attn.W_O[0] = successor_matrix()
        model.blocks[0].attn.W_O[1] = torch.eye(V)
    scores = succession_scores(model, TASK).set_index(["head", "domain"])["score"]
    for domain in (*DOMAINS, "all"):
        assert scores[(0, domain)] == 1.0 and scores[(1, domain)] == 0.0
    assert successor_heads(succession_scores(model, TASK))["head"].tolist() == [0]


def test_a_random_head_scores_about_one_over_the_domain_size():
    model = one_hot_model(n_heads=64)
    with torch.no_grad():
        model.blocks[0].attn.W_O.copy_(
            torch.randn(64, V, V, generator=torch.Generator().manual_seed(0))
        )
    scores = succession_scores(model, TASK)
    for domain, (tokens, _) in DOMAINS.items():
        mean = scores[scores["domain"] == domain]["score"].mean()
        assert mean == pytest.approx(1 / len(tokens), abs=0.6 / len(tokens) + 0.01), domain


def test_scores_ignore_a_positive_scale_and_the_factored_circuit_is_the_dense_one():
    model = build_model(ModelConfig(d_model=24, n_heads=3, d_head=6), d_vocab=V, seed=3)
    before = succession_scores(model, TASK)["score"]
    with torch.no_grad():
        model.blocks[0].attn.W_O.mul_(7.5)
    assert succession_scores(model, TASK)["score"].equals(before)
    ids = torch.tensor([TASK.vocab.index(t) for t in DOMAINS["months"][0]])
    x = head_inputs(model, ids)
    factored = effective_ov(model, x, ids, ((0, 1),)).AB
    attn = model.blocks[0].attn
    dense = x @ attn.W_V[1] @ attn.W_O[1] @ model.W_U[:, ids]
    assert torch.allclose(factored, dense.detach(), atol=1e-5)


def planted_model():
    """The numbers' embeddings hold n mod 10 and n // 10 one-hot (dimensions 0-9 and 10-19);
    OV is the identity and the unembedding of m reads the digits of m - 1: the head answers
    n + 1, and mod-10 features are planted in dimensions 0-9."""
    cfg = ModelConfig(d_model=20, n_heads=1, d_head=20, layernorm=False)
    model = build_model(cfg, d_vocab=V, seed=0)
    with torch.no_grad():
        for param in model.parameters():
            param.zero_()
        for n in range(100):
            token = TASK.vocab.index(str(n))
            model.embed.W_E[token, n % 10] = 1.0
            model.embed.W_E[token, 10 + n // 10] = 1.0
            if n >= 1:
                model.unembed.W_U[(n - 1) % 10, token] = 1.0
                model.unembed.W_U[10 + (n - 1) // 10, token] = 1.0
        model.blocks[0].attn.W_V[0] = torch.eye(20)
        model.blocks[0].attn.W_O[0] = torch.eye(20)
    ids = torch.tensor([TASK.vocab.index(str(n)) for n in range(100)])
    return model, ids


def test_planted_mod_ten_features_are_found_and_steer_the_head():
    model, ids = planted_model()
    scores = succession_scores(model, TASK).set_index("domain")["score"]
    assert scores["numbers"] == 1.0
    x = head_inputs(model, ids)
    probe = probe_features(x, 10)  # [residue d_model]
    assert probe[:, :10].argmax(1).tolist() == list(range(10))  # each finds its own digit
    shares = residue_shares(probe @ (x - x.mean(0)).T, 10)
    assert (shares > 0.5).all()
    means = residue_means(x, 10)
    assert torch.allclose(means[3] - means[7], torch.eye(20)[3] - torch.eye(20)[7])
    rows = feature_table(x)
    assert any(r["present"] and r["best_k"] == 10 for r in rows if r["method"] == "probe mod 10")
    rates = steer(model, ids, ((0, 0),), k=10)
    assert rates["features"] >= 0.9 and rates["random"] < 0.1


def test_residue_shares():
    activations = torch.tensor([[2.0, 0.0, 0.0, 0.0, 2.0, 0.0, 0.0, 0.0]])
    assert residue_shares(activations, 4).item() == 1.0
    assert residue_shares(activations, 3).item() == 0.5


def test_the_successor_command_writes_its_files(tmp_path, capsys):
    from headcoop.cli import main
    from headcoop.loading.checkpoint import save_checkpoint

    model, _ = planted_model()
    save_checkpoint(tmp_path / "ckpt", model, {"task": TASK.to_config(), "train": {}})
    out = tmp_path / "analysis"
    assert main(["successor", str(tmp_path / "ckpt"), "--out", str(out)]) == 0
    assert "successor head(s)" in capsys.readouterr().out
    for name in ("succession.csv", "features.csv", "steering.csv", "summary.json"):
        assert (out / name).stat().st_size > 50, name
    import pandas as pd

    features = pd.read_csv(out / "features.csv")
    probe10 = features[features["method"] == "probe mod 10"]
    assert probe10["importance"].max() > 0.05  # the planted digits carry the succession
    summary = json.loads((out / "summary.json").read_text())
    steering = {(r["path"], r["k"]): r for r in summary["steering"]}
    assert steering[("L0H0", 10)]["features"] >= 0.9
    assert summary["by_domain"]["numbers"]["L0H0"] == 1.0
