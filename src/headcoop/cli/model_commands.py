"""The commands that train and measure one model: ``tasks``, ``train``, ``eval``, ``analyze``.

Each command is an ``add_*`` function that declares its flags beside the ``run_*`` handler it
sets; heavy imports happen inside the handlers, so that ``--help`` stays instant.
"""

import argparse
from pathlib import Path
from typing import Any

from headcoop.cli.args import (
    add_checkpoint,
    add_device,
    add_numeric_train_flags,
    add_task_flags,
    chosen_task,
)
from headcoop.config import (
    ACTIVATIONS,
    BOOTSTRAP,
    INIT_SCHEMES,
    LR_SCHEDULES,
    MAX_BOOTSTRAP,
    NORMALIZATIONS,
    OPTIMIZERS,
    SEED,
    SGD_MOMENTUM,
    SUBSET_MODES,
    SUBSETS_BUDGET,
    ModelConfig,
    Rule,
    TrainConfig,
)
from headcoop.files import owned, strict_json, writable_dir
from headcoop.metrics.definitions import Definition


def add_tasks(commands: Any) -> None:
    tasks = commands.add_parser(
        "tasks",
        help="list the registered tasks",
        description="The tasks that `headcoop train --task NAME` knows, one a line, name first.",
    )
    tasks.set_defaults(run=run_tasks)


def run_tasks(args: argparse.Namespace) -> None:
    from headcoop.tasks import make_task, registered_tasks

    for name, cls in registered_tasks().items():
        about = next(iter((cls.__doc__ or "").strip().splitlines()), "")
        task = make_task(name)
        decision = task.readouts[task.decision]
        engine = "bags" if task.supports_bags else "full sequences"
        facts = f"{len(task.readouts)} readout(s), decision {decision.name!r} with "
        facts += f"{len(decision.candidates)} classes, {engine}"
        print(f"{name}\t{about} [{facts}]")


def add_train(commands: Any) -> None:
    train = commands.add_parser(
        "train",
        help="train a model on a task and write checkpoints",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        description="Train an attention-only HookedTransformer on a registered task (see "
        "`headcoop tasks`). Checkpoints go to OUT/epoch_NNNN; OUT/final links the last one.",
    )
    train.add_argument("--out", required=True, help="run directory for checkpoints")
    add_task_flags(train, default="count01")
    train.add_argument(
        "--seed",
        type=SEED.parse,
        default=TrainConfig.seed,
        help="seed of weights, order and dropout",
    )
    add_numeric_train_flags(train)
    _add_choice_flags(train)
    existing = train.add_mutually_exclusive_group()
    existing.add_argument(
        "--resume", action="store_true", help="continue from the latest checkpoint in --out"
    )
    existing.add_argument(
        "--overwrite", action="store_true", help="replace a training run already in --out"
    )
    train.add_argument("--quiet", action="store_true", help="no progress bar")
    add_device(train)
    train.set_defaults(run=run_train)


def _add_choice_flags(train: argparse.ArgumentParser) -> None:
    """The training choices that are switches or names, not numbers."""
    train.add_argument("--no-layernorm", action="store_true", help="train without LayerNorm")
    train.add_argument(
        "--normalization",
        default=ModelConfig.normalization,
        choices=NORMALIZATIONS,
        help="which normalization (unless --no-layernorm): LayerNorm or RMSNorm, with or "
        "without weights",
    )
    train.add_argument(
        "--act-fn", default=ModelConfig.act_fn, choices=ACTIVATIONS, help="the MLP's activation"
    )
    train.add_argument(
        "--positional",
        action="store_true",
        help="learn a positional embedding (off, the paper's, keeps W_pos zero and frozen)",
    )
    train.add_argument(
        "--lr-schedule",
        default=TrainConfig.lr_schedule,
        choices=LR_SCHEDULES,
        help="cosine decays the learning rate to zero over the epochs",
    )
    train.add_argument(
        "--optimizer",
        default=TrainConfig.optimizer,
        choices=OPTIMIZERS,
        help=f"sgd has momentum {SGD_MOMENTUM}",
    )
    train.add_argument(
        "--init",
        default=TrainConfig.init,
        choices=INIT_SCHEMES,
        help="initial weights: TransformerLens's GPT-2 scheme or plain torch modules' defaults",
    )


def run_train(args: argparse.Namespace) -> None:
    from headcoop.device import resolve_device
    from headcoop.loading.checkpoint import FINAL, resolve_checkpoint
    from headcoop.training.trainer import train

    writable_dir(args.out, "--out")
    task = chosen_task(args)
    device = resolve_device(args.device)
    train(
        task,
        _model_config(args),
        _train_config(args),
        out=args.out,
        resume=args.resume,
        overwrite=args.overwrite,
        progress=not args.quiet,
        device=device,
    )
    final = resolve_checkpoint(args.out)
    print(f"final checkpoint: {final} (also {args.out}/{FINAL})")
    report_accuracy(final, "test", full=False, as_json=False, device=device, task=task)


def _model_config(args: argparse.Namespace) -> ModelConfig:
    return ModelConfig(
        d_model=args.d_model,
        n_heads=args.n_heads,
        d_head=args.d_head,
        layernorm=not args.no_layernorm,
        n_layers=args.n_layers,
        positional=args.positional,
        n_ctx=args.n_ctx,
        d_mlp=args.d_mlp,
        act_fn=args.act_fn,
        normalization=args.normalization,
    )


