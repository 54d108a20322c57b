import pytest
import torch

from headcoop.config import ModelConfig
from headcoop.errors import HeadcoopError
from headcoop.model import build_model


def test_default_is_the_papers_stable_setup():
    model = build_model(ModelConfig(), d_vocab=8, seed=0)
    cfg = model.cfg
    assert (cfg.n_layers, cfg.d_model, cfg.n_heads, cfg.d_head) == (1, 32, 16, 2)
    assert cfg.attn_only and cfg.n_ctx >= 2048 and cfg.d_vocab == 8
    assert cfg.normalization_type == "LN"


def test_positional_embedding_is_zero_and_frozen():
    model = build_model(ModelConfig(), d_vocab=8, seed=0)
    assert not model.pos_embed.W_pos.any()
    assert not model.pos_embed.W_pos.requires_grad
    learned = build_model(ModelConfig(positional=True), d_vocab=8, seed=0)
    assert learned.pos_embed.W_pos.any() and learned.pos_embed.W_pos.requires_grad


def test_same_seed_same_weights_and_global_rng_untouched():
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    a = build_model(ModelConfig(), d_vocab=8, seed=7).state_dict()
    assert torch.equal(torch.rand(1), before)
    b = build_model(ModelConfig(), d_vocab=8, seed=7).state_dict()
    c = build_model(ModelConfig(), d_vocab=8, seed=8).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["blocks.0.attn.W_Q"], c["blocks.0.attn.W_Q"])


def test_config_is_read_back_off_the_model():
    cfg = ModelConfig(d_model=8, n_heads=3, d_head=1, layernorm=False)
    assert ModelConfig.of(build_model(cfg, d_vocab=8, seed=0)) == cfg


@pytest.mark.parametrize("field", ["d_model", "n_heads", "d_head", "n_layers", "n_ctx"])
def test_non_positive_sizes_are_rejected_by_name(field):
    with pytest.raises(HeadcoopError, match=field):
        ModelConfig(**{field: 0})


def test_layernorm_needs_two_dimensions():
    with pytest.raises(HeadcoopError, match="layernorm"):
        ModelConfig(d_model=1)
    assert ModelConfig(d_model=1, layernorm=False).d_model == 1
