"""The ``headcoop`` command line: thin wrappers that parse, call the library and report.

Heavy imports (torch, transformer_lens) happen inside the commands, so ``--help`` is instant.
"""

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from headcoop.config import (
    INIT_SCHEMES,
    LR_SCHEDULES,
    MODEL_RULES,
    OPTIMIZERS,
    SEED,
    SGD_MOMENTUM,
    TRAIN_RULES,
    ModelConfig,
    Rule,
    TrainConfig,
)
from headcoop.errors import HeadcoopError
from headcoop.files import writable_dir
from headcoop.memory import keep_freed_memory

_TRAIN_FLAGS = (
    ("--epochs", TRAIN_RULES, "passes over the training split"),
    ("--d-model", MODEL_RULES, "width of the residual stream"),
    ("--n-heads", MODEL_RULES, "attention heads"),
    ("--d-head", MODEL_RULES, "dimension of each head"),
    ("--n-layers", MODEL_RULES, "attention layers (more than one runs full sequences)"),
    ("--n-ctx", MODEL_RULES, "the longest sequence the model takes"),
    ("--batch-size", TRAIN_RULES, "examples per optimizer step"),
    ("--lr", TRAIN_RULES, "learning rate (the peak, under a schedule)"),
    ("--weight-decay", TRAIN_RULES, "weight decay (decoupled under adamw, L2 otherwise)"),
    ("--dropout", TRAIN_RULES, "dropout on the attention output, in training"),
    ("--checkpoint-every", TRAIN_RULES, "save every N epochs (the last is always saved)"),
    ("--init-scale", TRAIN_RULES, "multiplies every randomly drawn initial weight"),
)
"""The numeric training flags: each parsed by the rule its config field is checked with."""


