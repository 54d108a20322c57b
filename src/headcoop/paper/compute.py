"""The measurements behind every figure, each computed once and cached as a file.

`FigureData` trains what the plan needs and writes each result (CSV or JSON) into its
directory, named by the plan's key; a result that is already there is read back instead of
recomputed, and training resumes from its last saved state. So an interrupted `make figures`
picks up where it stopped and a rerun only redraws.
"""

import contextlib
import io
import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from headcoop.compat import Model
from headcoop.config import ModelConfig
from headcoop.device import Device, resolve_device
from headcoop.engine.run import evaluate
from headcoop.errors import HeadcoopError
from headcoop.files import config_key, read_checked, write_atomic, write_checked
from headcoop.heads.analysis import HeadAnalysis
from headcoop.heads.analyze import analyze
from headcoop.heads.dynamics import random_head_s_acc, trajectory
from headcoop.heads.interventions import intervention_curves
from headcoop.loading.checkpoint import load_checkpoint
from headcoop.metrics.single_heads import measure_models_liblinear
from headcoop.paper import head_space
from headcoop.paper.evidence import (
    SNAPSHOT_EPOCH,
    Evidence,
    evidence_from,
    evidence_subsets,
    intervention_evidence,
)
from headcoop.paper.minimal import minimal_solution
from headcoop.paper.plan import Plan, Table1Row
from headcoop.tasks.base import Task
from headcoop.training.sweep import EXAMPLE_ORDER, Experiment, run_sweep, train_stack

log = logging.getLogger(__name__)


def grid_stacks(plan: Plan) -> list[list[Experiment]]:
    """The Fig 2 grid's models, one stack per d_model (its head counts padded to the largest)."""
    return [
        [
            Experiment(replace(plan.model, n_heads=h, d_model=d), seed)
            for h in plan.grid_heads
            for seed in range(plan.grid_seeds)
        ]
        for d in plan.grid_dims
    ]


def table1_stacks(plan: Plan) -> list[list[Experiment]]:
    """Table 1's models (d_head 1, no LayerNorm), one stack per row: a row's models share
    their shape, so nothing is padded, and the stacks spread evenly over sweep workers."""

    def row(r: Table1Row) -> list[Experiment]:
        cfg = ModelConfig(d_model=r.d_model, n_heads=r.n_heads, d_head=1, layernorm=False)
        return [Experiment(cfg, seed) for seed in range(r.n_exps)]

    return [row(r) for r in plan.table1]


