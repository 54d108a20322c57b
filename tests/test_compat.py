"""What differs between transformer-lens 3 and 4 is confined to headcoop.compat; these tests run
under whichever is installed (`make test` for 3.x, `make test-tl4` for 4.x)."""

import subprocess
import sys

import pytest
import torch

from headcoop.compat import (
    TL_VERSION,
    attention_scale,
    attention_scores,
    load_parameters,
    parameters,
    score_hooks,
)
from headcoop.config import ModelConfig
from headcoop.errors import HeadcoopError
from headcoop.model import build_model

CFG = ModelConfig(d_model=12, n_heads=3, d_head=4, n_layers=2, positional=True, n_ctx=16)


def test_parameters_are_named_as_in_transformer_lens_3():
    model = build_model(CFG, d_vocab=7, seed=0)
    shapes = {k: tuple(v.shape) for k, v in parameters(model).items()}
    assert shapes["embed.W_E"] == (7, 12)
    assert shapes["blocks.1.attn.W_Q"] == (3, 12, 4)
    assert shapes["blocks.0.attn.W_O"] == (3, 4, 12)
    assert shapes["ln_final.w"] == (12,)
    assert not any(".mlp." in k for k in shapes)
    assert torch.equal(parameters(model)["blocks.1.attn.W_K"], model.blocks[1].attn.W_K)


def test_loading_parameters_sets_every_weight_and_checks_names_and_shapes():
    source, target = build_model(CFG, 7, seed=0), build_model(CFG, 7, seed=1)
    load_parameters(target, parameters(source))
    tokens = torch.randint(0, 7, (2, 9), generator=torch.Generator().manual_seed(0))
    assert torch.equal(target(tokens), source(tokens))
    state = dict(parameters(source))
    with pytest.raises(HeadcoopError, match=r"missing parameter 'blocks\.0\.attn\.b_V'"):
        load_parameters(target, {k: v for k, v in state.items() if k != "blocks.0.attn.b_V"})
    with pytest.raises(HeadcoopError, match=r"'embed.W_E' has shape \(6, 12\)"):
        load_parameters(target, {**state, "embed.W_E": torch.zeros(6, 12)})
    with pytest.raises(HeadcoopError, match=r"unexpected parameter 'blocks\.0\.mlp\.W_in'"):
        load_parameters(target, {**state, "blocks.0.mlp.W_in": torch.zeros(12, 48)})


def test_attention_scores_give_the_pattern_and_the_scale_is_sqrt_d_head():
    model = build_model(CFG, 7, seed=0)
    tokens = torch.randint(0, 7, (2, 9), generator=torch.Generator().manual_seed(1))
    _, cache = model.run_with_cache(tokens)
    for layer in range(2):
        assert attention_scale(model, layer) == 2.0
        scores = attention_scores(model, cache, layer)
        pattern = cache[f"blocks.{layer}.attn.hook_pattern"]
        assert torch.allclose(scores.softmax(-1), pattern, atol=1e-6)
        assert set(score_hooks(layer)) <= set(cache.keys())


@pytest.mark.skipif(TL_VERSION[0] != 3, reason="hook_attn_scores holds the scores only on 3.x")
def test_attention_scores_are_what_3x_hook_attn_scores_holds():
    model = build_model(CFG, 7, seed=0)
    tokens = torch.randint(0, 7, (2, 9), generator=torch.Generator().manual_seed(1))
    _, cache = model.run_with_cache(tokens)
    hooked = cache["blocks.1.attn.hook_attn_scores"]
    ours = attention_scores(model, cache, 1)
    assert torch.equal(ours.isinf(), hooked.isinf())
    assert torch.allclose(ours[~ours.isinf()], hooked[~hooked.isinf()], atol=1e-6)


@pytest.mark.parametrize("installed", ["3.8.1", "5.0.0"])
def test_an_unsupported_version_gets_one_line(installed, tmp_path):
    """The version check runs when a command first needs TransformerLens."""
    code = (
        "import importlib.metadata as m, sys\n"
        "real = m.version\n"
        f"m.version = lambda name: {installed!r} if name == 'transformer-lens' else real(name)\n"
        "from headcoop.cli import main\n"
        f"sys.exit(main(['eval', {str(tmp_path)!r}]))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 1
    assert done.stderr.strip() == (
        f"headcoop eval: error: unsupported transformer-lens {installed}: headcoop needs "
        ">=3.9,<5 (pip install 'transformer-lens>=3.9,<5')"
    )
