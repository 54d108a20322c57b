"""Sweeps: many models trained side by side, measured, and their results cached.

A sweep is a list of stacks; a stack is a list of `Experiment`s (a model shape and a seed)
trained together by `headcoop.training.train_models`. Models in a stack may differ in
``n_heads`` and ``d_model`` (`headcoop.engine.stack` pads them exactly), so a whole grid of shapes
costs little more than its largest member.

Every finished experiment's result is stored in ``results.json`` under a key of its full
configuration (task, model, seed, training), so a rerun skips finished work and a changed
setting is trained afresh. A stack in training saves its state every few epochs, and an
interrupted run resumes from it.
"""

import json
import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch

from headcoop.compat import Model, load_parameters
from headcoop.config import ModelConfig, TrainConfig
from headcoop.engine.bags import metrics
from headcoop.engine.stack import MODEL_CHUNK, Stack
from headcoop.errors import HeadcoopError
from headcoop.files import config_key, write_atomic
from headcoop.metrics.classes import labels
from headcoop.metrics.separation import separation_accuracy_each
from headcoop.model import build_model
from headcoop.tasks.base import Task, read_names
from headcoop.training.checkpoint import (
    epoch_dir,
    load_stack,
    mark_final,
    save_checkpoint,
    save_stack,
)
from headcoop.training.trainer import train_models

log = logging.getLogger(__name__)

RESULTS = "results.json"


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
        "train": asdict(train_cfg),
    }
    return config_key(config)


def run_sweep(
    task: Task,
    stacks: Sequence[Sequence[Experiment]],
    train_cfg: TrainConfig,
    out: str | Path,
    progress: bool = False,
) -> list[dict[str, Any]]:
    """Train and measure every experiment not yet in ``out/results.json``; return the results
    of all of them, stack by stack, in order.

    Each result holds the model shape and seed, ``test_accuracy`` (of the first scored
    prediction), ``test_metrics`` and ``s_acc``, the separation accuracy of each head.
    ``train_cfg.seed`` is replaced by each experiment's seed, so that a stack is reproducible
    whichever experiments it holds first.
    """
    out = Path(out)
    results = _load_results(out / RESULTS)
    for stack in stacks:
        missing = [e for e in stack if experiment_key(task, e, train_cfg) not in results]
        if not missing:
            continue
        stack_cfg = _stack_train_config(train_cfg, missing)
        state = out / f"stack_{experiment_key(task, missing[0], stack_cfg)}.safetensors"
        models = train_stack(task, missing, stack_cfg, state, progress=progress)
        for experiment, result in zip(missing, measure_models(task, models), strict=True):
            result.update(asdict(experiment.model), seed=experiment.seed)
            results[experiment_key(task, experiment, train_cfg)] = result
        write_atomic(out / RESULTS, json.dumps(results, indent=1) + "\n")
    return [results[experiment_key(task, e, train_cfg)] for stack in stacks for e in stack]


def train_stack(
    task: Task,
    experiments: Sequence[Experiment],
    train_cfg: TrainConfig,
    state_file: str | Path,
    save_every: int = 10,
    runs: Sequence[str | Path] | None = None,
    progress: bool = False,
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
    """
    state_file = Path(state_file)
    models = [build_model(e.model, len(task.vocab), e.seed) for e in experiments]
    meta = {
        "task": task.to_config(),
        "train": asdict(train_cfg),
        "experiments": [{**asdict(e.model), "seed": e.seed} for e in experiments],
    }
    start, optimizer_state = 0, None
    if state_file.exists():
        states, stored, optimizer_state = load_stack(state_file)
        if {k: v for k, v in stored.items() if k != "epoch"} == meta:
            for model, state in zip(models, states, strict=True):
                load_parameters(model, state)
            start = stored["epoch"]
            log.info("resuming %s at epoch %d", state_file, start)
        else:
            optimizer_state = None
    if start == train_cfg.epochs:
        return models

    def on_epoch(epoch: int, models: list, results: list, optimizer: dict) -> None:
        if epoch % save_every == 0 or epoch == train_cfg.epochs:
            save_stack(state_file, models, {**meta, "epoch": epoch}, optimizer)
        if runs is not None and train_cfg.saves(epoch):
            for run, model, result in zip(runs, models, results, strict=True):
                one = {"task": meta["task"], "train": {**meta["train"], "epoch": epoch}}
                save_checkpoint(epoch_dir(run, epoch), model, {**one, "metrics": result})

    train_models(task, models, train_cfg, start, optimizer_state, on_epoch, progress)
    if runs is not None:
        for run in runs:
            mark_final(run, epoch_dir(run, train_cfg.epochs))
    return models


def load_stack_models(state_file: str | Path) -> list[Model]:
    """The models of a stack file written by `train_stack` (or a sweep)."""
    states, meta, _ = load_stack(state_file)
    models = []
    for experiment, state in zip(meta["experiments"], states, strict=True):
        cfg = ModelConfig(**{k: v for k, v in experiment.items() if k != "seed"})
        model = build_model(cfg, state["embed.W_E"].shape[0], experiment["seed"])
        load_parameters(model, state)
        models.append(model)
    return models


@torch.no_grad()
def measure_models(task: Task, models: Sequence[Model]) -> list[dict[str, Any]]:
    """Test metrics of each model and the s-acc of each of its heads, on the stacked engine.

    Models may differ in shape, but not in ``d_head``. s-acc fits each head's output at the
    decision readout on the train split and scores it on the test split.
    """
    train, test = task.bags(task.split("train")), task.bags(task.split("test"))
    results, train_x, test_x = [], [], []
    for start in range(0, len(models), MODEL_CHUNK):
        chunk = list(models[start : start + MODEL_CHUNK])
        stack = Stack.of(chunk)
        results += [metrics(task, logits, test.targets) for logits in stack.logits(test)]
        for split, into in ((train, train_x), (test, test_x)):
            z = stack.head_outputs(split)[:, :, task.decision]  # [model example head d_head]
            into += [z[i, :, : m.cfg.n_heads].transpose(0, 1) for i, m in enumerate(chunk)]
    s_acc = separation_accuracy_each(
        torch.cat(train_x),
        labels(task, train.targets),
        torch.cat(test_x),
        labels(task, test.targets),
    )
    decision = read_names(task)[task.decision]
    out, head = [], 0
    for model, result in zip(models, results, strict=True):
        n = model.cfg.n_heads
        out.append(
            {
                "test_accuracy": result[decision],
                "test_metrics": result,
                "s_acc": s_acc[head : head + n].tolist(),
            }
        )
        head += n
    return out


def _stack_train_config(train_cfg: TrainConfig, experiments: Sequence[Experiment]) -> TrainConfig:
    """The stack's training settings: the orders and dropout are seeded by its first seed."""
    return replace(train_cfg, seed=experiments[0].seed)


def _load_results(path: Path) -> dict[str, Any]:
    if not path.exists():
        return {}
    try:
        results = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise HeadcoopError(f"{path} is corrupt: {exc}") from None
    if not isinstance(results, dict):
        raise HeadcoopError(f"{path} is corrupt: expected a JSON object")
    return results
