"""The head analyzers on any TransformerLens model: MLPs, two layers with positions, every
normalization, checkpoints written by plain TransformerLens code. Each number is checked
against a computation written here with TransformerLens hooks alone."""

import json
import logging

import pandas as pd
import pytest
import torch
from safetensors.torch import save_file

from headcoop import analyze, load_checkpoint, save_checkpoint
from headcoop.cli import main
from headcoop.compat import TL_VERSION
from headcoop.config import ModelConfig
from headcoop.errors import HeadcoopError
from headcoop.metrics.classes import candidate_index, highest
from headcoop.metrics.subsets import singles_and_pairs
from headcoop.model import build_model
from headcoop.tasks import Count01, Induction, SplitSpec
from headcoop.tasks.base import candidate_ids

SHORT = SplitSpec(120, n01=(0, 12), n2=(0, 12))
SHAPES = {
    "one layer, MLP": ModelConfig(d_model=16, n_heads=3, d_head=4, d_mlp=24),
    "two layers, positions": ModelConfig(
        d_model=16, n_heads=2, d_head=4, n_layers=2, positional=True, n_ctx=64
    ),
    "two layers, MLP, RMSNorm": ModelConfig(
        d_model=16, n_heads=2, d_head=4, n_layers=2, d_mlp=16, normalization="RMS", n_ctx=64
    ),
}


@pytest.fixture(scope="module")
def short_task() -> Count01:
    return Count01(splits={"train": SHORT, "val": SHORT, "test": SHORT})


def _plain_model(kwargs: dict):
    """A model built by plain TransformerLens code, as a user would."""
    import transformer_lens as tl

    if TL_VERSION[0] == 3:
        return tl.HookedTransformer(tl.HookedTransformerConfig(**kwargs, seed=3))
    torch.manual_seed(3)
    return tl.TransformerBridge.boot_native(tl.TransformerBridgeConfig(**kwargs))


def _hooked_logits(model, task, examples, hooks) -> torch.Tensor:
    """The decision's candidate logits of a hooked forward, one example at a time."""
    batch = task.sequences(examples)
    candidates = candidate_ids(task, task.decision)
    with model.hooks(fwd_hooks=hooks):
        logits = model(batch.tokens)
    rows = torch.arange(len(examples))
    return logits[rows, batch.read_pos[:, task.decision]][:, candidates].detach()


def _accuracy(logits: torch.Tensor, task, examples) -> float:
    targets = task.targets(examples)[:, task.decision]
    index = candidate_index(targets, candidate_ids(task, task.decision))
    return float((highest(logits.T) == index).float().mean())  # candidates first


def _keep_only(model, kept: list[int], replacement=None) -> list:
    """hook_z hooks that ablate every head but ``kept`` (layer-major indices): zeroed, or set
    to ``replacement(layer, z, batch_positions)``."""
    n_heads = model.cfg.n_heads
    hooks = []
    for layer in range(model.cfg.n_layers):
        keep = torch.tensor([layer * n_heads + h in kept for h in range(n_heads)])

        def hook(z, hook, layer=layer, keep=keep):
            other = torch.zeros_like(z) if replacement is None else replacement(layer, z)
            return torch.where(keep[None, None, :, None], z, other)

        hooks.append((f"blocks.{layer}.attn.hook_z", hook))
    return hooks


def _mean_replacement(model, task):
    """Mean ablation written out: each head's mean output over the training split at the
    decision, and over the other positions before it, placed by position."""
    train = task.split("train")
    batch = task.sequences(train)
    _, cache = model.run_with_cache(batch.tokens)
    pos = torch.arange(batch.tokens.shape[1])
    read = batch.read_pos  # [example read]
    is_read = (pos[None, :, None] == read[:, None, :]).any(-1)
    other = (pos[None] <= read.max(-1, keepdim=True).values) & ~is_read
    means = {}
    for layer in range(model.cfg.n_layers):
        z = cache[f"blocks.{layer}.attn.hook_z"]
        at = z[torch.arange(len(train))[:, None], read].mean(0)  # [read head d_head]
        elsewhere = (z * other[..., None, None]).sum((0, 1)) / other.sum()
        means[layer] = (at, elsewhere)

    def replacement(layer, z):
        test = task.sequences(task.split("test"))
        at, elsewhere = means[layer]
        out = elsewhere.expand_as(z).clone()
        for k in range(test.read_pos.shape[1]):
            out[torch.arange(len(z)), test.read_pos[:, k]] = at[k]
        return out

    return replacement


@pytest.fixture(scope="module", params=list(SHAPES))
def measured(request, short_task):
    model = build_model(SHAPES[request.param], len(short_task.vocab), seed=2)
    return model, analyze(model, short_task, subsets=False)


