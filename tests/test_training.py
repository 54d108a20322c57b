from dataclasses import replace

import pytest
import torch

import headcoop.loading.checkpoint as checkpoint_module
from headcoop.compat import parameters
from headcoop.config import ModelConfig, TrainConfig
from headcoop.engine.run import evaluate
from headcoop.errors import HeadcoopError
from headcoop.loading.checkpoint import load_checkpoint, run_checkpoints
from headcoop.model import build_model
from headcoop.tasks import Count01, SplitSpec
from headcoop.training.trainer import _denormals_flushed, train, train_models

SMALL = ModelConfig(d_model=8, n_heads=4, d_head=2)


def weights(model):
    return {k: v.clone() for k, v in parameters(model).items()}


def same(a, b):
    return all(torch.equal(a[k], b[k]) for k in a)


def test_training_learns_the_task(task):
    model = build_model(ModelConfig(), len(task.vocab), seed=0)
    before = evaluate(model, task, task.split("val"))
    after = train(task, ModelConfig(), TrainConfig(epochs=8, lr=3e-3))
    assert evaluate(after, task, task.split("val"))["loss"] < before["loss"] / 2
    assert evaluate(after, task, task.split("val"))["eos"] == 1.0


def test_same_seed_same_weights_bit_for_bit(task):
    cfg = TrainConfig(epochs=2, seed=3)
    a = weights(train(task, SMALL, cfg))
    b = weights(train(task, SMALL, cfg))
    c = weights(train(task, SMALL, TrainConfig(epochs=2, seed=4)))
    assert same(a, b)
    assert not same(a, c)


def test_checkpoints_at_chosen_epochs_and_final_link(task, tmp_path):
    train(task, SMALL, TrainConfig(epochs=5, checkpoint_every=2), out=tmp_path)
    assert [epoch for epoch, _ in run_checkpoints(tmp_path)] == [2, 4, 5]
    model, meta = load_checkpoint(tmp_path)  # the run directory loads its final checkpoint
    assert meta["train"]["epoch"] == 5 and meta["train"]["checkpoint_every"] == 2
    assert set(meta["metrics"]) >= {"epoch", "train_loss", "val", "test"}
    assert meta["task"] == task.to_config()
    assert meta["metrics"]["test"] == pytest.approx(evaluate(model, task, task.split("test")))


def test_a_killed_run_resumes_to_the_same_weights(task, tmp_path, monkeypatch):
    cfg = TrainConfig(epochs=4)
    uninterrupted = weights(train(task, SMALL, cfg, out=tmp_path / "a"))

    real_save_file, calls = checkpoint_module.save_file, []

    def dies_during_epoch_3(tensors, path, **kwargs):
        calls.append(path)
        if len(calls) == 5:  # epochs 1 and 2 write weights and optimizer; 3 dies mid-write
            raise KeyboardInterrupt
        real_save_file(tensors, path, **kwargs)

    monkeypatch.setattr(checkpoint_module, "save_file", dies_during_epoch_3)
    with pytest.raises(KeyboardInterrupt):
        train(task, SMALL, cfg, out=tmp_path / "b")
    monkeypatch.undo()
    assert [e for e, _ in run_checkpoints(tmp_path / "b")] == [1, 2]
    assert sorted(p.name for p in (tmp_path / "b").iterdir()) == ["epoch_0001", "epoch_0002"]

    resumed = weights(train(task, SMALL, cfg, out=tmp_path / "b", resume=True))
    assert same(resumed, uninterrupted)


def test_resume_extends_a_constant_schedule_and_refuses_other_settings(task, tmp_path):
    constant = TrainConfig(epochs=2, lr_schedule="constant")
    train(task, SMALL, constant, out=tmp_path)
    three = replace(constant, epochs=3)
    longer = weights(train(task, SMALL, three, out=tmp_path, resume=True))
    assert same(longer, weights(train(task, SMALL, three)))
    with pytest.raises(HeadcoopError, match=r"settings differ in lr$"):
        train(task, SMALL, replace(three, lr=0.5), out=tmp_path, resume=True)
    with pytest.raises(HeadcoopError, match="settings differ in epochs, lr_schedule"):
        train(task, SMALL, TrainConfig(epochs=4), out=tmp_path, resume=True)
    with pytest.raises(HeadcoopError, match="model"):
        train(task, ModelConfig(), three, out=tmp_path, resume=True)
    for later in ({"optimizer": "sgd"}, {"init_scale": 2.0}):  # settings added after 0.x
        with pytest.raises(HeadcoopError, match=rf"settings differ in {next(iter(later))}$"):
            train(task, SMALL, replace(three, **later), out=tmp_path, resume=True)


