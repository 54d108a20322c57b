"""The commands of the studies: ``trace`` (sparse attention decomposition), ``successor``
(successor heads), ``figures`` and ``claims`` (the paper), ``cooperation`` (interactions of
heads across tasks).

Each command is an ``add_*`` function that declares its flags beside the ``run_*`` handler it
sets; heavy imports happen inside the handlers, so that ``--help`` stays instant.
"""

import argparse
from pathlib import Path
from typing import Any

from headcoop.cli.args import WORKERS, add_checkpoint, add_device, chosen_task, log_progress
from headcoop.config import Rule
from headcoop.files import owned, writable_dir


def add_trace(commands: Any) -> None:
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
    add_checkpoint(tracer, prompts=False)
    tracer.add_argument("--prompts", type=Rule(int, 1, 4096).parse, default=64,
                        help="test examples traced")  # fmt: skip
    tracer.add_argument("--share", type=Rule(float, 0, 1, low_open=True).parse, default=0.7,
                        help="keep upstream contributors until they pass this share")  # fmt: skip
    tracer.set_defaults(run=_owning_out(run_trace))


def run_trace(args: argparse.Namespace) -> None:
    from headcoop.trace.trace_report import trace_checkpoint

    summary = trace_checkpoint(
        args.checkpoint, args.out, args.prompts, args.share, chosen_task(args)
    )
    stats = summary["sparsity"]
    if not stats["scores"]:
        print(f"no scores traced (no head fires on these prompts); results in {args.out}")
        return
    print(
        f"{stats['scores']} scores, {stats['mean']:.2f} components each on average; "
        f"results in {args.out}"
    )


def add_successor(commands: Any) -> None:
    successor = commands.add_parser(
        "successor",
        help="succession scores, periodic features and steering of a checkpoint's heads",
        description="Successor heads: each head's (and, with two layers, each virtual path's) "
        "effective OV circuit scored on every ordered domain of the task, mod-k features of "
        "the number tokens by SVD, probe and sparse dictionary, and steering by residue "
        "arithmetic against random directions. Writes OUT/succession.csv, OUT/features.csv, "
        "OUT/steering.csv, OUT/summary.json and OUT/successor.html.",
    )
    add_checkpoint(successor, prompts=False)
    successor.set_defaults(run=_owning_out(run_successor))


def run_successor(args: argparse.Namespace) -> None:
    from headcoop.successor.successor_report import successor_checkpoint

    summary = successor_checkpoint(args.checkpoint, args.out, chosen_task(args))
    best = summary["scores"][0]
    print(
        f"{len(summary['successor_heads'])} successor head(s); best {best['path']} "
        f"({best['score']:.3f}); results in {args.out}"
    )


def _add_run_flags(parser: argparse.ArgumentParser, workers_help: str) -> None:
    """The flags the paper's two commands share: PNGs, progress, workers and device."""
    parser.add_argument("--no-png", action="store_true", help="skip the PNG pictures")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.add_argument("--workers", type=WORKERS.parse, default=None, help=workers_help)
    add_device(parser)


def _prepare_paper_dirs(args: argparse.Namespace) -> None:
    """Check that the cache can be written (`_owning_out` checked the output), and show the
    stages' progress."""
    writable_dir(args.cache, "--cache")
    log_progress("headcoop.paper")


def _owning_out(run: Any) -> Any:
    """``run`` with its ``--out`` directory owned by this process while it runs."""

    def owning(args: argparse.Namespace) -> None:
        writable_dir(args.out, "--out")
        with owned(args.out, "--out"):
            run(args)

    return owning


def add_figures(commands: Any) -> None:
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
    figures.add_argument(
        "--executor",
        choices=("local", "slurm"),
        default=None,
        help="run the sweeps' stacks as submitit jobs, on this machine or a Slurm cluster "
        "(default: on this machine, see --workers)",
    )
    _add_run_flags(
        figures,
        "processes that train sweep stacks at once (unset: one per core on the CPU, one on a GPU)",
    )
    figures.set_defaults(run=_owning_out(run_figures))


def run_figures(args: argparse.Namespace) -> None:
    from headcoop.paper.figures import make_figures
    from headcoop.paper.plan import plan_for

    _prepare_paper_dirs(args)
    plan, note = plan_for(quick=args.quick, calibrated=args.calibrated)
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


def add_claims(commands: Any) -> None:
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
    claims.add_argument(
        "--search",
        type=Rule(int, 1, 100_000).parse,
        default=None,
        metavar="N",
        help="instead of the grid, an Optuna search over every factor until the study in OUT "
        "holds N search trials (a rerun with a larger N adds to it; a killed one resumes): "
        "writes trials.csv, pareto.csv, importance.csv, selected.json and search.html",
    )
    claims.add_argument("--batch", type=Rule(int, 1, 1024).parse, default=4,
                        help="trials asked and trained at once by --search")  # fmt: skip
    claims.add_argument(
        "--executor",
        choices=("local", "slurm"),
        default=None,
        help="train each setting as a submitit job, on this machine or a Slurm cluster",
    )
    _add_run_flags(
        claims,
        "processes that train settings at once (unset: one per core on the CPU, one on a GPU)",
    )
    claims.set_defaults(run=_owning_out(run_claims))


