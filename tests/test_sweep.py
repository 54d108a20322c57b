"""Sweeps: stacked training that resumes, cached results, and measurements that agree with
the HookedTransformer path."""

import json
import subprocess
import sys

import pytest
import torch

import headcoop.training.sweep as sweep
from headcoop.compat import parameters
from headcoop.config import ModelConfig, TrainConfig
from headcoop.engine.cache import collect
from headcoop.engine.run import evaluate
from headcoop.errors import HeadcoopError
from headcoop.heads.set_scorer import SetScorer
from headcoop.loading.checkpoint import load_stack, save_stack
from headcoop.metrics.single_heads import measure_models
from headcoop.model import build_model
from headcoop.training.sweep import Experiment, load_results, run_sweep, train_stack

EXPERIMENTS = [
    Experiment(ModelConfig(d_model=8, n_heads=2), 0),
    Experiment(ModelConfig(d_model=4, n_heads=3), 1),
]


def test_an_interrupted_stack_resumes_to_the_same_weights(task, tmp_path, monkeypatch):
    cfg = TrainConfig(epochs=3)
    whole = train_stack(task, EXPERIMENTS, cfg, tmp_path / "whole.safetensors")

    real_save = sweep.save_stack

    def save_then_stop(path, states, meta, optimizer):
        real_save(path, states, meta, optimizer)
        if meta["epoch"] == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(sweep, "save_stack", save_then_stop)
    with pytest.raises(KeyboardInterrupt):
        train_stack(task, EXPERIMENTS, cfg, tmp_path / "cut.safetensors", save_every=1)
    monkeypatch.setattr(sweep, "save_stack", real_save)
    resumed = train_stack(task, EXPERIMENTS, cfg, tmp_path / "cut.safetensors", save_every=1)
    for a, b in zip(whole, resumed, strict=True):
        for (name, p), q in zip(parameters(a).items(), parameters(b).values(), strict=True):
            assert torch.equal(p, q), name


def test_a_stack_file_reloads_as_the_trained_models(task, tmp_path):
    models = train_stack(task, EXPERIMENTS, TrainConfig(epochs=1), tmp_path / "s.safetensors")
    reloaded = sweep.load_stack_models(tmp_path / "s.safetensors")
    assert [m.cfg.n_heads for m in reloaded] == [2, 3]
    for a, b in zip(models, reloaded, strict=True):
        assert evaluate(a, task, task.split("test")) == evaluate(b, task, task.split("test"))


def test_a_corrupt_stack_file_is_named(tmp_path):
    path = tmp_path / "s.safetensors"
    path.write_bytes(b"not a safetensors file")
    with pytest.raises(HeadcoopError, match=r"s\.safetensors is corrupt"):
        load_stack(path)


def test_stack_files_round_trip_optimizer_state(tmp_path):
    model = build_model(ModelConfig(n_heads=2), 8, 0)
    optimizer = torch.optim.AdamW(model.parameters())
    model(torch.tensor([[0, 1, 4]])).sum().backward()
    optimizer.step()
    save_stack(
        tmp_path / "s.safetensors", [parameters(model)], {"epoch": 1}, optimizer.state_dict()
    )
    states, meta, state = load_stack(tmp_path / "s.safetensors")
    assert meta == {"epoch": 1} and torch.equal(states[0]["embed.W_E"], model.embed.W_E)
    torch.optim.AdamW(model.parameters()).load_state_dict(state)  # loads without complaint


def test_measured_s_acc_matches_the_hooked_transformer_path(trained, task):
    other = build_model(ModelConfig(d_model=8, n_heads=3), len(task.vocab), 5)
    results = measure_models(task, [trained, other])
    for model, result in zip([trained, other], results, strict=True):
        train, test = (
            collect(model, task, task.split("train")),
            collect(model, task, task.split("test")),
        )
        expected = SetScorer(task, train, test, None).s_acc(
            torch.eye(model.cfg.n_heads, dtype=torch.bool)
        )
        assert torch.allclose(torch.tensor(result["s_acc"]), expected, atol=2 / len(test))
        assert result["test_accuracy"] == pytest.approx(
            evaluate(model, task, task.split("test"))["answer"]
        )


def test_a_sweep_caches_results_by_configuration(task, tmp_path, monkeypatch):
    cfg = TrainConfig(epochs=1)
    first = run_sweep(task, [EXPERIMENTS], cfg, tmp_path)
    assert [r["n_heads"] for r in first] == [2, 3] and all(
        len(r["s_acc"]) == r["n_heads"] for r in first
    )

    def no_training(*args, **kwargs):
        raise AssertionError("a cached experiment was trained again")

    monkeypatch.setattr(sweep, "train_stack", no_training)
    assert run_sweep(task, [EXPERIMENTS[::-1]], cfg, tmp_path) == first[::-1]
    with pytest.raises(AssertionError, match="trained again"):  # another setting is not cached
        run_sweep(task, [EXPERIMENTS], TrainConfig(epochs=2), tmp_path)
    assert len(load_results(tmp_path)) == 2 == len(list((tmp_path / "results").iterdir()))


def test_a_corrupt_results_file_is_named(task, tmp_path):
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "0123abcd.json").write_text("{broken")
    with pytest.raises(HeadcoopError, match=r"results/0123abcd\.json is corrupt"):
        run_sweep(task, [EXPERIMENTS], TrainConfig(epochs=1), tmp_path)


