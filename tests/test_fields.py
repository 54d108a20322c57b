"""Every TransformerLens config field honoured or refused, on checkpoints written by plain
TransformerLens code: under the installed version (3.x or 4.x) written here, and under 3.x
as committed fixtures (`scripts/make_tl3_fixtures.py`) that 4.x must load to the same logits.
Each loaded model is analysed and compared with the plain model's own hooked forward."""

import dataclasses
import functools
import inspect
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from headcoop import PromptTask, analyze, load_checkpoint, save_checkpoint
from headcoop.compat import TL_VERSION
from headcoop.errors import HeadcoopError
from headcoop.loading.fields import BUILT, IGNORED, REFUSED
from headcoop.loading.weights import expected_shapes

FIXTURES = Path(__file__).parent / "fixtures" / "tl3"
BASE = {"n_layers": 1, "d_model": 32, "n_heads": 2, "d_head": 4, "n_ctx": 10, "d_vocab": 12}
FIELD_CASES = {
    "mlp of width 64": {"attn_only": False, "d_mlp": 64},
    "rotary, rotary_dim 2": {"positional_embedding_type": "rotary", "rotary_dim": 2},
    "rotary, adjacent pairs": {
        "positional_embedding_type": "rotary",
        "rotary_adjacent_pairs": True,
    },
    "LN": {"normalization_type": "LN", "attn_only": False, "d_mlp": 16},
    "LNPre": {"normalization_type": "LNPre"},
    "RMS": {"normalization_type": "RMS", "attn_only": False, "d_mlp": 16},
    "RMSPre": {"normalization_type": "RMSPre"},
    "no normalization": {"normalization_type": None},
    "gelu": {"attn_only": False, "d_mlp": 16, "act_fn": "gelu"},
    "relu": {"attn_only": False, "d_mlp": 16, "act_fn": "relu"},
    "solu": {"attn_only": False, "d_mlp": 16, "act_fn": "solu"},
    "solu_ln": {"attn_only": False, "d_mlp": 16, "act_fn": "solu_ln"},
    "attn_scale 3": {"attn_scale": 3.0},
    "use_attn_scale off": {"use_attn_scale": False},
    "final_rms": {"final_rms": True, "n_layers": 2},
    "eps 1e-3": {"eps": 1e-3, "n_layers": 2, "attn_only": False, "d_mlp": 8},
}
"""Non-default values of every built field, each a small plain TransformerLens model."""
REFUSED_CASES = {
    "d_vocab_out": ({"d_vocab_out": 20}, "separate output vocabulary"),
    "parallel_attn_mlp": (
        {"parallel_attn_mlp": True, "attn_only": False, "d_mlp": 8},
        "attention and MLP in parallel",
    ),
    "gated_mlp": ({"gated_mlp": True, "attn_only": False, "d_mlp": 8}, "a gated MLP"),
    "attention_dir": ({"attention_dir": "bidirectional"}, "bidirectional attention"),
}


def plain_model(kwargs: dict, seed: int = 3):
    """A model built by plain TransformerLens code, as a user would, with every weight
    random (biases and norms too, so that each field's effect shows)."""
    import transformer_lens as tl

    torch.manual_seed(seed)
    if TL_VERSION[0] == 3:
        model = tl.HookedTransformer(tl.HookedTransformerConfig(**kwargs, seed=seed))
    else:
        model = tl.TransformerBridge.boot_native(tl.TransformerBridgeConfig(**kwargs))
    with torch.no_grad():
        for param in model.parameters():
            param.add_(0.3 * torch.randn_like(param))
    return model.eval()


def write_plain(directory: Path, kwargs: dict, weights: str = "model.safetensors"):
    """config.json with the fields at its top level, the model's own state dict."""
    model = plain_model(kwargs)
    directory.mkdir(parents=True)
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    if weights == "model.safetensors":
        save_file(state, directory / weights)
    else:
        torch.save(state, directory / weights)
    (directory / "config.json").write_text(json.dumps(kwargs))
    return model


TOKENS = torch.tensor([[0, 3, 5, 7, 1, 9, 2, 11, 4, 6], [1, 1, 2, 3, 5, 8, 0, 10, 7, 2]])


def prompts() -> PromptTask:
    """Prompts over the 12 tokens, read at several positions, two candidates."""
    generator = torch.Generator().manual_seed(0)
    rows = torch.randint(0, 12, (40, 10), generator=generator)
    return PromptTask(rows, targets=(rows[:, 0] % 2).tolist(), positions=[9] * 40)


def test_the_table_covers_every_field_of_the_installed_config():
    import transformer_lens as tl

    if TL_VERSION[0] == 3:
        names = {f.name for f in dataclasses.fields(tl.HookedTransformerConfig)}
    else:
        from transformer_lens.config import TransformerLensConfig

        names = set(inspect.signature(tl.TransformerBridgeConfig.__init__).parameters)
        names |= set(inspect.signature(TransformerLensConfig.__init__).parameters)
        names -= {"self", "kwargs"}
    assert names - (set(BUILT) | IGNORED | set(REFUSED)) == set()
    assert not set(BUILT) & IGNORED and not set(BUILT) & set(REFUSED) and not IGNORED & set(REFUSED)