def _add_device(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--device",
        default=None,
        help="where models run: cpu, cuda, cuda:N (default: cuda when available, else cpu)",
    )


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="headcoop",
        description="Train and dissect small attention-only transformers on toy tasks.",
    )
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    tasks = commands.add_parser(
        "tasks",
        help="list the registered tasks",
        description="The tasks that `headcoop train --task NAME` knows, one a line, name first.",
    )
    tasks.set_defaults(run=_tasks)

    train = commands.add_parser(
        "train",
        help="train a model on a task and write checkpoints",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        description="Train an attention-only HookedTransformer on a registered task (see "
        "`headcoop tasks`). Checkpoints go to OUT/epoch_NNNN; OUT/final links the last one.",
    )
    train.add_argument("--out", required=True, help="run directory for checkpoints")
    train.add_argument("--task", default="count01", help="the task's name (headcoop tasks)")
    train.add_argument(
        "--task-param",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a parameter of the task, e.g. seed=3 (the data seed); repeatable; "
        "VALUE is read as JSON where it parses, else as text",
    )
    train.add_argument(
        "--seed",
        type=SEED.parse,
        default=TrainConfig.seed,
        help="seed of weights, order and dropout",
    )
    for flag, rules, about in _TRAIN_FLAGS:
        name = flag.removeprefix("--").replace("-", "_")
        default = getattr(ModelConfig if rules is MODEL_RULES else TrainConfig, name)
        train.add_argument(flag, type=rules[name].parse, default=default, help=about)
    train.add_argument("--no-layernorm", action="store_true", help="train without LayerNorm")
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
    existing = train.add_mutually_exclusive_group()
    existing.add_argument(
        "--resume", action="store_true", help="continue from the latest checkpoint in --out"
    )
    existing.add_argument(
        "--overwrite", action="store_true", help="replace a training run already in --out"
    )
    train.add_argument("--quiet", action="store_true", help="no progress bar")
    _add_device(train)
    train.set_defaults(run=_train)

    evaluate = commands.add_parser(
        "eval",
        help="accuracy of a checkpoint",
        description="Accuracy of each readout on a split of the checkpoint's task.",
    )
    evaluate.add_argument("checkpoint", help="checkpoint directory, or a run directory")
    evaluate.add_argument("--split", default="test", choices=("train", "val", "test"))
    evaluate.add_argument(
        "--full", action="store_true", help="run full sequences instead of the bag engine"
    )
    evaluate.add_argument("--json", action="store_true", help="print the metrics as JSON")
    _add_device(evaluate)
    evaluate.set_defaults(run=_eval)

    analyze = commands.add_parser(
        "analyze",
        help="measure every head of a checkpoint",
        description="Per-head and per-pair l-acc, ROC AUC and s-acc at the task's decision "
        "(l-acc and ROC AUC under the paper's head-only logits and, as *_direct, with the "
        "direct path kept), l-acc of the other readouts, attention ratios and head weights, "
        "and the decision metrics of every subset of heads. Writes OUT/heads.csv, "
        "OUT/pairs.csv, OUT/subsets.csv.gz and OUT/summary.json.",
    )
    analyze.add_argument("checkpoint", help="checkpoint directory, or a run directory")
    analyze.add_argument("--out", required=True, help="directory for the result files")
    analyze.add_argument("--no-subsets", action="store_true", help="skip the all-subsets pass")
    analyze.add_argument("--quiet", action="store_true", help="no progress bars")
    _add_device(analyze)
    analyze.set_defaults(run=_analyze)

    tracer = commands.add_parser(
        "trace",
        help="split attention scores by singular components and trace them head to head",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        description="Sparse attention decomposition of a checkpoint: every score as a sum of "
        "per-component terms of its head's query-key matrix, the upstream heads that set "
        "them (models with two or more layers, checked by intervention) and, for "
        "position-free models, each component's part of the task's attention ratios. Writes "
        "OUT/terms.csv, OUT/graph.json, OUT/interventions.csv or OUT/ratios.csv, "
        "OUT/summary.json and OUT/trace.html.",
    )
    tracer.add_argument("checkpoint", help="checkpoint directory, or a run directory")
    tracer.add_argument("--out", required=True, help="directory for the result files")
    tracer.add_argument("--prompts", type=Rule(int, 1, 4096).parse, default=64,
                        help="test examples traced")  # fmt: skip
    tracer.add_argument("--share", type=Rule(float, 0, 1, low_open=True).parse, default=0.7,
                        help="keep upstream contributors until they pass this share")  # fmt: skip
    tracer.set_defaults(run=_trace)

    successor = commands.add_parser(
        "successor",
        help="succession scores, periodic features and steering of a checkpoint's heads",
        description="Successor heads: each head's (and, with two layers, each virtual path's) "
        "effective OV circuit scored on every ordered domain of the task, mod-k features of "
        "the number tokens by SVD, probe and sparse dictionary, and steering by residue "
        "arithmetic against random directions. Writes OUT/succession.csv, OUT/features.csv, "
        "OUT/steering.csv, OUT/summary.json and OUT/successor.html.",
    )
    successor.add_argument("checkpoint", help="checkpoint directory, or a run directory")
    successor.add_argument("--out", required=True, help="directory for the result files")
    successor.set_defaults(run=_successor)

    figures = commands.add_parser(
        "figures",
        help="every figure and table of the paper, with an HTML report",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        description="Train and measure what the paper's figures need (cached under CACHE: a "
        "rerun only redraws, an interrupted run resumes), then write OUT/index.html, one HTML "
        "and one PNG per item, and the data behind them.",
    )
    figures.add_argument("--out", default="figures", help="directory for the report")
    figures.add_argument("--cache", default="runs/figures", help="directory for cached results")
    figures.add_argument(
        "--quick", action="store_true", help="small splits and sweeps: checks the pipeline"
    )
    figures.add_argument(
        "--calibrated",
        metavar="LAB",
        default=None,
        help="train under the setting that the claims lab whose output is in LAB selected "
        "(make figures PLAN=calibrated)",
    )
    figures.add_argument(
        "--claims",
        default="runs/claims",
        help="a claims lab's output, whose section the report includes where it exists",
    )
    figures.add_argument("--no-png", action="store_true", help="skip the PNG pictures")
    figures.add_argument("--quiet", action="store_true", help="no progress bars")
    figures.add_argument(
        "--executor",
        choices=("local", "slurm"),
        default=None,
        help="run the sweeps' stacks as submitit jobs, on this machine or a Slurm cluster "
        "(default: on this machine, see --workers)",
    )
    figures.add_argument(
        "--workers",
        type=Rule(int, 1, 256).parse,
        default=None,
        help="processes that train sweep stacks at once (unset: one per core on the CPU, one "
        "on a GPU)",
    )
    _add_device(figures)
    figures.set_defaults(run=_figures)

    claims = commands.add_parser(
        "claims",
        help="the claims lab: which training choices make the paper's findings hold",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        description="Train a grid of training choices x seeds (one factor at a time, then a "
        "factorial on the factors that matter), judge every claim of the paper on every "
        "model, and write claims.csv, settings.csv, the heatmap and claims.html into OUT. "
        "Models are cached under CACHE by configuration: a rerun only judges.",
    )
    claims.add_argument("--out", default="runs/claims", help="directory for the lab's output")
    claims.add_argument("--cache", default="runs/figures", help="directory for cached results")
    claims.add_argument(
        "--quick", action="store_true", help="small splits, three factors: checks the pipeline"
    )
    claims.add_argument("--no-png", action="store_true", help="skip the heatmap's PNG")
    claims.add_argument("--quiet", action="store_true", help="no progress bars")
    claims.add_argument(
        "--workers",
        type=Rule(int, 1, 256).parse,
        default=None,
        help="processes that train settings at once (unset: one per core on the CPU, one on a GPU)",
    )
    _add_device(claims)
    claims.set_defaults(run=_claims)
    return parser


