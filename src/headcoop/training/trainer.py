"""Training: next-token NLL of the scored tokens, on bags wherever they are exact.

Every source of randomness is a seed: the weights come from ``seed``, and each epoch's example
order and dropout masks from a generator seeded by ``(seed, epoch)``. So the same seed gives the
same weights bit for bit on CPU, and a run resumed from a checkpoint ends exactly where an
uninterrupted run ends.
"""

import logging
import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from jaxtyping import Float
from transformer_lens.hook_points import HookPoint

from headcoop.compat import Model, parameters
from headcoop.config import SGD_MOMENTUM, ModelConfig, TrainConfig
from headcoop.device import Device, device_of
from headcoop.engine.bags import use_bags
from headcoop.engine.batches import Hook, check_lengths, iter_batches, read_logits
from headcoop.engine.loss import accuracies_each, batch_loss
from headcoop.engine.run import choose_engine, evaluate
from headcoop.engine.stack import PairCounts, Stack, drop_out
from headcoop.errors import HeadcoopError
from headcoop.files import owned, writable_dir
from headcoop.loading.checkpoint import (
    check_memory,
    clear_run,
    epoch_dir,
    load_checkpoint,
    load_optimizer_state,
    mark_final,
    run_checkpoints,
    save_checkpoint,
)
from headcoop.model import build_model
from headcoop.progress import progress_bar
from headcoop.tasks.base import Task, read_names

log = logging.getLogger(__name__)


# Settings that may change when a run is resumed: they do not alter the epochs already run.
# (The number of epochs sets a cosine schedule's pace, so only a constant one can be extended.)
_RESUMABLE_CHANGES = {"checkpoint_every"}


def attn_out_dropout(rate: float, generator: torch.Generator) -> Hook:
    """A forward hook (name filter, function) applying dropout to every ``hook_attn_out``.

    HookedTransformer has no dropout; the paper's model drops the attention output after the
    output projection, which this reproduces during training only.
    """

    def drop(
        attn_out: Float[torch.Tensor, "batch pos d_model"], hook: HookPoint
    ) -> Float[torch.Tensor, "batch pos d_model"]:
        return drop_out(attn_out, rate, generator)

    return (lambda name: name.endswith("hook_attn_out")), drop


class EpochEnd:
    """What an `EpochCallback` sees at the end of an epoch of `train_models`.

    Attributes:
        epoch: the epoch just finished (from 1).
        train_loss: the epoch's mean training loss (over steps, and over models).

    Validating a stack of hundreds of models, or writing their weights back from the stacked
    engine's tensors, takes longer than an epoch of training them: both are done when first
    asked for, only in the epochs that use them.
    """

    def __init__(
        self,
        epoch: int,
        train_loss: float,
        step: "_StackedStep | _ForwardStep",
        optimizer: torch.optim.Optimizer,
    ) -> None:
        self.epoch, self.train_loss = epoch, train_loss
        self._step, self._optimizer = step, optimizer
        self._results: list[dict[str, Any]] | None = None
        self._written = False

    @property
    def results(self) -> list[dict[str, Any]]:
        """Each model's metrics: ``epoch``, ``train_loss`` and ``val`` (its validation
        metrics, `headcoop.engine.loss.accuracies`).

        Raises:
            HeadcoopError: a validation loss is not finite (the last step broke the weights).
        """
        if self._results is None:
            self._results = [
                {"epoch": self.epoch, "train_loss": self.train_loss, "val": val}
                for val in self._step.validate()
            ]
            for result in self._results:
                _check_finite(result["val"]["loss"], self.epoch)
        return self._results

    def models(self) -> list[Model]:
        """The models, holding this epoch's weights."""
        if not self._written:
            self._step.write_back()
            self._written = True
        return self._step.models

    def states(self) -> list[dict[str, torch.Tensor]]:
        """Each model's parameters under TransformerLens 3.x names (views: copy to keep)."""
        return self._step.states()

    def optimizer_state(self) -> dict[str, Any]:
        return self._optimizer.state_dict()


EpochCallback = Callable[[EpochEnd], None]
"""Called after each epoch of `train_models`."""


