"""Sweeps: many models trained side by side, measured, and their results cached.

A sweep is a list of stacks; a stack is a list of `Experiment`s (a model shape and a seed)
trained together by `headcoop.training.train_models`. Models in a stack may differ in
``n_heads`` and ``d_model`` (`headcoop.engine.stack` pads them exactly), so a whole grid of shapes
costs little more than its largest member.

Every finished experiment's result is a file ``results/<key>.json``, the key a hash of its full
configuration (task, model, seed, training), so a rerun skips finished work, a changed setting
is trained afresh, and workers running at once never overwrite each other. A stack in training
saves its state every few epochs, and an interrupted run resumes from it. Stacks run in this
process, in a pool of worker processes (`headcoop.training.workers`) or as submitit jobs on
this machine or a Slurm cluster (`headcoop.training.jobs`; `run_sweep`'s ``executor``).
"""

import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    pass

from headcoop.compat import Model, load_parameters
from headcoop.config import ModelConfig, TrainConfig
from headcoop.device import Device
from headcoop.errors import HeadcoopError
from headcoop.files import config_key, exclusive, write_atomic
from headcoop.loading.checkpoint import (
    epoch_dir,
    load_stack,
    mark_final,
    save_checkpoint,
    save_stack,
)
from headcoop.metrics.single_heads import measure_models
from headcoop.model import build_model
from headcoop.tasks.base import Task
from headcoop.training.jobs import run_jobs
from headcoop.training.trainer import EpochEnd, train_models
from headcoop.training.workers import run_workers

log = logging.getLogger(__name__)

RESULTS = "results"
"""The directory of a sweep's results: one JSON file per experiment, named by its key."""
LEGACY_RESULTS = "results.json"
EXAMPLE_ORDER = "one per stack"
"""How the models of a stack read the training examples (`headcoop.training.train_models`).
Part of every result's key: results trained when each model had an order of its own (before
this version) are not reused."""


@dataclass(frozen=True)
class Experiment:
    """One model to train: its shape and the seed of its initial weights."""

    model: ModelConfig
    seed: int


def experiment_key(task: Task, experiment: Experiment, train_cfg: TrainConfig) -> str:
    """A short hash of everything that determines an experiment's result."""
    config = {
        "task": task.to_config(),
        "model": asdict(experiment.model),
        "seed": experiment.seed,
        "train": train_cfg.key_dict(),
        "order": EXAMPLE_ORDER,
    }
    return config_key(config)


Measure = Callable[[Task, Sequence[Model]], list[dict[str, Any]]]
"""What a sweep records of its trained models: one JSON-able dict per model."""


def run_sweep(
    task: Task,
    stacks: Sequence[Sequence[Experiment]],
    train_cfg: TrainConfig,
    out: str | Path,
    progress: bool = False,
    device: Device = None,
    executor: str | None = None,
    measure: Measure | None = None,
    snapshots: Sequence[int] = (),
    workers: int = 1,
) -> list[dict[str, Any]]:
    """Train and measure every experiment without a result in ``out``; return the results of
    all of them, stack by stack, in order.

    Each result holds the model shape and seed and what ``measure`` records (by default
    `measure_models`: ``test_accuracy`` of the decision readout, ``test_metrics`` and ``s_acc``,
    the separation accuracy of each head). ``train_cfg.seed`` is replaced by each experiment's
    seed, so that a stack is reproducible whichever experiments it holds first. One sweep
    directory holds the results of one ``measure``.

    Args:
        executor: None runs the stacks on this machine (see ``workers``); 'local' or 'slurm'
            runs each stack as a submitit job (`headcoop.training.jobs.run_jobs`) and waits
            for them all.
        workers: without an executor, how many processes train stacks at once, each on its
            share of the cores (`headcoop.training.workers.run_workers`); 1 trains them in
            this process, one after another. Small models are bound by the cost of each
            operation, not by arithmetic, so two single-threaded processes on two cores
            train 1.2-1.3x as fast as one process with two threads (``scripts/bench_sweep.py``).
        device: where the models train (see `headcoop.device`); in jobs, resolved on the node.
        snapshots: epochs at which `measure_models` also measures the models in training (one
            past the last epoch is taken at the last); the result's ``snapshots`` maps each
            epoch measured to that measurement.

    Several workers may run one sweep at once (two ``headcoop figures`` on one cache, or the
    jobs of an executor): each stack is trained under a lock by whichever worker takes it
    first, the others move on and later wait for it, and each result is a file of its own.
    """
    out = Path(out)
    pending = pending_stacks(task, stacks, train_cfg, out)
    options = {"device": device, "measure": measure, "snapshots": snapshots}
    if executor is not None:
        calls = [(task, stack, train_cfg, out) for stack in pending]
        run_jobs(run_stack, executor, calls, options, out)
    elif workers > 1 and len(pending) > 1:
        calls = by_cost([(task, stack, train_cfg, out) for stack in pending])
        run_workers(run_stack, min(workers, len(pending)), calls, options, progress)
    else:
        busy = [
            s
            for s in pending
            if not run_stack(task, s, train_cfg, out, progress=progress, **options)
        ]
        for stack in busy:  # taken by another worker: wait for it, then fill any gap
            run_stack(task, stack, train_cfg, out, progress=progress, wait=True, **options)
    results = load_results(out)
    return [results[experiment_key(task, e, train_cfg)] for stack in stacks for e in stack]


