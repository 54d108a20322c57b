"""Device plumbing: models, batches and stacks go where the user says; a missing GPU is one
line. The CUDA test runs where torch finds a GPU and is skipped elsewhere."""

import json

import pytest
import torch

from headcoop.cli import main
from headcoop.config import ModelConfig, TrainConfig
from headcoop.device import resolve_device
from headcoop.engine.batches import read_logits
from headcoop.engine.run import evaluate
from headcoop.engine.stack import Stack
from headcoop.errors import HeadcoopError
from headcoop.loading.checkpoint import load_checkpoint, save_checkpoint
from headcoop.model import build_model
from headcoop.tasks import Count01, SplitSpec

CUDA = torch.cuda.is_available()
SPEC = SplitSpec(300, (0, 12), (0, 12))
TASK = Count01(splits={"train": SPEC, "val": SPEC, "test": SPEC})


def test_device_names_resolve_or_fail_in_one_line():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(None).type == ("cuda" if CUDA else "cpu")
    with pytest.raises(HeadcoopError, match="unknown device 'gpu0'"):
        resolve_device("gpu0")
    if not CUDA:
        with pytest.raises(HeadcoopError, match="device 'cuda' is not available"):
            resolve_device("cuda")


@pytest.mark.skipif(CUDA, reason="this machine has a GPU")
def test_asking_for_cuda_without_one_is_one_line(tmp_path, capsys):
    assert main(["train", "--out", str(tmp_path / "r"), "--device", "cuda", "--quiet"]) == 1
    err = capsys.readouterr().err
    assert err == "headcoop train: error: device 'cuda' is not available: torch finds no CUDA GPU\n"
    assert not (tmp_path / "r").exists() or not any((tmp_path / "r").iterdir())


def test_every_command_that_runs_a_model_takes_a_device(tmp_path, capsys):
    run = tmp_path / "run"
    small = ["--epochs", "1", "--d-model", "4", "--n-heads", "2", "--quiet"]
    assert main(["train", "--out", str(run), *small, "--device", "cpu"]) == 0
    assert main(["eval", str(run), "--json", "--device", "cpu"]) == 0
    assert {"answer", "eos", "loss"} <= set(json.loads(capsys.readouterr().out.splitlines()[-1]))
    out = tmp_path / "analysis"
    assert main(["analyze", str(run), "--out", str(out), "--device", "cpu", "--quiet"]) == 0
    assert (out / "heads.csv").exists()


def test_checkpoints_do_not_store_a_device(tmp_path):
    model = build_model(ModelConfig(n_heads=2, d_model=4), 8, seed=0, device="cpu")
    save_checkpoint(tmp_path / "c", model, {"task": TASK.to_config()})
    config = json.loads((tmp_path / "c" / "config.json").read_text())
    assert "device" not in config["model"]


def test_models_batches_and_stacks_follow_the_model_to_its_device():
    """On the meta device nothing is computed, but a tensor left on the CPU is an error: the
    forward pass and the stacked engine must move every input themselves. (Bag batches of
    single models are not run here: deciding that bags are exact reads the weights.)"""
    model = build_model(ModelConfig(n_heads=2, d_model=8), 8, seed=0, device="meta")
    assert all(p.device.type == "meta" for p in model.parameters())
    sequences = TASK.sequences(TASK.split("test")[:8])
    assert read_logits(model, sequences).is_meta
    cpu = Stack.of([build_model(ModelConfig(n_heads=h, d_model=8), 8, h, "cpu") for h in (2, 3)])
    stack = Stack({k: v.to("meta") for k, v in cpu.params.items()}, cpu.eps, cpu.attn_scale)
    assert stack.device.type == "meta"
    bags = TASK.bags(TASK.split("test")[:8])
    assert stack.logits(bags, dropout=0.1, generator=torch.Generator()).is_meta
    assert stack.head_outputs(bags).is_meta


@pytest.mark.skipif(not CUDA, reason="needs a CUDA GPU")
def test_training_and_measuring_on_cuda_agree_with_the_cpu(tmp_path):
    from headcoop.heads.analyze import analyze
    from headcoop.training.trainer import train

    cfg = TrainConfig(epochs=2, dropout=0.0)
    on_cpu = train(TASK, ModelConfig(n_heads=4, d_model=8), cfg, device="cpu")
    on_gpu = train(TASK, ModelConfig(n_heads=4, d_model=8), cfg, device="cuda")
    assert next(on_gpu.parameters()).is_cuda
    cpu_metrics = evaluate(on_cpu, TASK, TASK.split("test"))
    gpu_metrics = evaluate(on_gpu, TASK, TASK.split("test"))
    assert cpu_metrics["loss"] == pytest.approx(gpu_metrics["loss"], abs=1e-3)
    save_checkpoint(tmp_path / "c", on_cpu, {"task": TASK.to_config()})
    loaded, _ = load_checkpoint(tmp_path / "c", device="cuda")
    a = analyze(on_cpu, TASK).heads_frame()
    b = analyze(loaded, TASK).heads_frame()
    assert (a["s_acc"] - b["s_acc"]).abs().max() <= 2 / len(TASK.split("test"))