def train(
    task: Task,
    model_cfg: ModelConfig = ModelConfig(),
    train_cfg: TrainConfig = TrainConfig(),
    out: str | Path | None = None,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = False,
    device: Device = None,
) -> Model:
    """Train one model on ``task`` and return it.

    Args:
        task: the task, whose 'train' split is fitted and 'val' split reported.
        model_cfg: shape of the model.
        train_cfg: optimisation settings; ``train_cfg.seed`` seeds everything.
        out: run directory for ``epoch_NNNN`` checkpoints and the ``final`` link; None saves
            nothing.
        resume: continue from the latest checkpoint in ``out`` (its settings must match).
        overwrite: replace a training run already in ``out`` (without this or ``resume``, an
            existing run is refused, so that two runs never mix in one directory).
        progress: show a progress bar with the loss and validation accuracy.
        device: where to train (see `headcoop.device`); the run is reproducible per device.

    Raises:
        HeadcoopError: ``out`` cannot be written, already holds a run or is being written by
            another process, the settings differ from the run being resumed, or the loss stops
            being finite (training diverged; the checkpoints of the epochs before stay).
    """
    if out is None:
        model, start_epoch, opt_state = _start(task, model_cfg, train_cfg, None, False, device)
        train_models(task, [model], train_cfg, start_epoch, opt_state, None, progress)
        return model
    writable_dir(out, "run directory")
    with owned(out, "run directory"):  # two runs never write into one directory
        _prepare_run_dir(Path(out), resume, overwrite)
        model, start_epoch, opt_state = _start(task, model_cfg, train_cfg, out, resume, device)

        def save(end: EpochEnd) -> None:
            if train_cfg.saves(end.epoch):
                _save_epoch(task, train_cfg, end, Path(out))

        train_models(task, [model], train_cfg, start_epoch, opt_state, save, progress)
        mark_final(out, epoch_dir(out, train_cfg.epochs))
    return model


def _start(
    task: Task,
    model_cfg: ModelConfig,
    train_cfg: TrainConfig,
    out: str | Path | None,
    resume: bool,
    device: Device,
) -> tuple[Model, int, dict[str, Any] | None]:
    """The model to train, the epoch it has reached and its optimizer state: the latest
    checkpoint of ``out`` when resuming one, else a fresh model at epoch 0."""
    if resume and out is not None and run_checkpoints(out):
        epoch, path = run_checkpoints(out)[-1]
        model, meta = load_checkpoint(path, device)
        _check_resumable(meta, task, model_cfg, train_cfg, path)
        return model, epoch, load_optimizer_state(path)
    check_memory(model_cfg.hooked_kwargs(len(task.vocab)), "train")
    model = build_model(
        model_cfg, len(task.vocab), train_cfg.seed, device, train_cfg.init, train_cfg.init_scale
    )
    return model, 0, None


def _save_epoch(task: Task, train_cfg: TrainConfig, end: EpochEnd, out: Path) -> None:
    """Write the checkpoint of ``end``'s epoch (with the test metrics after the last)."""
    meta = {
        "task": task.to_config(),
        "train": {**train_cfg.key_dict(), "epoch": end.epoch},
        "metrics": end.results[0],
    }
    (trained,) = end.models()
    if end.epoch == train_cfg.epochs:
        meta["metrics"]["test"] = evaluate(trained, task, task.split("test"))
    save_checkpoint(epoch_dir(out, end.epoch), trained, meta, end.optimizer_state())


@contextmanager
def _denormals_flushed() -> Iterator[None]:
    """Flush denormal floats (below 2^-126) to zero on the CPU, then restore the default.
    Training steps run under it, nothing else: it holds for Python's own floats too (a stored
    setting of 1e-320 would read 0).

    As models grow confident, the probabilities their softmax gives the wrong tokens sink into
    that range (1.6% of them after 15 epochs of a Table 1 stack), and with them the gradients
    computed from them; every CPU operation on a denormal is many times slower, which made the
    later epochs of Table 1's stacks up to 1.7x slower than the first. The values lost are
    below float32's precision of anything they are added to. (torch sets this for the calling
    thread: single-threaded sweep workers get all of it.)
    """
    flushing = torch.set_flush_denormal(True)
    try:
        yield
    finally:
        if flushing:
            torch.set_flush_denormal(False)


