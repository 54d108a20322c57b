"""Train (or reuse) a model of every registered task per seed, analyse it, and read its
interactions into `cooperation.csv`: per task, seed and metric, the share of |dividends| at
each set size, the mean pair interaction, the cooperation index and the verdict.

Everything is cached under the study's directory (``{task}/seed_{k}/model`` and
``.../analysis``, each written whole): a rerun only reads, an interrupted one resumes at the
first model or analysis it lacks.
"""

import contextlib
import json
import logging
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import pandas as pd

from headcoop.config import ModelConfig, TrainConfig
from headcoop.cooperation.cooperation_report import write_page
from headcoop.errors import HeadcoopError
from headcoop.files import write_atomic
from headcoop.heads.analysis import HeadAnalysis
from headcoop.runinfo import machine
from headcoop.tasks.count01 import QUICK_SPLITS

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Shape:
    """A task in its usual shape: the model and the training that solve it."""

    task: str
    model: ModelConfig
    train: TrainConfig
    params: dict[str, Any] = field(default_factory=dict)


NO_NOISE = {"dropout": 0.0, "lr": 3e-3, "checkpoint_every": 1000}
SHAPES = {
    "count01": Shape("count01", ModelConfig(), TrainConfig(checkpoint_every=1000)),
    "plurality": Shape("plurality", ModelConfig(), TrainConfig(epochs=40, checkpoint_every=1000)),
    "histogram": Shape(
        "histogram", ModelConfig(n_heads=8, d_head=4), TrainConfig(epochs=20, **NO_NOISE)
    ),
    "induction": Shape(
        "induction",
        ModelConfig(
            d_model=32, n_heads=4, d_head=8, layernorm=False, n_layers=2, positional=True, n_ctx=17
        ),
        TrainConfig(epochs=12, **NO_NOISE),
    ),
    "successor": Shape(
        "successor",
        ModelConfig(d_model=64, n_heads=4, d_head=16, layernorm=False),
        TrainConfig(epochs=20, **NO_NOISE),
    ),
}
"""Count01: the paper's model; induction and successor: the models of ``make trace`` and
``make successor``; Plurality as Count01; Histogram with 8 heads (full sequences)."""

ANALYSIS_BUDGET = 120.0
"""Seconds the pass over all sets of one model may take by its estimate (`analyze`'s budget):
where s-acc over all sets would take longer, its game is left out for that model."""


def quick(shape: Shape) -> Shape:
    """``shape`` on small splits for two epochs: checks the pipeline in seconds."""
    params = {"splits": QUICK_SPLITS} if shape.task == "count01" else {"size": 300}
    return replace(shape, params=params, train=replace(shape.train, epochs=2))


def cooperation_study(
    out: str | Path, seeds: int = 3, tasks: tuple[str, ...] = tuple(SHAPES), fast: bool = False
) -> pd.DataFrame:
    """Every task's models (``seeds`` each), analysed; writes cooperation.csv, summary.json
    (shapes, machine, seconds) and cooperation.html into ``out``, and returns the table."""
    unknown = sorted(set(tasks) - set(SHAPES))
    if unknown:
        known = ", ".join(SHAPES)
        raise HeadcoopError(f"no usual shape for task(s) {', '.join(unknown)} (known: {known})")
    out, rows, clock = Path(out), [], time.perf_counter()
    for name in tasks:
        shape = quick(SHAPES[name]) if fast else SHAPES[name]
        for seed in range(seeds):
            found = _analysis(shape, seed, out / name / f"seed_{seed}")
            rows += cooperation_rows(found, name, seed)
    table = pd.DataFrame(rows)
    write_atomic(out / "cooperation.csv", table.to_csv(index=False))
    about = _about(tasks, seeds, fast, time.perf_counter() - clock)
    write_atomic(out / "summary.json", json.dumps(about, indent=2) + "\n")
    write_page(table, out, about)
    return table


def _about(tasks: tuple[str, ...], seeds: int, fast: bool, seconds: float) -> dict[str, Any]:
    """What produced the study: its shapes, the machine, and how long it took."""
    shapes = {name: quick(SHAPES[name]) if fast else SHAPES[name] for name in tasks}
    return {
        "seeds": seeds,
        "quick": fast,
        "shapes": {
            name: {"model": asdict(s.model), "train": s.train.key_dict(), "task": s.params}
            for name, s in shapes.items()
        },
        "machine": machine(),
        "seconds": round(seconds, 1),
    }


def _analysis(shape: Shape, seed: int, where: Path) -> HeadAnalysis:
    """The saved analysis of one seed's model, trained and analysed first if missing."""
    from headcoop.heads.analyze import analyze
    from headcoop.tasks import make_task
    from headcoop.training.trainer import train

    with contextlib.suppress(HeadcoopError):  # none yet, or not whole: made again
        return HeadAnalysis.load(where / "analysis")
    task = make_task(shape.task, **shape.params)
    if not (where / "model" / "final").exists():
        log.info("training %s, seed %d", shape.task, seed)
        cfg = replace(shape.train, seed=seed)
        train(task, shape.model, cfg, out=where / "model", overwrite=True)
    log.info("analysing %s, seed %d", shape.task, seed)
    found = analyze(where / "model", task, subsets_budget=ANALYSIS_BUDGET)
    found.save(where / "analysis", seed=seed, task_name=shape.task)
    return HeadAnalysis.load(where / "analysis")


ERROR_BARS = (
    "index_low",
    "index_high",
    "null_index",
    "null_low",
    "null_high",
    "excess",
    "excess_low",
    "excess_high",
    "excess_verdict",
)
"""cooperation.csv's last columns, from the analysis's summary (`headcoop.heads.games`)."""


def cooperation_rows(found: HeadAnalysis, task: str, seed: int) -> list[dict[str, Any]]:
    """cooperation.csv's rows of one analysed model: one per metric whose interactions were
    measured (exact) or estimated (no shares by size then), last the bootstrap interval of its
    cooperation index over test examples and the null model beside it (`ERROR_BARS`; empty
    where not measured)."""
    if found.interactions is None:
        return []
    n_heads = len(found.heads_frame())
    spectrum = found.summary.get("interaction_spectrum", {})
    rows = []
    for verdict in found.verdicts().to_dict("records"):
        row = {"task": task, "seed": seed, "n_heads": n_heads, **verdict}
        row["exact"] = verdict["metric"] in spectrum
        row |= _shares(spectrum.get(verdict["metric"]), n_heads)
        errors = found.summary.get("cooperation", {}).get(verdict["metric"], {})
        row |= {k: errors.get(k) for k in ERROR_BARS}
        rows.append(row)
    return rows


def _shares(spectrum: dict[str, list[float]] | None, n_heads: int) -> dict[str, float]:
    """The share of the dividends' absolute mass at each set size 1..n (NaN if estimated)."""
    if spectrum is None:
        return {f"share_size_{k}": float("nan") for k in range(1, n_heads + 1)}
    mass = sum(spectrum["sum_abs"][1:]) or 1.0
    return {f"share_size_{k}": spectrum["sum_abs"][k] / mass for k in range(1, n_heads + 1)}
