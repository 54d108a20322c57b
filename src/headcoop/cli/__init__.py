"""The ``headcoop`` command line: thin wrappers that parse, call the library and report.

One ``add_*`` function per command declares its flags beside its ``run_*`` handler: the
commands on one model in `model_commands` (tasks, train, eval, analyze), the studies' in
`study_commands` (trace, successor, figures, claims). Heavy imports (torch, transformer_lens)
happen inside the handlers, so ``--help`` is instant.
"""

import argparse
import sys
from collections.abc import Sequence

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
    return parser


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