def train_models(
    task: Task,
    models: list[Model],
    cfg: TrainConfig,
    start_epoch: int = 0,
    optimizer_state: dict[str, Any] | None = None,
    on_epoch: EpochCallback | None = None,
    progress: bool = False,
    mode: str = "auto",
) -> list[dict[str, Any]]:
    """Train same-shaped models side by side, in place; return each one's last metrics.

    Where the stacked engine covers them (`headcoop.engine.run.choose_engine`), the models run
    as one stack (`headcoop.engine.stack`) and read the examples in one order, drawn from the
    epoch's generator: each model ends where it ends when trained alone under ``cfg``.
    Otherwise a single model runs through its TransformerLens forward: on bags where they are
    exact (an MLP after one position-free attention layer), on full sequences elsewhere.
    ``cfg.seed`` seeds the example order and the dropout masks (the initial weights are the
    models' own). ``mode='full'`` forces full sequences, for comparison: without dropout the
    weights match the bag path's up to float rounding.
    """
    stacked = choose_engine(models, task, mode) == "stack"
    if not stacked and len(models) != 1:
        raise HeadcoopError("only models the stacked engine covers can be trained side by side")
    step = _StackedStep(task, models, cfg) if stacked else _ForwardStep(task, models[0], cfg, mode)
    optimizer = make_optimizer(step.params, cfg)
    if optimizer_state is not None:
        optimizer.load_state_dict(optimizer_state)

    end = None
    bar = progress_bar(
        range(start_epoch + 1, cfg.epochs + 1),
        total=cfg.epochs,
        initial=start_epoch,
        desc="train",
        unit="epoch",
        disable=not progress,
    )
    for epoch in bar:
        end = _run_epoch(step, optimizer, cfg, epoch, len(models))
        log.info("epoch %d: train loss %.4f", epoch, end.train_loss)
        if progress:
            decision = read_names(task)[task.decision]
            val_acc = sum(r["val"][decision] for r in end.results) / len(end.results)
            bar.set_postfix(loss=f"{end.train_loss:.4f}", val_acc=f"{val_acc:.4f}")
        if on_epoch is not None:
            on_epoch(end)
    bar.close()
    if end is None:  # nothing trained: the models hold their weights already
        return []
    end.models()  # written back once, also when the last callback asked for them
    return end.results


def _run_epoch(
    step: "_StackedStep | _ForwardStep",
    optimizer: torch.optim.Optimizer,
    cfg: TrainConfig,
    epoch: int,
    n_models: int,
) -> EpochEnd:
    """One pass over the training split, the learning rate following ``cfg``'s schedule."""
    gen = torch.Generator().manual_seed(_epoch_seed(cfg.seed, epoch))
    total, seen = 0.0, 0
    with _denormals_flushed():  # the steps only: callbacks see floats as they are
        for k, (loss, size) in enumerate(step.epoch(gen)):
            value = loss.item()
            _check_finite(value, epoch, k + 1)
            for group in optimizer.param_groups:
                group["lr"] = cfg.lr_at((epoch - 1 + seen / step.n_examples) / cfg.epochs)
            optimizer.zero_grad(set_to_none=True)
            # The sum over models of each model's mean loss: each model gets its gradient.
            (loss * n_models).backward()
            optimizer.step()
            total, seen = total + value * size, seen + size
    return EpochEnd(epoch, total / seen, step, optimizer)


def make_optimizer(params: list[torch.Tensor], cfg: TrainConfig) -> torch.optim.Optimizer:
    """The optimizer ``cfg.optimizer`` names, at ``cfg.lr`` with ``cfg.weight_decay``.

    Each keeps stacked models independent and their padding exactly zero: its update of an
    entry depends on that entry's own gradient, value and moments only.
    """
    fused = all(p.device.type in ("cpu", "cuda") for p in params)  # one kernel, not one per op
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(
            params, lr=cfg.lr, momentum=SGD_MOMENTUM, weight_decay=cfg.weight_decay, fused=fused
        )
    kind = torch.optim.AdamW if cfg.optimizer == "adamw" else torch.optim.Adam
    return kind(params, lr=cfg.lr, weight_decay=cfg.weight_decay, fused=fused)


class _StackedStep:
    """Training steps of a stack of bag-compressible models (see `headcoop.engine.stack`)."""

    def __init__(self, task: Task, models: list[Model], cfg: TrainConfig) -> None:
        self.task, self.models, self.cfg = task, models, cfg
        self.stack = Stack.of(models)
        self.params = list(self.stack.trainable().values())
        device, d_vocab = self.stack.device, len(task.vocab)
        n_read = len(task.readouts)
        self.train_bags = task.bags(task.split("train")).check(d_vocab, n_read).to(device)
        self.val_bags = task.bags(task.split("val")).check(d_vocab, n_read).to(device)
        self.train_pairs = PairCounts.of(self.train_bags, d_vocab)  # once, not every step
        self.val_pairs = PairCounts.of(self.val_bags, d_vocab)
        self.n_examples = len(self.train_bags)

    def epoch(self, gen: torch.Generator) -> Iterator[tuple[torch.Tensor, int]]:
        """Yield each step's loss (mean over models) and its number of examples per model.

        Every model reads the examples in the same order, so that a step's pair counts serve
        them all; the models differ in their initial weights and dropout masks.
        """
        order = torch.rand(len(self.train_bags), generator=gen).argsort()
        for rows in order.to(self.stack.device).split(self.cfg.batch_size):
            targets = self.train_bags.targets[rows]
            yield self.stack.loss(self.train_pairs[rows], targets, self.cfg.dropout, gen), len(rows)

    @torch.no_grad()
    def validate(self) -> list[dict[str, float]]:
        logits = self.stack.logits(self.val_pairs)
        return accuracies_each(self.task, logits, self.val_bags.targets)

    def states(self) -> list[dict[str, torch.Tensor]]:
        return self.stack.states(self.models)

    def write_back(self) -> None:
        self.stack.write_back(self.models)