def test_direct_and_mean_ablation_equal_hooked_forwards(measured, short_task):
    model, result = measured
    test = short_task.split("test")
    mean = _mean_replacement(model, short_task)
    masks = singles_and_pairs(model.cfg.n_layers * model.cfg.n_heads)
    pairs = result.pairs_frame().set_index("heads")
    heads = result.heads_frame()
    for mask in masks[:: max(1, len(masks) // 6)]:
        kept = torch.nonzero(mask).flatten().tolist()
        row = heads.iloc[kept[0]] if len(kept) == 1 else pairs.loc[" ".join(map(str, kept))]
        zeroed = _hooked_logits(model, short_task, test, _keep_only(model, kept))
        meaned = _hooked_logits(model, short_task, test, _keep_only(model, kept, mean))
        assert row["l_acc_direct"] == pytest.approx(_accuracy(zeroed, short_task, test), abs=1e-9)
        assert row["l_acc_mean"] == pytest.approx(_accuracy(meaned, short_task, test), abs=1e-9)


def test_paper_l_acc_is_each_heads_direct_contribution(measured, short_task):
    """l_acc of a head: its output through W_O, the final normalization at the full model's
    scale (TransformerLens's apply_ln_to_stack) and W_U, plus the constant biases."""
    model, result = measured
    test = short_task.split("test")
    batch = short_task.sequences(test)
    _, cache = model.run_with_cache(batch.tokens)
    rows, read = torch.arange(len(test)), batch.read_pos[:, short_task.decision]
    norm = model.cfg.normalization_type
    scale = cache["ln_final.hook_scale"][rows, read] if norm else torch.ones(len(test), 1)
    candidates = candidate_ids(short_task, short_task.decision)

    def read_out(x):  # a residual-stream term through the frozen final normalization
        if norm in ("LN", "LNPre"):
            x = x - x.mean(-1, keepdim=True)
        x = x / scale
        return (x * model.ln_final.w if norm in ("LN", "RMS") else x) @ model.W_U[:, candidates]

    constant = read_out(model.b_O.sum(0).expand(len(test), -1)) + model.b_U[candidates]
    if norm == "LN":
        constant = constant + model.ln_final.b @ model.W_U[:, candidates]
    for index, row in result.heads_frame().iterrows():
        layer, head = divmod(index, model.cfg.n_heads)
        z = cache[f"blocks.{layer}.attn.hook_z"][rows, read, head]
        logits = read_out(z @ model.W_O[layer, head]) + constant
        assert row["l_acc"] == pytest.approx(_accuracy(logits.detach(), short_task, test))
        assert (row["layer"], row["name"]) == (layer, f"L{layer}H{head}")


def test_all_sets_are_exact_on_a_two_layer_model(short_task):
    model = build_model(SHAPES["two layers, positions"], len(short_task.vocab), seed=4)
    result = analyze(model, short_task)
    test = short_task.split("test")
    subsets = result.subsets.to_pandas().set_index("heads")
    for kept in ([], [0, 3], [1, 2, 3]):
        zeroed = _hooked_logits(model, short_task, test, _keep_only(model, kept))
        expected = _accuracy(zeroed, short_task, test)
        assert subsets.loc[" ".join(map(str, kept)), "l_acc_direct"] == pytest.approx(expected)
    assert len(subsets) == 16 and "interaction_spectrum" in result.summary


def test_an_example_reads_the_same_in_every_batch(short_task):
    examples = short_task.split("test")[:30]
    alone = short_task.sequences(examples[7:8])
    among = short_task.sequences(examples)
    width = alone.tokens.shape[1]
    assert torch.equal(among.tokens[7, :width], alone.tokens[0])


def test_measured_ratios_equal_the_probe_without_positions(short_task, trained, task):
    from headcoop.engine.cache import collect
    from headcoop.metrics.attention import measured_ratio, weight_ratio

    cache = collect(trained, task, task.split("test"))
    ids = [task.vocab.index(t) for t in ("=", "0", "1")]
    mean, spread = measured_ratio(cache, task.decision, *ids)
    assert torch.allclose(mean, weight_ratio(trained, *ids), rtol=1e-4)
    assert spread.max() < 1e-3


def _write_plain(directory, kwargs: dict, weights: str, task_section: dict | None = None):
    """A checkpoint as plain TransformerLens code writes one: config.json holding the config's
    fields at its top level, the state dict as safetensors or a torch file."""
    model = _plain_model(kwargs)
    directory.mkdir()
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    if weights == "model.safetensors":
        save_file(state, directory / weights)
    else:
        torch.save(state, directory / weights)
    config = dict(kwargs) if task_section is None else {"model": kwargs, "task": task_section}
    (directory / "config.json").write_text(json.dumps(config))
    return model


INDUCTION = Induction(tokens=10, half=5, size=200)
TWO_LAYERS = {
    "n_layers": 2,
    "d_model": 16,
    "n_heads": 4,
    "d_head": 4,
    "n_ctx": 11,
    "d_vocab": 11,
    "attn_only": True,
    "normalization_type": "LN",
}


@pytest.mark.parametrize("weights", ["model.safetensors", "model.pt"])
def test_a_plain_transformer_lens_checkpoint_analyses_from_the_command_line(tmp_path, weights):
    plain = _write_plain(tmp_path / "ck", TWO_LAYERS, weights)
    model, _ = load_checkpoint(tmp_path / "ck")
    tokens = INDUCTION.sequences(INDUCTION.split("test")[:5]).tokens
    assert torch.allclose(model(tokens), plain(tokens), atol=1e-5)
    out = tmp_path / "out"
    args = ["--task", "induction", *("--task-param", "tokens=10", "--task-param", "half=5")]
    args += ["--task-param", "size=200", "--subsets-budget", "0"]
    assert main(["analyze", str(tmp_path / "ck"), "--out", str(out), "--quiet", *args]) == 0
    heads, pairs = pd.read_csv(out / "heads.csv"), pd.read_csv(out / "pairs.csv")
    assert len(heads) == 8 and len(pairs) == 28 and (out / "report.html").is_file()
    assert {"layer", "name", "l_acc", "l_acc_direct", "l_acc_mean", "s_acc"} <= set(heads)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["subsets"]["measured"] == "sampled"  # a budget of 0 s: said in the summary


def test_a_checkpoint_naming_no_task_asks_for_one(tmp_path, capsys):
    _write_plain(tmp_path / "ck", TWO_LAYERS, "model.safetensors")
    assert main(["eval", str(tmp_path / "ck")]) != 0
    assert "names no task" in capsys.readouterr().err


def test_missing_model_fields_take_transformer_lens_defaults(tmp_path, caplog):
    kwargs = {k: v for k, v in TWO_LAYERS.items() if k != "normalization_type"}
    section = {"name": "induction", "tokens": 10, "half": 5}  # no seed, no size
    _write_plain(tmp_path / "ck", kwargs, "model.safetensors", section)
    with caplog.at_level(logging.WARNING):
        model, config = load_checkpoint(tmp_path / "ck")
        from headcoop.tasks import task_from_config

        task = task_from_config(config["task"])
    assert model.cfg.normalization_type == "LN" and task.size == Induction().size
    assert "seed, size not stored" in caplog.text


def test_what_headcoop_cannot_follow_is_refused_in_one_line(tmp_path):
    _write_plain(tmp_path / "ck", {**TWO_LAYERS, "attention_dir": "bidirectional"}, "model.pt")
    with pytest.raises(HeadcoopError, match="bidirectional attention"):
        load_checkpoint(tmp_path / "ck")


def test_a_model_of_another_vocabulary_is_refused_from_python(short_task):
    model = _plain_model(TWO_LAYERS)
    with pytest.raises(HeadcoopError, match="has 11 tokens, task 'count01' has"):
        analyze(model, short_task, subsets=False)


def test_a_stock_model_saves_and_reloads(tmp_path):
    model = _plain_model({**TWO_LAYERS, "attn_only": False, "d_mlp": 8, "act_fn": "gelu"})
    save_checkpoint(tmp_path / "ck", model, {"task": INDUCTION.to_config()})
    again, _ = load_checkpoint(tmp_path / "ck")
    tokens = INDUCTION.sequences(INDUCTION.split("test")[:5]).tokens
    assert torch.allclose(again(tokens), model(tokens), atol=1e-5)


def test_a_users_own_task_file_loads_from_the_command_line(tmp_path, capsys):
    source = tmp_path / "my_task.py"
    source.write_text(
        "from headcoop.tasks import Induction\n\n"
        "class Short(Induction):\n"
        "    name = 'short_induction'\n"
    )
    _write_plain(tmp_path / "ck", TWO_LAYERS, "model.safetensors")
    args = ["eval", str(tmp_path / "ck"), "--task", f"{source}:Short"]
    args += ["--task-param", "tokens=10", "--task-param", "half=5", "--task-param", "size=50"]
    assert main(args) == 0
    assert "test accuracy (50 examples, full sequences)" in capsys.readouterr().out


def test_an_mlp_model_trained_by_headcoop_analyses(tmp_path, short_task):
    run = tmp_path / "run"
    flags = ["--d-mlp", "8", "--epochs", "1", "--n-heads", "3", "--d-model", "8"]
    flags += ["--task-param", f"splits={json.dumps(short_task.to_config()['splits'])}"]
    assert main(["train", "--out", str(run), "--quiet", *flags]) == 0
    assert main(["analyze", str(run), "--out", str(tmp_path / "a"), "--quiet"]) == 0
    heads = pd.read_csv(tmp_path / "a" / "heads.csv")
    assert len(heads) == 3 and heads["l_acc_mean"].between(0, 1).all()


def test_trace_with_no_firing_head_is_an_empty_result_and_one_line(tmp_path, capsys):
    run = tmp_path / "run"
    shape = ["--n-layers", "2", "--positional", "--n-ctx", "17", "--d-model", "16"]
    shape += ["--n-heads", "2", "--d-head", "4", "--epochs", "1"]
    assert main(["train", "--task", "induction", "--task-param", "size=100", *shape,
                 "--out", str(run), "--quiet"]) == 0  # fmt: skip
    assert main(["trace", str(run), "--out", str(tmp_path / "t"), "--prompts", "4"]) == 0
    assert "no head fires" in capsys.readouterr().out
    assert (tmp_path / "t" / "summary.json").is_file()