class FigureData:
    """Lazily computed, cached measurements for one `Plan`.

    Args:
        plan: what to compute.
        cache: the cache directory. Measurements go to ``<cache>/<plan key>/``; the trained
            models, which are costly, are keyed by their own settings so that other plans
            reuse them: the main models under ``<cache>/main/<key>/``, sweep results in
            ``<cache>/sweeps/results/``.
        progress: show progress bars for long steps.
        device: where models train and are measured (see `headcoop.device`).
        executor: None trains the sweeps on this machine; 'local' or 'slurm' runs each of
            their stacks as a submitit job (`headcoop.training.sweep.run_sweep`).
        workers: processes that train sweep stacks at once without an executor (default: one
            per core on the CPU, one on a GPU).
    """

    def __init__(
        self,
        plan: Plan,
        cache: str | Path,
        progress: bool = False,
        device: Device = None,
        executor: str | None = None,
        workers: int | None = None,
    ) -> None:
        self.plan, self.progress = plan, progress
        self.device, self.executor = resolve_device(device), executor
        self.workers = workers or ((os.cpu_count() or 1) if self.device.type == "cpu" else 1)
        self.task: Task = plan.make_task()
        cache = Path(cache)
        self.root = cache / plan.key()
        main_settings = (
            self.task.to_config(),
            plan.model,
            plan.train,
            plan.main_seeds,
            EXAMPLE_ORDER,
        )
        self.main_dir = cache / "main" / config_key(main_settings)
        self.sweep_dir = cache / "sweeps"
        self.root.mkdir(parents=True, exist_ok=True)
        write_atomic(self.root / "plan.json", json.dumps(plan.to_dict(), indent=2) + "\n")

    # --- the main models -------------------------------------------------------------------

    def main_run(self, seed: int) -> Path:
        """The run directory of the main model with this seed (trained on first use, all main
        seeds side by side, with a checkpoint every epoch)."""
        runs = [self.main_dir / f"seed_{s}" for s in self.plan.main_seeds]
        if not all((run / "final").exists() for run in runs):
            log.info("training the main models (seeds %s)", self.plan.main_seeds)
            experiments = [Experiment(self.plan.model, s) for s in self.plan.main_seeds]
            train_stack(
                self.task,
                experiments,
                self.plan.train,
                self.main_dir / "stack.safetensors",
                runs=runs,
                progress=self.progress,
                device=self.device,
            )
        return self.main_dir / f"seed_{seed}"

    def main_model(self, seed: int) -> Model:
        return load_checkpoint(self.main_run(seed), self.device)[0]

    def analysis(self, seed: int) -> HeadAnalysis:
        """heads, pairs and sets of heads of a main model: all of them for the first seed, the
        claims' sample (`evidence_subsets`) for the others."""
        out = self.root / "analysis" / f"seed_{seed}"
        with contextlib.suppress(HeadcoopError):  # none yet, or not whole: measured again
            return HeadAnalysis.load(out)
        full = seed == self.plan.main_seeds[0]
        log.info("analysing seed %d%s", seed, " (all subsets)" if full else "")
        model = self.main_model(seed)
        subsets = True if full else evidence_subsets(model.cfg.n_heads)
        analyze(model, self.task, subsets=subsets, progress=self.progress).save(out, seed=seed)
        return HeadAnalysis.load(out)

    def evidence(self, seed: int) -> Evidence:
        """What the claims read of a main model (`headcoop.paper.evidence`), from its analysis,
        with its heads' s-acc at epoch `SNAPSHOT_EPOCH` (the last, if training is shorter) from the
        trajectories."""
        path = self.root / "claims" / f"evidence_seed_{seed}.json"
        cached = read_checked(path)
        if cached is not None:
            return Evidence.from_result(json.loads(cached))
        log.info("measuring the claims' evidence of seed %d", seed)
        found = self.analysis(seed)
        curves = intervention_evidence(self.main_model(seed), self.task)
        result = evidence_from(found, curves).to_json()
        runs = self.trajectories()
        run = runs[runs["run"] == seed]
        epoch = int(min(SNAPSHOT_EPOCH, run["epoch"].max()))
        s_acc = run[run["epoch"] == epoch].sort_values("head")["s_acc"].tolist()
        result["snapshots"] = {str(epoch): {"s_acc": s_acc}}
        write_checked(path, json.dumps(result) + "\n")
        return Evidence.from_result(result)

    # --- per-figure measurements of the first main model -----------------------------------

    def logits(self) -> pd.DataFrame:
        """Fig 1: each single head's logits of the decision tokens and [EOS] (head-only), by
        current token and true next token, on a sample of the test split."""
        model = self.main_model(self.plan.main_seeds[0])
        n = self.plan.scatter_points
        make = partial(head_space.single_head_logits, model, self.task, n)
        return self._csv("fig01_head_logits.csv", make, text=("current", "next", "token"))

    def head_outputs(self) -> dict[str, pd.DataFrame]:
        """Figs 6, 7, 15: head outputs of train and test samples, the value vectors of the
        counted tokens and each head's separating line, in each head's output space."""
        model = self.main_model(self.plan.main_seeds[0])
        n, task = self.plan.scatter_points, self.task
        points = partial(head_space.head_output_points, model, task, n)
        values = partial(head_space.value_vectors, model, task, ("0", "1", "2"))
        lines = partial(head_space.separators, model, task)
        return {
            "points": self._csv("fig06_head_outputs.csv", points, text=("class",)),
            "values": self._csv("fig06_values.csv", values, text=("token",)),
            "separators": self._csv("fig06_separators.csv", lines),
        }

    def interventions(self) -> pd.DataFrame:
        """Figs 8, 9: s-acc of the first main model's heads under fixed attention ratios."""

        def make() -> pd.DataFrame:
            model = self.main_model(self.plan.main_seeds[0])
            return intervention_curves(model, self.task, progress=self.progress)

        return self._csv("fig08_09_interventions.csv", make)

    # --- training dynamics -----------------------------------------------------------------

    def trajectories(self) -> pd.DataFrame:
        """Figs 10, 14 (right): per-epoch head s-acc, head weight and accuracy of every main
        model."""

        def make() -> pd.DataFrame:
            frames = []
            for seed in self.plan.main_seeds:
                run = self.main_run(seed)
                path = trajectory(run, self.task, progress=self.progress, device=self.device)
                frames.append(path.to_pandas(run=seed))
            return pd.concat(frames, ignore_index=True)

        return self._csv("fig10_14_trajectories.csv", make)

    def random_heads(self) -> pd.DataFrame:
        """Fig 14 (left): s-acc of heads of freshly initialised main-shaped models."""

        def make() -> pd.DataFrame:
            s_acc = random_head_s_acc(
                self.task,
                self.plan.model,
                self.plan.random_heads,
                progress=self.progress,
                device=self.device,
            )
            return pd.DataFrame({"s_acc": s_acc.tolist()})

        return self._csv("fig14_random_heads.csv", make)

    # --- sweeps ----------------------------------------------------------------------------

    def grid(self) -> pd.DataFrame:
        """Fig 2: test accuracy of every (heads, d_model, seed) of the grid."""
        return self._csv(
            "fig02_grid.csv", lambda: _sweep_frame(self._sweep(grid_stacks(self.plan)))
        )

    def table1(self) -> pd.DataFrame:
        """Table 1: s-acc of every head of the d_head = 1 models without LayerNorm, exact and
        as LinearSVC's defaults give it (``s_acc_liblinear``; its own sweep directory, since
        one directory holds the results of one measure)."""

        def make() -> pd.DataFrame:
            stacks = table1_stacks(self.plan)
            where = self.root / "table1_sweeps"
            return _sweep_frame(self._sweep(stacks, measure_models_liblinear, where))

        return self._csv("table1_models.csv", make)

    # --- appendix A ------------------------------------------------------------------------

    def minimal(self) -> pd.DataFrame:
        """Appendix A: the hand-set minimal model's test accuracy by N, and its accuracy when
        the test examples get many more 2s."""

        def make() -> pd.DataFrame:
            test = self.task.split("test")
            rows = []
            for n in self.plan.minimal_N:
                model = minimal_solution(N=n)
                for n2 in (None, 1_000, 10_000, 100_000):
                    examples = (
                        test if n2 is None else test.clone().index_fill_(1, torch.tensor([2]), n2)
                    )
                    result = evaluate(model, self.task, examples)
                    rows.append(
                        {
                            "N": n,
                            "n2": "test split" if n2 is None else n2,
                            "answer_accuracy": result["answer"],
                            "eos_accuracy": result["eos"],
                        }
                    )
            return pd.DataFrame(rows)

        return self._csv("appendix_a_minimal.csv", make)

    # --- helpers ---------------------------------------------------------------------------

    def _sweep(
        self, stacks: list[list[Experiment]], measure: Any = None, where: Path | None = None
    ) -> list[dict[str, Any]]:
        return run_sweep(
            self.task,
            stacks,
            self.plan.train,
            where or self.sweep_dir,
            self.progress,
            device=self.device,
            executor=self.executor,
            measure=measure,
            workers=self.workers,
        )

    def _csv(
        self, name: str, make: Callable[[], pd.DataFrame], text: tuple[str, ...] = ()
    ) -> pd.DataFrame:
        """Read ``name`` from the cache, or make it and write it there atomically. The
        ``text`` columns hold token names, read back as strings (not as numbers)."""
        path = self.root / name
        cached = read_checked(path)
        if cached is not None:
            return pd.read_csv(io.BytesIO(cached), dtype={column: str for column in text})
        log.info("measuring %s", name)
        frame = make()
        write_checked(path, frame.to_csv(index=False))
        return frame