class _ForwardStep:
    """Training steps of one model through its TransformerLens forward, on bags where they
    are exact (``mode`` 'auto'), else on full sequences."""

    def __init__(self, task: Task, model: Model, cfg: TrainConfig, mode: str = "auto") -> None:
        self.task, self.model, self.cfg = task, model, cfg
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.device = device_of(model)
        self.examples, self.val_examples = task.split("train"), task.split("val")
        self.bags = use_bags(model, task, mode)
        if not self.bags:
            check_lengths(model, task, self.examples)
        self.n_examples = len(self.examples)

    def epoch(self, gen: torch.Generator) -> Iterator[tuple[torch.Tensor, int]]:
        order = torch.rand(len(self.examples), generator=gen).argsort()
        hooks = [attn_out_dropout(self.cfg.dropout, gen)] if self.cfg.dropout > 0 else []
        self.model.train()
        for _, batch in iter_batches(
            self.task,
            self.examples,
            order,
            self.cfg.batch_size,
            bags=self.bags,
            n_heads=self.model.cfg.n_heads,
        ):
            batch = batch.to(self.device)
            yield batch_loss(read_logits(self.model, batch, hooks), batch.targets), len(batch)
        self.model.eval()

    def validate(self) -> list[dict[str, float]]:
        mode = "auto" if self.bags else "full"
        return [evaluate(self.model, self.task, self.val_examples, mode=mode)]

    @property
    def models(self) -> list[Model]:
        return [self.model]

    def states(self) -> list[dict[str, torch.Tensor]]:
        return [parameters(self.model)]

    def write_back(self) -> None:
        """The model is trained in place."""


def _prepare_run_dir(out: Path, resume: bool, overwrite: bool) -> None:
    """Check that ``out`` (writable, owned by this process) can take this run before any
    work starts."""
    if resume and overwrite:
        raise HeadcoopError("resume and overwrite exclude each other")
    found = run_checkpoints(out)
    if found and not resume and not overwrite:
        raise HeadcoopError(
            f"{out} already holds a training run (last epoch {found[-1][0]}): resume it "
            "(--resume) or replace it (--overwrite)"
        )
    if overwrite:
        clear_run(out)


def _check_finite(loss: float, epoch: int, step: int | None = None) -> None:
    """Stop at the first loss that is not finite: the run has diverged."""
    if not math.isfinite(loss):
        where = f"epoch {epoch}" + ("" if step is None else f", step {step}")
        raise HeadcoopError(
            f"training diverged at {where}: the loss is {loss}; the checkpoints of earlier "
            "epochs are kept (try a smaller learning rate or weight decay)"
        )


def _epoch_seed(seed: int, epoch: int) -> int:
    """A distinct seed for each (seed, epoch) pair."""
    return seed * 1_000_003 + epoch


def _check_resumable(
    meta: dict[str, Any], task: Task, model_cfg: ModelConfig, train_cfg: TrainConfig, path: Path
) -> None:
    """Refuse to resume a run whose stored settings differ from the ones asked for."""
    # Both sides as stored: settings added later are absent where they are at their defaults.
    stored_train = {k: v for k, v in meta.get("train", {}).items() if k != "epoch"}
    wanted = train_cfg.key_dict()
    resumable = _RESUMABLE_CHANGES | ({"epochs"} if train_cfg.lr_schedule == "constant" else set())
    names = [*wanted, *(k for k in stored_train if k not in wanted)]
    differ = [k for k in names if k not in resumable and stored_train.get(k) != wanted.get(k)]
    if meta.get("task") != task.to_config():
        differ.append("task")
    stored_model = {k: v for k, v in meta.get("model", {}).items() if k != "device"}  # pre-0.2
    if stored_model != model_cfg.hooked_kwargs(len(task.vocab)):
        differ.append("model")
    if differ:
        raise HeadcoopError(f"cannot resume from {path}: settings differ in {', '.join(differ)}")
    if stored_train.get("epoch", 0) > train_cfg.epochs:
        raise HeadcoopError(f"cannot resume from {path}: it is past epoch {train_cfg.epochs}")