def test_the_derived_shapes_are_transformer_lens_own():
    for case in FIELD_CASES.values():
        kwargs = BASE | case
        model = plain_model(kwargs)
        if TL_VERSION[0] == 3:
            own = {k: tuple(v.shape) for k, v in model.named_parameters()}
        else:
            from headcoop.compat import parameters

            own = {k: tuple(v.shape) for k, v in parameters(model).items()}
            if kwargs.get("act_fn") == "solu_ln":  # the bridge's 3.x view omits the MLP's LN
                own |= {f"blocks.{k}.mlp.ln.{x}": (16,) for k in range(1) for x in "wb"}
        assert expected_shapes(kwargs) == own, case


@pytest.mark.parametrize("case", FIELD_CASES, ids=list(FIELD_CASES))
def test_a_plain_checkpoint_of_every_field_loads_and_analyses_as_its_own_forward(tmp_path, case):
    kwargs = BASE | FIELD_CASES[case]
    weights = "model.pt" if len(case) % 2 else "model.safetensors"
    plain = write_plain(tmp_path / "ck", kwargs, weights)
    model, _ = load_checkpoint(tmp_path / "ck")
    assert torch.allclose(model(TOKENS), plain(TOKENS), atol=1e-5)
    task = prompts()
    result = analyze(model, task, subsets=False)
    test = task.split("test")
    batch = task.sequences(test)
    logits = plain(batch.tokens)[torch.arange(len(test)), batch.read_pos[:, 0]]
    accuracy = (logits.argmax(-1) == batch.targets[:, 0]).float().mean().item()  # every token
    assert result.summary["accuracy"]["target"] == pytest.approx(accuracy)
    kept = _keep_only_head(plain, 0, batch, len(test))
    assert result.heads_frame()["l_acc_direct"][0] == pytest.approx(
        (kept.argmax(-1) == batch.targets[:, 0]).float().mean().item()
    )


def _keep_only_head(model, head: int, batch, n: int) -> torch.Tensor:
    """The candidates' logits with every head but ``head`` zeroed at hook_z (plain hooks)."""

    def zero_others(z, hook, layer):
        keep = torch.zeros(z.shape[2], dtype=torch.bool)
        keep[head] = layer == 0
        return z * keep[None, None, :, None]

    hooks = [
        (f"blocks.{k}.attn.hook_z", functools.partial(zero_others, layer=k))
        for k in range(model.cfg.n_layers)
    ]
    with model.hooks(fwd_hooks=hooks):
        logits = model(batch.tokens)
    return logits[torch.arange(n), batch.read_pos[:, 0]][:, [0, 1]].detach()


@pytest.mark.parametrize("case", REFUSED_CASES, ids=list(REFUSED_CASES))
def test_a_field_headcoop_cannot_follow_is_refused_naming_it(tmp_path, case):
    change, meaning = REFUSED_CASES[case]
    (tmp_path / "ck").mkdir()
    (tmp_path / "ck" / "config.json").write_text(json.dumps(BASE | change))
    with pytest.raises(HeadcoopError, match=meaning) as error:
        load_checkpoint(tmp_path / "ck")
    assert case in str(error.value)


def test_fields_that_do_not_compute_are_ignored_and_said(tmp_path, caplog):
    import logging

    kwargs = BASE | {"model_name": "mine", "tokenizer_name": "gpt2", "n_devices": 1}
    write_plain(tmp_path / "ck", {k: v for k, v in kwargs.items() if k in BASE})
    (tmp_path / "ck" / "config.json").write_text(json.dumps(kwargs))
    with caplog.at_level(logging.INFO):
        load_checkpoint(tmp_path / "ck")
    assert "ignored: model_name, tokenizer_name, n_devices" in caplog.text


def test_a_wrong_type_or_range_is_one_line_naming_the_field(tmp_path):
    write_plain(tmp_path / "ck", BASE)
    for field, value, said in [
        ("eps", "0.1", "'eps' must be a finite number > 0"),
        ("eps", -1.0, "'eps' must be"),
        ("d_model", 32.5, "'d_model'"),
        ("act_fn", "swish2", "'act_fn' must be one of"),
    ]:
        (tmp_path / "ck" / "config.json").write_text(json.dumps(BASE | {field: value}))
        with pytest.raises(HeadcoopError, match=said):
            load_checkpoint(tmp_path / "ck")


def test_a_model_saved_by_headcoop_keeps_every_field(tmp_path):
    for case in ("rotary, rotary_dim 2", "use_attn_scale off", "final_rms", "solu_ln"):
        plain = plain_model(BASE | FIELD_CASES[case])
        path = save_checkpoint(tmp_path / case.replace(" ", "_"), plain, {})
        again, _ = load_checkpoint(path)
        assert torch.allclose(again(TOKENS), plain(TOKENS), atol=1e-5), case


FIXTURE_CASES = sorted(p.name for p in FIXTURES.iterdir()) if FIXTURES.is_dir() else []


@pytest.mark.parametrize("name", FIXTURE_CASES)
def test_checkpoints_written_by_transformer_lens_3_give_its_logits(name):
    model, _ = load_checkpoint(FIXTURES / name)
    expected = json.loads((FIXTURES / name / "logits.json").read_text())
    tokens = torch.tensor(expected["tokens"])
    assert torch.allclose(model(tokens), torch.tensor(expected["logits"]), atol=1e-4)


def test_every_field_case_has_a_transformer_lens_3_fixture():
    assert len(FIXTURE_CASES) == len(FIELD_CASES)


def test_trace_refuses_a_rotary_model_in_one_line():
    from headcoop.trace import trace

    model = plain_model(BASE | FIELD_CASES["rotary, rotary_dim 2"])
    with pytest.raises(HeadcoopError, match="rotary attention"):
        trace(model, prompts(), prompts().split("test"))
