import subprocess
import sys

import pytest
import torch

from headcoop.compat import TL_VERSION, parameters
from headcoop.config import ModelConfig, TrainConfig
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
    a = parameters(build_model(ModelConfig(), d_vocab=8, seed=7))
    assert torch.equal(torch.rand(1), before)
    b = parameters(build_model(ModelConfig(), d_vocab=8, seed=7))
    c = parameters(build_model(ModelConfig(), d_vocab=8, seed=8))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["blocks.0.attn.W_Q"], c["blocks.0.attn.W_Q"])


def test_models_of_one_config_share_nothing():
    """build_model copies one model per configuration: the copies keep no common state."""
    first, second = (build_model(ModelConfig(n_heads=2), d_vocab=8, seed=s) for s in (0, 1))
    tokens = torch.tensor([[0, 1, 2, 3]])
    before = second(tokens)
    with torch.no_grad():
        first.W_E.mul_(100.0)
    first.add_hook("blocks.0.attn.hook_pattern", lambda pattern, hook: pattern * 0)
    assert torch.equal(second(tokens), before)
    assert not torch.equal(first(tokens), before)
    assert first.W_E.data_ptr() != second.W_E.data_ptr()


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


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"epochs": True}, "train config: epochs must be an integer in [1, 100000], got True"),
        ({"lr": 0.0}, "train config: lr must be a finite number in (0, 1e+06], got 0.0"),
        ({"lr": float("nan")}, "train config: lr must be a finite number in (0, 1e+06], got nan"),
        ({"seed": 2**64}, "train config: seed must be an integer in [0, 4294967295]"),
        ({"lr_schedule": "linear"}, "train config: lr_schedule must be one of"),
    ],
)
def test_bad_train_settings_are_named_in_one_line(kwargs, message):
    with pytest.raises(HeadcoopError) as info:
        TrainConfig(**kwargs)
    assert str(info.value).startswith(message)


def test_settings_of_the_wrong_type_are_named_outside_the_type_checked_test_run():
    """The test run checks annotations at call time (jaxtyping), which would answer first;
    a user's process has no such hook, so ask one."""
    code = (
        "from headcoop.config import TrainConfig\n"
        "for kwargs in ({'epochs': '5'}, {'lr_schedule': 3}):\n"
        "    try:\n"
        "        TrainConfig(**kwargs)\n"
        "    except ValueError as exc:\n"
        "        print(type(exc).__name__, exc)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.splitlines() == [
        "HeadcoopError train config: epochs must be an integer in [1, 100000], got '5'",
        "HeadcoopError train config: lr_schedule must be a str, got 3",
    ]


@pytest.mark.skipif(TL_VERSION[0] != 3, reason="compares with HookedTransformer's own init")
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_initialisation_is_transformer_lens_3s_own():
    cfg = ModelConfig(d_model=12, n_heads=3, d_head=4, n_layers=2, positional=True)
    ours = build_model(cfg, d_vocab=7, seed=5)
    import transformer_lens as tl

    theirs = tl.HookedTransformer(tl.HookedTransformerConfig(**cfg.hooked_kwargs(7), seed=5))
    for name, value in parameters(theirs).items():
        assert torch.equal(parameters(ours)[name], value), name


def test_initialisation_draws_matrices_and_sets_biases_and_norms():
    model = build_model(ModelConfig(n_heads=8), d_vocab=8, seed=0)
    params = parameters(model)
    assert abs(float(params["blocks.0.attn.W_Q"].detach().std()) - 0.8 / 32**0.5) < 0.01
    assert not params["blocks.0.attn.b_Q"].any() and not params["unembed.b_U"].any()
    assert torch.equal(params["ln_final.w"], torch.ones(32))
    assert params["unembed.b_U"].requires_grad


def test_pytorch_initialisation_draws_as_plain_torch_modules_do():
    cfg = ModelConfig(d_model=64, n_heads=8, d_head=4)
    params = parameters(build_model(cfg, d_vocab=50, seed=0, init="pytorch"))
    assert abs(float(params["embed.W_E"].detach().std()) - 1.0) < 0.05
    for name, fan_in in (("blocks.0.attn.W_Q", 64), ("blocks.0.attn.b_V", 64),
                         ("blocks.0.attn.W_O", 32), ("blocks.0.attn.b_O", 32),
                         ("unembed.W_U", 64), ("unembed.b_U", 64)):  # fmt: skip
        value, bound = params[name].detach(), fan_in**-0.5
        assert value.abs().max() <= bound, name
        assert value.abs().max() > 0.9 * bound, name  # uniform over the whole interval
    assert torch.equal(params["ln_final.w"], torch.ones(64)) and not params["ln_final.b"].any()


@pytest.mark.parametrize("init", ["transformer_lens", "pytorch"])
def test_init_scale_multiplies_every_random_draw(init):
    one = parameters(build_model(ModelConfig(), d_vocab=8, seed=3, init=init))
    three = parameters(build_model(ModelConfig(), d_vocab=8, seed=3, init=init, init_scale=3.0))
    for name, value in one.items():
        expected = value if name.endswith((".w", ".b")) else 3 * value
        assert torch.allclose(three[name], expected), name