def run_stack(
    task: Task,
    stack: Sequence[Experiment],
    train_cfg: TrainConfig,
    out: str | Path,
    device: Device = None,
    progress: bool = False,
    wait: bool = False,
    measure: Measure | None = None,
    snapshots: Sequence[int] = (),
) -> bool:
    """Train and measure the experiments of ``stack`` that have no result in ``out`` yet, under
    the stack's lock, and store each result. Returns False, having done nothing, when another
    worker holds the lock and ``wait`` is False. ``measure`` and ``snapshots`` are
    `run_sweep`'s."""
    out = Path(out)
    with exclusive(
        out / f"stack_{config_key([task.to_config(), stack, train_cfg])}.lock", wait
    ) as held:
        if not held:
            return False
        missing = _missing(task, stack, train_cfg, load_results(out))  # others may have added some
        if not missing:
            return True
        stack_cfg = _stack_train_config(train_cfg, missing)
        state = out / f"stack_{experiment_key(task, missing[0], stack_cfg)}.safetensors"
        models = train_stack(
            task, missing, stack_cfg, state, progress=progress, device=device, snapshots=snapshots
        )
        taken = _read_json(snapshot_file(state)) if snapshot_file(state).exists() else {}
        results = (measure or measure_models)(task, models)
        for i, (experiment, result) in enumerate(zip(missing, results, strict=True)):
            result.update(asdict(experiment.model), seed=experiment.seed)
            if snapshots:
                result["snapshots"] = {epoch: taken[epoch][i] for epoch in taken}
            key = experiment_key(task, experiment, train_cfg)
            write_atomic(out / RESULTS / f"{key}.json", json.dumps(result) + "\n")
    return True


def by_cost(calls: Sequence[tuple]) -> list[tuple]:
    """`run_stack`'s argument tuples (task, stack, training, out), the costliest stack first
    (`_stack_cost`), so that the last to finish are small."""
    return sorted(calls, key=lambda args: -_stack_cost(args[1], args[2]))


def _stack_cost(stack: Sequence[Experiment], train_cfg: TrainConfig) -> int:
    """A rough measure of a stack's training time, so that the costliest start first: epochs x
    (a step's fixed cost, about that of 400 units, plus each model's work per example, about
    d_model + n_heads x d_head + 3 units, at the stack's padded sizes). Fitted to the CPU
    kernel's step times on Table 1's eight stacks, which it predicts to within 15%."""
    d_model = max(e.model.d_model for e in stack)
    heads = max(e.model.n_heads for e in stack) * max(e.model.d_head for e in stack)
    return train_cfg.epochs * (400 + len(stack) * (3 + d_model + heads))


def load_results(out: str | Path) -> dict[str, Any]:
    """Every stored result of a sweep directory, by experiment key (files in ``results/``, and
    the single ``results.json`` that earlier versions wrote)."""
    out = Path(out)
    results = _read_json(out / LEGACY_RESULTS) if (out / LEGACY_RESULTS).exists() else {}
    for file in sorted((out / RESULTS).glob("*.json")):
        results[file.stem] = _read_json(file)
    return results


def pending_stacks(
    task: Task, stacks: Sequence[Sequence[Experiment]], train_cfg: TrainConfig, out: str | Path
) -> list[list[Experiment]]:
    """The stacks with an experiment that has no result in ``out`` yet."""
    done = load_results(out)
    return [list(stack) for stack in stacks if _missing(task, stack, train_cfg, done)]


def _missing(
    task: Task, stack: Sequence[Experiment], train_cfg: TrainConfig, done: dict[str, Any]
) -> list[Experiment]:
    """The experiments of ``stack`` without a result among ``done``."""
    return [e for e in stack if experiment_key(task, e, train_cfg) not in done]


