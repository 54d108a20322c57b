"""The ``headcoop`` command line: thin wrappers that parse, call the library and report.

One ``add_*`` function per command declares its flags beside its ``run_*`` handler: the
commands on one model in `model_commands` (tasks, train, eval, analyze), the studies' in
`study_commands` (trace, successor, figures, claims, cooperation, explore). Heavy imports
(torch, transformer_lens) happen inside the handlers, so ``--help`` is instant.
"""

import argparse
import errno
import multiprocessing
import os
import signal
import sys
from collections.abc import Sequence
from typing import Any

from headcoop.cli import model_commands, study_commands
from headcoop.cli.args import Parser
from headcoop.errors import HeadcoopError
from headcoop.memory import keep_freed_memory

COMMANDS = (
    model_commands.add_tasks,
    model_commands.add_train,
    model_commands.add_eval,
    model_commands.add_analyze,
    study_commands.add_trace,
    study_commands.add_successor,
    study_commands.add_figures,
    study_commands.add_claims,
    study_commands.add_cooperation,
    study_commands.add_explore,
)
"""Every command, in the order ``headcoop --help`` lists them."""


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="headcoop",
        description="Train and dissect small attention-only transformers on toy tasks.",
    )
    commands = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    for add in COMMANDS:
        add(commands)
    for command in commands.choices.values():
        command.add_argument(
            "--debug",
            action="store_true",
            default=os.environ.get("HEADCOOP_DEBUG", "") not in ("", "0"),
            help="on an error, show the whole stack, not one line (also HEADCOOP_DEBUG=1)",
        )
    return parser


class Terminated(KeyboardInterrupt):
    """SIGTERM, handled as Ctrl-C is: one line, the conventional exit code, workers stopped."""


def _terminate(signum: int, frame: Any) -> None:
    raise Terminated


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    keep_freed_memory()
    previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        args.run(args)
    except HeadcoopError as exc:
        if args.debug:
            raise
        return _fail(args, f"error: {exc}", 1)
    except Terminated:
        _stop_helpers()
        return _fail(args, "terminated", 128 + signal.SIGTERM)
    except KeyboardInterrupt:
        _stop_helpers()
        return _fail(args, "interrupted", 130)
    except OSError as exc:
        if exc.errno not in FILE_ERRORS or args.debug:
            raise
        where = f" ({exc.filename})" if exc.filename else ""
        return _fail(args, f"error: {exc.strerror.lower()}{where}", 1)
    except (MemoryError, ImportError, SystemError) as exc:
        if args.debug or not _short_of_memory(exc):
            raise
        detail = str(exc) or type(exc).__name__
        return _fail(args, f"error: out of memory: {detail} ({_LIMIT})", 1)
    finally:
        signal.signal(signal.SIGTERM, previous)
    return 0


FILE_ERRORS = (
    errno.ENOSPC,
    errno.EDQUOT,
    errno.EROFS,
    errno.EIO,
    errno.EACCES,
    errno.EPERM,
    errno.ENOMEM,
)
"""Faults of the disk, of file permissions and of the memory the system grants (a low
``ulimit -v`` during an import), not of headcoop: one line, like bad input."""
_LIMIT = "is a limit such as ulimit -v too low for torch and the model?"


def _short_of_memory(exc: BaseException) -> bool:
    """A MemoryError, an import that failed to map a shared library, or an import or
    interpreter failure under a limit on the address space (a low ``ulimit -v`` makes the
    interpreter fail in such ways when an allocation is refused)."""
    import resource

    if isinstance(exc, MemoryError) or "failed to map segment" in str(exc):
        return True
    return resource.getrlimit(resource.RLIMIT_AS)[0] != resource.RLIM_INFINITY


def _fail(args: argparse.Namespace, message: str, code: int) -> int:
    """Say ``message`` in one line; return ``code``."""
    print(f"headcoop {args.command}: {message}", file=sys.stderr)
    return code


def _stop_helpers() -> None:
    """Stop this process's helper processes (sweep workers) with it: a signal sent to this
    process alone would leave them running."""
    for child in multiprocessing.active_children():
        child.terminate()
    workers = sys.modules.get("headcoop.training.workers")
    if workers is not None:
        workers.forget_workers()