def test_cosine_schedule_decays_to_zero():
    cfg = TrainConfig(lr=0.01)
    assert cfg.lr_at(0.0) == 0.01 and cfg.lr_at(0.5) == pytest.approx(0.005)
    assert cfg.lr_at(1.0) == pytest.approx(0.0, abs=1e-12)
    assert TrainConfig(lr=0.01, lr_schedule="constant").lr_at(0.7) == 0.01


def test_stacked_models_train_like_a_model_alone(task):
    """Every model of a stack ends where it ends when trained alone under the same settings."""
    cfg = TrainConfig(epochs=2, dropout=0.0)
    alone = [build_model(SMALL, 8, seed) for seed in (0, 1)]
    for model in alone:
        train_models(task, [model], cfg)
    stacked = [build_model(SMALL, 8, seed) for seed in (0, 1)]
    train_models(task, stacked, cfg)
    for one, beside in zip(alone, stacked, strict=True):
        for name, value in parameters(one).items():
            if name != "blocks.0.attn.b_K":  # zero true gradient: Adam steps on rounding noise
                assert (parameters(beside)[name] - value).abs().max() < 1e-5, name
    assert not torch.allclose(
        parameters(stacked[0])["blocks.0.attn.W_Q"], parameters(stacked[1])["blocks.0.attn.W_Q"]
    )


def short_task() -> Count01:
    spec = SplitSpec(64, n01=(0, 6), n2=(0, 6))
    return Count01(splits={"train": spec, "val": spec, "test": spec})


def test_training_on_full_sequences_matches_training_on_bags():
    cfg = TrainConfig(epochs=3, dropout=0.0, batch_size=16)
    on_bags, on_sequences = build_model(SMALL, 8, seed=0), build_model(SMALL, 8, seed=0)
    train_models(short_task(), [on_bags], cfg)
    train_models(short_task(), [on_sequences], cfg, mode="full")
    for name, value in parameters(on_bags).items():
        # b_K shifts every key score of a query equally, so its true gradient is zero and Adam
        # turns rounding noise into steps; it cannot change any output.
        if name != "blocks.0.attn.b_K":
            assert torch.allclose(parameters(on_sequences)[name], value, atol=1e-4), name


@pytest.mark.parametrize("layernorm", [True, False])
def test_a_gradient_step_of_a_stack_equals_one_on_full_sequences(layernorm):
    """One plain gradient step (SGD's first, with no decay) on the whole split moves each
    stacked model, padding and all, by the gradient that autograd takes through its own
    forward on full sequences: the stack's written-out gradients are exact, scale included."""
    cfg = TrainConfig(
        epochs=1, batch_size=64, dropout=0.0, optimizer="sgd", lr=1.0, weight_decay=0.0,
        lr_schedule="constant",
    )  # fmt: skip
    shapes = [replace(SMALL, layernorm=layernorm), ModelConfig(n_heads=3, layernorm=layernorm)]
    stacked = [build_model(shape, 8, seed) for seed, shape in enumerate(shapes)]
    start = [{k: v.clone() for k, v in parameters(m).items()} for m in stacked]
    train_models(short_task(), stacked, cfg)
    for shape, seed, before, after in zip(shapes, (0, 1), start, stacked, strict=True):
        alone = build_model(shape, 8, seed)
        train_models(short_task(), [alone], cfg, mode="full")
        for name, value in parameters(after).items():
            step, expected = value - before[name], parameters(alone)[name] - before[name]
            scale = expected.abs().max().clamp(min=1e-3)
            assert (step - expected).abs().max() / scale < 1e-3, name


def test_denormals_are_flushed_only_inside_the_training_steps():
    denormal = torch.tensor([1e-40])
    with _denormals_flushed():
        assert (denormal * 1).item() == 0.0
    assert (denormal * 1).item() != 0.0  # restored after


def test_models_without_bags_train_on_full_sequences():
    task = short_task()
    cfg = ModelConfig(d_model=8, n_heads=2, d_head=2, positional=True, n_ctx=32)
    start = build_model(cfg, 8, seed=0).pos_embed.W_pos.clone()
    model = train(task, cfg, TrainConfig(epochs=2, batch_size=16))
    assert not torch.equal(model.pos_embed.W_pos, start)
    with pytest.raises(HeadcoopError, match="side by side"):
        train_models(task, [build_model(cfg, 8, 0), build_model(cfg, 8, 1)], TrainConfig())


@pytest.mark.parametrize(
    ("field", "value"),
    [("epochs", 0), ("batch_size", 0), ("lr", 0.0), ("dropout", 1.0), ("lr_schedule", "step")],
)
def test_bad_train_settings_are_rejected_by_name(field, value):
    with pytest.raises(HeadcoopError, match=field):
        TrainConfig(**{field: value})


@pytest.mark.slow
def test_default_settings_reach_near_perfect_test_accuracy():
    model = train(Count01(), ModelConfig(), TrainConfig())
    assert evaluate(model, Count01(), Count01().split("test"))["answer"] >= 0.99