def train_stack(
    task: Task,
    experiments: Sequence[Experiment],
    train_cfg: TrainConfig,
    state_file: str | Path,
    save_every: int = 10,
    runs: Sequence[str | Path] | None = None,
    progress: bool = False,
    device: Device = None,
    snapshots: Sequence[int] = (),
) -> list[Model]:
    """Train the experiments' models side by side and return them.

    Args:
        task: the task to train on.
        experiments: the models; each starts from `build_model` with its own seed.
        train_cfg: optimisation settings; its seed sets the example orders and dropout.
        state_file: where the stack's state is saved every ``save_every`` epochs and at the
            end; an existing file for the same experiments is resumed.
        runs: optional run directories, one per model, that receive a checkpoint at every
            epoch ``train_cfg.saves`` (for training-dynamics analyses) and a ``final`` link.
        device: where to train (see `headcoop.device`).
        snapshots: epochs at which the models are measured (`measure_models`) in training (one
            past the last epoch is taken at the last); the measurements go to `snapshot_file`
            (by epoch, then model) before the state that follows them is saved, so that a
            resumed run never misses one.
    """
    state_file = Path(state_file)
    meta = {
        "task": task.to_config(),
        "train": train_cfg.key_dict(),
        "experiments": [{**asdict(e.model), "seed": e.seed} for e in experiments],
    }
    models, start, optimizer_state = _resume_stack(
        task, experiments, train_cfg, state_file, meta, device
    )
    if start == train_cfg.epochs:
        return models

    def on_epoch(end: EpochEnd) -> None:
        epoch = end.epoch
        if epoch in snapshots or (epoch == train_cfg.epochs and max(snapshots, default=0) > epoch):
            path = snapshot_file(state_file)
            taken = _read_json(path) if path.exists() else {}
            taken[str(epoch)] = measure_models(task, end.models())
            write_atomic(path, json.dumps(taken) + "\n")
        if epoch % save_every == 0 or epoch == train_cfg.epochs:
            save_stack(state_file, end.states(), {**meta, "epoch": epoch}, end.optimizer_state())
        if runs is not None and train_cfg.saves(epoch):
            for run, model, result in zip(runs, end.models(), end.results, strict=True):
                one = {"task": meta["task"], "train": {**meta["train"], "epoch": epoch}}
                save_checkpoint(epoch_dir(run, epoch), model, {**one, "metrics": result})

    train_models(task, models, train_cfg, start, optimizer_state, on_epoch, progress)
    if runs is not None:
        for run in runs:
            mark_final(run, epoch_dir(run, train_cfg.epochs))
    return models


def _resume_stack(
    task: Task,
    experiments: Sequence[Experiment],
    train_cfg: TrainConfig,
    state_file: Path,
    meta: dict[str, Any],
    device: Device,
) -> tuple[list[Model], int, dict[str, Any] | None]:
    """The stack's models, the epoch they have reached and the optimizer state: from
    ``state_file`` where it holds these very experiments (``meta``), else fresh at epoch 0."""
    models = [
        build_model(e.model, len(task.vocab), e.seed, device, train_cfg.init, train_cfg.init_scale)
        for e in experiments
    ]
    if not state_file.exists():
        return models, 0, None
    states, stored, optimizer_state = load_stack(state_file)
    if {k: v for k, v in stored.items() if k != "epoch"} != meta:
        return models, 0, None
    for model, state in zip(models, states, strict=True):
        load_parameters(model, state)
    log.info("resuming %s at epoch %d", state_file, stored["epoch"])
    return models, stored["epoch"], optimizer_state


def snapshot_file(state_file: str | Path) -> Path:
    """Where `train_stack` keeps the snapshots of the stack whose state is ``state_file``."""
    return Path(state_file).with_suffix(".snapshots.json")


def load_stack_models(state_file: str | Path, device: Device = None) -> list[Model]:
    """The models of a stack file written by `train_stack` (or a sweep)."""
    states, meta, _ = load_stack(state_file)
    models = []
    for experiment, state in zip(meta["experiments"], states, strict=True):
        cfg = ModelConfig(**{k: v for k, v in experiment.items() if k != "seed"})
        model = build_model(cfg, state["embed.W_E"].shape[0], experiment["seed"], device)
        load_parameters(model, state)
        models.append(model)
    return models


@torch.no_grad()
def _stack_train_config(train_cfg: TrainConfig, experiments: Sequence[Experiment]) -> TrainConfig:
    """The stack's training settings: the orders and dropout are seeded by its first seed."""
    return replace(train_cfg, seed=experiments[0].seed)


def _read_json(path: Path) -> dict[str, Any]:
    try:
        value = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise HeadcoopError(f"{path} is corrupt: {exc}") from None
    if not isinstance(value, dict):
        raise HeadcoopError(f"{path} is corrupt: expected a JSON object")
    return value