def _train(args: argparse.Namespace) -> None:
    from headcoop.device import resolve_device
    from headcoop.tasks import make_task
    from headcoop.training.checkpoint import FINAL, resolve_checkpoint
    from headcoop.training.trainer import train

    writable_dir(args.out, "--out")
    task = make_task(args.task, **_task_params(args.task_param))
    model_cfg = ModelConfig(
        d_model=args.d_model,
        n_heads=args.n_heads,
        d_head=args.d_head,
        layernorm=not args.no_layernorm,
        n_layers=args.n_layers,
        positional=args.positional,
        n_ctx=args.n_ctx,
    )
    train_cfg = TrainConfig(
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
    device = resolve_device(args.device)
    train(
        task,
        model_cfg,
        train_cfg,
        out=args.out,
        resume=args.resume,
        overwrite=args.overwrite,
        progress=not args.quiet,
        device=device,
    )
    final = resolve_checkpoint(args.out)
    print(f"final checkpoint: {final} (also {args.out}/{FINAL})")
    _report(final, "test", full=False, as_json=False, device=device)


def _tasks(args: argparse.Namespace) -> None:
    from headcoop.tasks import make_task, registered_tasks

    for name, cls in registered_tasks().items():
        task = make_task(name)
        about = next(iter((cls.__doc__ or "").strip().splitlines()), "")
        decision = task.readouts[task.decision]
        engine = "bags" if task.supports_bags else "full sequences"
        facts = f"{len(task.readouts)} readout(s), decision {decision.name!r} with "
        facts += f"{len(decision.candidates)} classes, {engine}"
        print(f"{name}\t{about} [{facts}]")


def _task_params(pairs: list[str]) -> dict[str, Any]:
    """``KEY=VALUE`` strings as keyword arguments; values are JSON where they parse."""
    params = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise HeadcoopError(f"--task-param needs KEY=VALUE, got {pair!r}")
        try:
            params[key] = json.loads(value)
        except json.JSONDecodeError:
            params[key] = value
    return params


def _analyze(args: argparse.Namespace) -> None:
    from headcoop.analysis.heads import analyze

    writable_dir(args.out, "--out")
    result = analyze(
        args.checkpoint, subsets=not args.no_subsets, progress=not args.quiet, device=args.device
    )
    out = result.save(args.out, checkpoint=str(args.checkpoint))
    classes = ", ".join(f"{n} {c}" for c, n in result.summary["classes"].items())
    print(f"heads: {classes}; results in {out}")


def _trace(args: argparse.Namespace) -> None:
    from headcoop.analysis.trace_report import trace_checkpoint

    writable_dir(args.out, "--out")
    summary = trace_checkpoint(args.checkpoint, args.out, args.prompts, args.share)
    stats = summary["sparsity"]
    print(
        f"{stats['scores']} scores, {stats['mean']:.2f} components each on average; "
        f"results in {args.out}"
    )


def _successor(args: argparse.Namespace) -> None:
    from headcoop.analysis.successor_report import successor_checkpoint

    writable_dir(args.out, "--out")
    summary = successor_checkpoint(args.checkpoint, args.out)
    best = summary["scores"][0]
    print(
        f"{len(summary['successor_heads'])} successor head(s); best {best['path']} "
        f"({best['score']:.3f}); results in {args.out}"
    )


def _figures(args: argparse.Namespace) -> None:
    import logging

    from headcoop.claims.report import load_selected
    from headcoop.paper.plan import FigurePlan
    from headcoop.paper.report import make_figures

    writable_dir(args.out, "--out")
    writable_dir(args.cache, "--cache")
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    logging.getLogger("headcoop.paper").setLevel(logging.INFO)
    if args.quick and args.calibrated:
        raise HeadcoopError("--quick and --calibrated exclude each other")
    note = ""
    if args.calibrated:
        selected = load_selected(args.calibrated)
        plan = FigurePlan.calibrated(selected)
        note = (
            f"This report trains every model under the claims lab's selected setting "
            f"({selected['setting']}; from {args.calibrated}), not the default."
        )
    else:
        plan = FigurePlan.quick() if args.quick else FigurePlan.paper()
    summary = make_figures(
        plan,
        args.out,
        args.cache,
        png=not args.no_png,
        progress=not args.quiet,
        device=args.device,
        executor=args.executor,
        claims=args.claims,
        note=note,
        workers=args.workers,
    )
    disagree = sum(r["verdict"] == "disagrees" for r in summary["paper_comparison"])
    print(
        f"report: {Path(args.out) / 'index.html'} ({summary['seconds']['total']:.0f} s; "
        f"{disagree} disagreement(s) with the paper's text). {summary['png']}"
    )


def _claims(args: argparse.Namespace) -> None:
    import logging

    from headcoop.claims.lab import LabPlan, run_lab
    from headcoop.claims.report import write_lab

    writable_dir(args.out, "--out")
    writable_dir(args.cache, "--cache")
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    logging.getLogger("headcoop.claims").setLevel(logging.INFO)
    plan = LabPlan.quick() if args.quick else LabPlan.full()
    result = run_lab(
        plan, args.cache, progress=not args.quiet, device=args.device, workers=args.workers
    )
    summary = write_lab(result, args.out, png=not args.no_png)
    print(
        f"claims lab: {Path(args.out) / 'claims.html'} ({sum(result.seconds.values()):.0f} s; "
        f"selected setting: {summary['selected']['setting']}). {summary['png']}"
    )


def _eval(args: argparse.Namespace) -> None:
    _report(args.checkpoint, args.split, args.full, args.json, args.device)


def _report(path: str | Path, split: str, full: bool, as_json: bool, device: Any) -> None:
    from headcoop.engine.bags import evaluate, use_bags
    from headcoop.tasks import read_names, task_from_config
    from headcoop.training.checkpoint import load_checkpoint

    model, config = load_checkpoint(path, device)
    task = task_from_config(config.get("task", {}))
    mode = "full" if full else "auto"
    metrics = evaluate(model, task, task.split(split), mode)
    engine = "bag engine" if use_bags(model, task, mode) else "full sequences"
    if as_json:
        print(json.dumps({"split": split, "mode": mode, **metrics}))
        return
    accuracies = ", ".join(f"{name} {metrics[name]:.4f}" for name in read_names(task))
    print(f"{split} accuracy ({len(task.split(split))} examples, {engine}): {accuracies}")


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    keep_freed_memory()
    try:
        args.run(args)
    except HeadcoopError as exc:
        print(f"headcoop {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"headcoop {args.command}: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