def test_results_of_the_single_file_format_are_still_read(task, tmp_path, monkeypatch):
    cfg = TrainConfig(epochs=1)
    first = run_sweep(task, [EXPERIMENTS], cfg, tmp_path / "new")
    legacy = {f.stem: json.loads(f.read_text()) for f in (tmp_path / "new/results").iterdir()}
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "results.json").write_text(json.dumps(legacy))
    monkeypatch.setattr(sweep, "train_stack", None)  # nothing may be trained
    assert run_sweep(task, [EXPERIMENTS], cfg, tmp_path / "old") == first


WORKER = """
import json, sys
import headcoop.training.sweep as sweep
from headcoop.config import ModelConfig, TrainConfig
from headcoop.tasks import Count01

trained = []
real = sweep.train_stack
sweep.train_stack = lambda task, experiments, *a, **k: trained.append(len(experiments)) or real(
    task, experiments, *a, **k
)
spec = {"size": 60, "n01": (0, 8), "n2": (0, 8)}
task = Count01(splits={split: spec for split in ("train", "val", "test")})
shapes = [ModelConfig(d_model=4, n_heads=h) for h in (1, 2)]
stacks = [[sweep.Experiment(shape, seed)] for shape in shapes for seed in range(int(sys.argv[3]))]
executor = sys.argv[2] or None
results = sweep.run_sweep(task, stacks, TrainConfig(epochs=1), sys.argv[1], executor=executor)
print(json.dumps({"trained": trained, "results": results}))
"""


def run_workers(out, executors, seeds=3):
    """Start one worker process per executor on the sweep in ``out`` (two model shapes times
    ``seeds`` seeds, a stack each), all at once."""
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, str(out), executor or "", str(seeds)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for executor in executors
    ]
    outputs = [w.communicate() for w in workers]
    for worker, (_, err) in zip(workers, outputs, strict=True):
        assert worker.returncode == 0, err[-2000:]
    return [json.loads(out.strip().splitlines()[-1]) for out, _ in outputs]


def test_two_workers_on_one_sweep_share_the_work_and_lose_nothing(tmp_path):
    first, second = run_workers(tmp_path, [None, None])
    assert first["results"] == second["results"] and len(first["results"]) == 6
    assert sum(first["trained"]) + sum(second["trained"]) == 6  # every stack trained once
    assert len(load_results(tmp_path)) == 6


def test_the_local_executor_gives_the_results_of_a_run_in_process(tmp_path):
    (in_process,) = run_workers(tmp_path / "inline", [None], seeds=1)
    (as_jobs,) = run_workers(tmp_path / "jobs", ["local"], seeds=1)
    assert as_jobs["results"] == in_process["results"]
    assert as_jobs["trained"] == []  # the jobs trained, not the submitting process
    jobs = [d for d in (tmp_path / "jobs" / "jobs").iterdir() if d.name.isdigit()]
    assert len(jobs) == 2  # one job a stack


def test_settings_added_later_change_a_key_only_away_from_their_defaults(task):
    from dataclasses import asdict

    from headcoop.config import LATE_FIELDS
    from headcoop.files import config_key

    cfg, experiment = TrainConfig(epochs=3), EXPERIMENTS[0]
    before = {k: v for k, v in asdict(cfg).items() if k not in LATE_FIELDS}  # the old dict
    old_key = config_key(
        {
            "task": task.to_config(),
            "model": asdict(experiment.model),
            "seed": 0,
            "train": before,
            "order": sweep.EXAMPLE_ORDER,
        }
    )
    assert sweep.experiment_key(task, experiment, cfg) == old_key
    others = [
        sweep.experiment_key(task, experiment, TrainConfig(epochs=3, **change))
        for change in ({"optimizer": "sgd"}, {"init": "pytorch"}, {"init_scale": 2.0})
    ]
    assert len({old_key, *others}) == 4


def test_snapshots_measure_the_models_in_training(task, tmp_path):
    cfg = TrainConfig(epochs=2, lr_schedule="constant")
    results = run_sweep(task, [EXPERIMENTS], cfg, tmp_path / "two", snapshots=(1, 50))
    one_epoch = run_sweep(
        task, [EXPERIMENTS], TrainConfig(epochs=1, lr_schedule="constant"), tmp_path / "one"
    )
    for result, after_one in zip(results, one_epoch, strict=True):
        assert sorted(result["snapshots"]) == ["1", "2"]  # 50 is past the last epoch: taken at 2
        assert result["snapshots"]["1"]["s_acc"] == after_one["s_acc"]
        assert result["snapshots"]["2"]["s_acc"] == result["s_acc"]  # the trained models


def test_worker_processes_give_the_results_of_a_run_in_process(task, tmp_path):
    stacks = [[e] for e in EXPERIMENTS]
    cfg = TrainConfig(epochs=1)
    alone = run_sweep(task, stacks, cfg, tmp_path / "alone")
    pooled = run_sweep(task, stacks, cfg, tmp_path / "pooled", workers=2)
    assert len(load_results(tmp_path / "pooled")) == 2
    for one, other in zip(alone, pooled, strict=True):  # threads may reorder float sums
        assert one["test_accuracy"] == other["test_accuracy"]
        assert one["s_acc"] == pytest.approx(other["s_acc"], abs=1e-3)
        assert one["test_metrics"]["loss"] == pytest.approx(other["test_metrics"]["loss"], 1e-5)


def test_a_failing_worker_is_reported(task, tmp_path):
    bad = [[Experiment(ModelConfig(d_model=8, n_heads=2), 0)], [Experiment(ModelConfig(), 1)]]
    with pytest.raises(HeadcoopError, match="diverged"):
        run_sweep(task, bad, TrainConfig(epochs=1, lr=1e6), tmp_path, workers=2)