def run_claims(args: argparse.Namespace) -> None:
    from headcoop.paper.lab import run_lab
    from headcoop.paper.lab_report import write_lab
    from headcoop.paper.plan import Plan

    _prepare_paper_dirs(args)
    plan = Plan.quick() if args.quick else Plan.paper()
    if args.search is not None:
        _run_search(args, plan)
        return
    result = run_lab(
        plan, args.cache, progress=not args.quiet, device=args.device, workers=args.workers
    )
    summary = write_lab(result, args.out, png=not args.no_png)
    print(
        f"claims lab: {Path(args.out) / 'claims.html'} ({sum(result.seconds.values()):.0f} s; "
        f"selected setting: {summary['selected']['setting']}). {summary['png']}"
    )


def add_cooperation(commands: Any) -> None:
    cooperation = commands.add_parser(
        "cooperation",
        help="do heads compete or cooperate? interactions of heads across every task",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        description="Train (or reuse) models of every registered task in its usual shape over "
        "several seeds, analyse them, and read the interactions of their heads: writes "
        "OUT/cooperation.csv (per task, seed and metric: the share of |dividends| at each set "
        "size, the mean pair interaction, the cooperation index and the verdict), "
        "OUT/summary.json and OUT/cooperation.html. Models and analyses are cached under OUT: "
        "a rerun only reads, an interrupted one resumes.",
    )
    cooperation.add_argument("--out", default="runs/cooperation", help="the study's directory")
    cooperation.add_argument("--seeds", type=Rule(int, 1, 100).parse, default=3,
                             help="models per task")  # fmt: skip
    cooperation.add_argument("--tasks", nargs="+", default=None, metavar="TASK",
                             help="the tasks (default: every one with a usual shape)")  # fmt: skip
    cooperation.add_argument(
        "--quick", action="store_true", help="small splits, two epochs: checks the pipeline"
    )
    cooperation.set_defaults(run=_owning_out(run_cooperation))


def run_cooperation(args: argparse.Namespace) -> None:
    from headcoop.cooperation.study import SHAPES, cooperation_study

    log_progress("headcoop.cooperation")
    tasks = tuple(args.tasks or SHAPES)
    table = cooperation_study(args.out, args.seeds, tasks, fast=args.quick)
    counts = table.groupby("verdict").size().to_dict() if len(table) else {}
    print(
        f"cooperation: {Path(args.out) / 'cooperation.html'} ({len(tasks)} tasks x "
        f"{args.seeds} seeds; verdicts over metrics and seeds: {counts})"
    )


def add_explore(commands: Any) -> None:
    explorer = commands.add_parser(
        "explore",
        help="one interactive page per model: every head's numbers, circuits and partners",
        description="Write OUT/explorer.html, a self-contained page (no network) for any "
        "checkpoint `analyze` reads: a grid of heads (sortable), and for the head clicked (or "
        "named in the address, #L0H3) its numbers as in heads.csv, QK and OV circuits, "
        "margins, outputs with the value vectors, strongest partners by pair interaction and, "
        "where they exist, its pattern-intervention curve, its course over the saved epochs "
        "and its succession scores. The analysis it shows is saved beside it (reused when it "
        "is of the same weights).",
    )
    add_checkpoint(explorer)
    add_device(explorer)
    explorer.add_argument("--serve", action="store_true",
                          help="then serve the page on 127.0.0.1 until Ctrl-C")  # fmt: skip
    explorer.add_argument("--port", type=Rule(int, 0, 65535).parse, default=0,
                          help="the port for --serve (0: any free one)")  # fmt: skip
    explorer.set_defaults(run=_owning_out(run_explore))


def run_explore(args: argparse.Namespace) -> None:
    from headcoop.explore.build import explore

    log_progress("headcoop.explore")
    page = explore(args.checkpoint, args.out, chosen_task(args), args.device)
    size = page.stat().st_size / 1e6
    print(f"explorer: {page} ({size:.2f} MB)")
    if args.serve:
        from headcoop.explore.serve import serve

        serve(page, args.port)


def _run_search(args: argparse.Namespace, plan: Any) -> None:
    import os
    import time

    from headcoop.paper.search import SearchRun, search
    from headcoop.paper.search_report import write_search

    clock = time.perf_counter()
    workers = args.workers or (os.cpu_count() or 1)
    run = SearchRun(args.batch, workers, args.executor, args.device, not args.quiet)
    study = search(plan, args.cache, args.out, args.search, run)
    summary = write_search(study, plan, args.out, time.perf_counter() - clock)
    chosen = summary["selected"]
    print(
        f"claims search: {Path(args.out) / 'search.html'} ({summary['trials']} trials, "
        f"{summary['seconds']:.0f} s; selected trial {chosen['trial']}: {chosen['held']:.2f} "
        f"calibration claims per seed at {chosen['cost']:.1f} models)"
    )
