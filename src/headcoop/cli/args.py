"""What several commands share: the one-line usage error, the device flag, task parameters and
the numeric training flags (each parsed by the rule its config field is checked with)."""

import argparse
import json
from typing import Any, NoReturn

from headcoop.config import MODEL_RULES, TRAIN_RULES, ModelConfig, Rule, TrainConfig
from headcoop.errors import HeadcoopError

TRAIN_FLAGS = (
    ("--epochs", TRAIN_RULES, "passes over the training split"),
    ("--d-model", MODEL_RULES, "width of the residual stream"),
    ("--n-heads", MODEL_RULES, "attention heads"),
    ("--d-head", MODEL_RULES, "dimension of each head"),
    ("--n-layers", MODEL_RULES, "transformer blocks (more than one runs full sequences)"),
    ("--d-mlp", MODEL_RULES, "width of an MLP after each attention layer (0: attention only)"),
    ("--n-ctx", MODEL_RULES, "the longest sequence the model takes"),
    ("--batch-size", TRAIN_RULES, "examples per optimizer step"),
    ("--lr", TRAIN_RULES, "learning rate (the peak, under a schedule)"),
    ("--weight-decay", TRAIN_RULES, "weight decay (decoupled under adamw, L2 otherwise)"),
    ("--dropout", TRAIN_RULES, "dropout on the attention output, in training"),
    ("--checkpoint-every", TRAIN_RULES, "save every N epochs (the last is always saved)"),
    ("--init-scale", TRAIN_RULES, "multiplies every randomly drawn initial weight"),
)
"""The numeric training flags: each parsed by the rule its config field is checked with."""

WORKERS = Rule(int, 1, 256)
"""How many processes may train at once (--workers)."""


class Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n")


def add_device(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--device",
        default=None,
        help="where models run: cpu, cuda, cuda:N (default: cuda when available, else cpu)",
    )


def add_checkpoint(parser: argparse.ArgumentParser, out: bool = True, prompts: bool = True) -> None:
    """The positional checkpoint (or run directory), ``--out`` for the result files, the
    task flags (for a checkpoint that names no task, or to measure it on another) and, where
    ``prompts``, ``--prompts``/``--candidates`` (a researcher's own prompts as the task)."""
    parser.add_argument(
        "checkpoint", help="checkpoint directory (headcoop's or plain TransformerLens), or a run"
    )
    if out:
        parser.add_argument("--out", required=True, help="directory for the result files")
    add_task_flags(parser, default=None)
    if not prompts:
        return
    parser.add_argument(
        "--prompts",
        metavar="FILE.jsonl",
        help='your own prompts instead of a task: one {"tokens": [ids], "target": id} a line '
        '(optional "position", "split": train or test)',
    )
    parser.add_argument(
        "--candidates",
        metavar="ID,ID,...",
        help="with --prompts: the token ids the prediction chooses among (default: the targets)",
    )


def add_task_flags(parser: argparse.ArgumentParser, default: str | None) -> None:
    """``--task`` (a registered name, FILE.py:CLASS or MODULE:CLASS) and ``--task-param``."""
    parser.add_argument(
        "--task",
        default=default,
        help="the task: a name from `headcoop tasks`, or your own class as "
        "path/to/file.py:ClassName or module:ClassName"
        + ("" if default else " (default: the one the checkpoint names)"),
    )
    parser.add_argument(
        "--task-param",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a parameter of the task, e.g. seed=3 (the data seed); repeatable; "
        "VALUE is read as JSON where it parses, else as text",
    )


def chosen_task(args: argparse.Namespace) -> Any:
    """The task that ``--task`` and ``--task-param`` (or ``--prompts``) name, or None where
    none was given."""
    if hasattr(args, "candidates"):  # the command takes --prompts FILE.jsonl
        if args.prompts is not None:
            return _prompt_task(args)
        if args.candidates is not None:
            raise HeadcoopError("--candidates needs --prompts")
    if args.task is None:
        if args.task_param:
            raise HeadcoopError("--task-param needs --task")
        return None
    from headcoop.tasks import load_task

    return load_task(args.task, **task_params(args.task_param))


def _prompt_task(args: argparse.Namespace) -> Any:
    """`headcoop.tasks.PromptTask` from ``--prompts`` and ``--candidates``."""
    if args.task is not None or args.task_param:
        raise HeadcoopError("give --prompts or --task, not both")
    from headcoop.tasks import PromptTask

    candidates = None
    if args.candidates is not None:
        try:
            candidates = [int(part) for part in args.candidates.split(",")]
        except ValueError:
            raise HeadcoopError(
                f"--candidates needs token ids as ID,ID,..., got {args.candidates!r:.60}"
            ) from None
    return PromptTask.from_jsonl(args.prompts, candidates=candidates)


def add_numeric_train_flags(parser: argparse.ArgumentParser) -> None:
    """`TRAIN_FLAGS`, each with its config field's default."""
    for flag, rules, about in TRAIN_FLAGS:
        name = flag.removeprefix("--").replace("-", "_")
        default = getattr(ModelConfig if rules is MODEL_RULES else TrainConfig, name)
        parser.add_argument(flag, type=rules[name].parse, default=default, help=about)


def task_params(pairs: list[str]) -> dict[str, Any]:
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
        except RecursionError:
            raise HeadcoopError(f"--task-param {key} is nested too deeply") from None
        except ValueError:  # a number of thousands of digits
            raise HeadcoopError(f"--task-param {key}: a number too long to read") from None
    return params


def log_progress(package: str) -> None:
    """Show the INFO lines of ``package`` (a study's stage times), warnings elsewhere."""
    import logging

    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    logging.getLogger(package).setLevel(logging.INFO)