def _train_config(args: argparse.Namespace) -> TrainConfig:
    return TrainConfig(
        seed=args.seed,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        lr_schedule=args.lr_schedule,
        weight_decay=args.weight_decay,
        dropout=args.dropout,
        checkpoint_every=args.checkpoint_every,
        optimizer=args.optimizer,
        init=args.init,
        init_scale=args.init_scale,
    )


def add_eval(commands: Any) -> None:
    evaluate = commands.add_parser(
        "eval",
        help="accuracy of a checkpoint",
        description="Accuracy of each readout on a split of the checkpoint's task.",
    )
    add_checkpoint(evaluate, out=False)
    evaluate.add_argument("--split", default="test", choices=("train", "val", "test"))
    evaluate.add_argument(
        "--full", action="store_true", help="run full sequences instead of the bag engine"
    )
    evaluate.add_argument("--json", action="store_true", help="print the metrics as JSON")
    add_device(evaluate)
    evaluate.set_defaults(run=run_eval)


def run_eval(args: argparse.Namespace) -> None:
    report_accuracy(
        args.checkpoint, args.split, args.full, args.json, args.device, chosen_task(args)
    )


def report_accuracy(
    path: str | Path, split: str, full: bool, as_json: bool, device: Any, task: Any = None
) -> None:
    """Print the checkpoint's accuracy of each readout on ``split`` (or its metrics as JSON),
    on ``task`` (by default the checkpoint's)."""
    from headcoop.engine.run import choose_engine, evaluate
    from headcoop.loading.checkpoint import load_with_task
    from headcoop.tasks import read_names

    model, task, _ = load_with_task(path, task, device)
    mode = "full" if full else "auto"
    metrics = evaluate(model, task, task.split(split), mode)
    engine = "full sequences" if choose_engine([model], task, mode) == "full" else "bag engine"
    if as_json:
        print(strict_json({"split": split, "mode": mode, **metrics}))
        return
    accuracies = ", ".join(f"{name} {metrics[name]:.4f}" for name in read_names(task))
    print(f"{split} accuracy ({len(task.split(split))} examples, {engine}): {accuracies}")


def add_analyze(commands: Any) -> None:
    analyze = commands.add_parser(
        "analyze",
        help="measure every head of a checkpoint",
        description="Per-head and per-pair l-acc, ROC AUC and s-acc at the task's decision "
        "(l-acc and ROC AUC under every definition of a set's logits: "
        + "; ".join(
            f"{columns} for {meaning}" for columns, meaning in Definition.described().items()
        )
        + "), l-acc of the other readouts, attention ratios and head weights, "
        "and the decision metrics of every subset of heads, for a model of any depth. "
        "Writes OUT/heads.csv, OUT/pairs.csv, OUT/subsets.csv.gz, the interactions, "
        "OUT/summary.json and OUT/report.html.",
    )
    add_checkpoint(analyze)
    analyze.add_argument(
        "--subsets",
        choices=SUBSET_MODES,
        default="auto",
        help="which sets of heads to measure besides singles and pairs: as the cost model "
        "decides from the model's and task's sizes (auto), every set (all), sets sampled by "
        "size (sampled), or none",
    )
    analyze.add_argument("--no-subsets", action="store_true", help="the same as --subsets none")
    analyze.add_argument(
        "--subsets-budget",
        type=Rule(float, 0).parse,
        default=SUBSETS_BUDGET,
        help="seconds the pass over all sets may take by the cost model's estimate (many "
        "classes make it slow); above, sets are sampled, or s-acc is measured on single heads "
        "and pairs only",
    )
    analyze.add_argument(
        "--bootstrap",
        type=Rule(int, 0, MAX_BOOTSTRAP).parse,
        default=BOOTSTRAP,
        metavar="N",
        help="bootstrap resamples of the test split (seeded) for the 95%% intervals of every "
        "head's and pair's metrics (the *_low, *_high columns) and of each game's cooperation "
        "index; 0 for none",
    )
    analyze.add_argument("--quiet", action="store_true", help="no progress bars")
    analyze.add_argument(
        "--png", action="store_true", help="also PNGs of report.html's figures (needs Chromium)"
    )
    add_device(analyze)
    analyze.set_defaults(run=run_analyze)


def run_analyze(args: argparse.Namespace) -> None:
    from headcoop.heads.analysis import HeadAnalysis
    from headcoop.heads.analyze import analyze
    from headcoop.heads.report import write_report

    writable_dir(args.out, "--out")
    with owned(args.out, "--out"):
        result = analyze(
            args.checkpoint,
            chosen_task(args),
            subsets="none" if args.no_subsets else args.subsets,
            subsets_budget=args.subsets_budget,
            bootstrap=args.bootstrap,
            progress=not args.quiet,
            device=args.device,
        )
        out = result.save(args.out, checkpoint=str(args.checkpoint))
        write_report(HeadAnalysis.load(out), out, png=args.png)
    classes = ", ".join(f"{n} {c}" for c, n in result.summary["classes"].items())
    print(f"heads: {classes}; results in {out}")