def _sweep_frame(results: list[dict[str, Any]]) -> pd.DataFrame:
    """One row per head of every swept model."""
    rows = []
    for model in results:
        shape = {k: model[k] for k in ("d_model", "n_heads", "d_head", "layernorm", "seed")}
        for head, s_acc in enumerate(model["s_acc"]):
            rows.append(
                {**shape, "test_accuracy": model["test_accuracy"], "head": head, "s_acc": s_acc}
            )
            if "s_acc_liblinear" in model:
                rows[-1]["s_acc_liblinear"] = model["s_acc_liblinear"][head]
    return pd.DataFrame(rows)


MEASUREMENTS: tuple[tuple[str, Callable[[FigureData], Any]], ...] = (
    ("main models and analyses", lambda d: [d.analysis(s) for s in d.plan.main_seeds]),
    ("single heads' logits", FigureData.logits),
    ("head outputs", FigureData.head_outputs),
    ("interventions", FigureData.interventions),
    ("minimal solution", FigureData.minimal),
    ("random heads", FigureData.random_heads),
    ("trajectories", FigureData.trajectories),
    ("claims' evidence", lambda d: [d.evidence(s) for s in d.plan.main_seeds]),
    ("Fig 2 grid", FigureData.grid),
    ("Table 1", FigureData.table1),
)
"""Every measurement the figures need, by stage, in the order that fails fastest."""


def measure_all(data: FigureData) -> dict[str, float]:
    """Compute (or read from the cache) every measurement; the wall time of each stage."""
    seconds = {}
    for stage, measure in MEASUREMENTS:
        clock = time.perf_counter()
        measure(data)
        seconds[stage] = round(time.perf_counter() - clock, 1)
        log.info("%s: %.1f s", stage, seconds[stage])
    return seconds
