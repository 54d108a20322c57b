"""The claims lab: train a grid of training choices over seeds, and judge every claim on every
model.

The grid is a one-factor-at-a-time sweep around the default setting (every level of every
factor, the others at their defaults), then a full factorial over the factors that move the
calibration claims most, each at its default and at its best level. Each setting's seeds train
as one stack through `headcoop.training.sweep.run_sweep`, which caches every model's evidence
by its configuration: a rerun only judges, an interrupted run resumes, and a setting shared
with an earlier grid is not trained again.
"""

import itertools
import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pandas as pd

from headcoop.config import ModelConfig, TrainConfig
from headcoop.device import Device, resolve_device
from headcoop.paper.claims import CLAIMS, Claim
from headcoop.paper.evidence import SNAPSHOT_EPOCH, Evidence, Reading, measure_evidence
from headcoop.paper.plan import Plan
from headcoop.tasks.base import Task
from headcoop.training.jobs import run_jobs
from headcoop.training.sweep import Experiment, by_cost, pending_stacks, run_stack, run_sweep
from headcoop.training.workers import run_workers

log = logging.getLogger(__name__)

DEFAULT = "default"


@dataclass(frozen=True)
class Setting:
    """One combination of training choices: a name, and the values of the factors that differ
    from the default (``changes``, factor -> value)."""

    name: str
    changes: tuple[tuple[str, Any], ...] = ()

    def values(self, plan: Plan) -> dict[str, Any]:
        """Every factor's value under this setting."""
        return {**defaults(plan), **dict(self.changes)}

    def configs(self, plan: Plan) -> tuple[ModelConfig, TrainConfig]:
        """The model shape and training settings of this setting."""
        values = self.values(plan)
        model = replace(plan.model, layernorm=values.pop("layernorm"))
        return model, replace(plan.lab_train(), **values)

    def stack(self, plan: Plan) -> tuple[list[Experiment], TrainConfig]:
        """This setting's models, one per seed of the lab (trained as one stack), and their
        training settings."""
        model, train = self.configs(plan)
        return [Experiment(model, seed) for seed in plan.lab.seeds], train


def setting(changes: dict[str, Any]) -> Setting:
    """The setting with these changes from the default, named by them ('default' if none)."""
    name = " ".join(f"{k}={v}" for k, v in changes.items()) or DEFAULT
    return Setting(name, tuple(changes.items()))


def defaults(plan: Plan) -> dict[str, Any]:
    """Every factor's default value."""
    train = plan.lab_train()
    return {
        name: plan.model.layernorm if name == "layernorm" else getattr(train, name)
        for name, _ in plan.lab.factors
    }


def one_factor_settings(plan: Plan) -> list[Setting]:
    """The default, then every other level of every factor, one factor at a time."""
    default = defaults(plan)
    return [setting({})] + [
        setting({name: level})
        for name, levels in plan.lab.factors
        for level in levels
        if level != default[name]
    ]


def factorial_settings(plan: Plan, effects: pd.DataFrame) -> list[Setting]:
    """The full factorial over the ``plan.lab.factorial`` factors that move the calibration claims
    most, each at its default and at the level that holds the most calibration claims
    (``effects`` from `factor_effects`); the settings not already one factor at a time."""
    best = effects.sort_values("gain", ascending=False).drop_duplicates("factor")
    chosen = best[best["gain"] > 0].head(plan.lab.factorial)
    default = defaults(plan)
    options = [
        ((f, default[f]), (f, level))
        for f, level in zip(chosen["factor"], chosen["level"], strict=True)
    ]
    settings = []
    for combination in itertools.product(*options):
        changes = {f: v for f, v in combination if v != default[f]}
        if len(changes) > 1:
            settings.append(setting(changes))
    return settings


@dataclass
class LabResult:
    """What the lab found: one row per model and claim (``claims``), the settings, and the
    wall time of each stage."""

    plan: Plan
    settings: list[Setting]
    kinds: dict[str, str]
    claims: pd.DataFrame
    seconds: dict[str, float]
    device: str
    workers: int

    def shares(self) -> pd.DataFrame:
        """Share of seeds where each claim holds: settings x claims, in grid order."""
        table = self.claims.pivot_table(index="setting", columns="claim", values="holds")
        return table.loc[[s.name for s in self.settings], [c.id for c in CLAIMS]]

    def calibration_held(self) -> pd.Series:
        """Mean number of calibration claims held per seed, by setting."""
        calibration = [c.id for c in CLAIMS if c.calibration]
        return self.shares()[calibration].sum(axis=1)

    def selected(self) -> Setting:
        """The setting that holds the most calibration claims per seed (ties: fewer changes
        from the default, then grid order)."""
        held = self.calibration_held()
        order = {s.name: k for k, s in enumerate(self.settings)}
        return max(
            self.settings, key=lambda s: (round(held[s.name], 9), -len(s.changes), -order[s.name])
        )


def run_lab(
    plan: Plan,
    cache: str | Path,
    progress: bool = False,
    device: Device = None,
    workers: int | None = None,
) -> LabResult:
    """Train and measure every setting of the grid (cached in ``cache``) and judge every claim
    on every model. ``workers`` processes train the settings of a stage at once (default: one
    per core on the CPU, one on a GPU; see `headcoop.training.workers.run_workers`)."""
    device = resolve_device(device)
    workers = workers or ((os.cpu_count() or 1) if device.type == "cpu" else 1)
    task = plan.make_task()
    sweep_dir = Path(cache) / "claims"  # its results hold evidence, not the figures' sweeps'
    seconds: dict[str, float] = {}

    def judge(settings: Sequence[Setting], stage: str) -> pd.DataFrame:
        clock = time.perf_counter()
        found = train_settings(plan, settings, task, sweep_dir, workers, progress, device)
        rows = []
        for s, evidence in zip(settings, found, strict=True):
            for seed, one in zip(plan.lab.seeds, evidence, strict=True):
                rows += claim_rows(s.name, seed, one)
        seconds[stage] = round(time.perf_counter() - clock, 1)
        return pd.DataFrame(rows)

    one_factor = one_factor_settings(plan)
    claims = judge(one_factor, "one factor at a time")
    effects = factor_effects(plan, one_factor, claims, calibration_only=True)
    factorial = factorial_settings(plan, effects)
    claims = pd.concat([claims, judge(factorial, "factorial")], ignore_index=True)
    kinds = {s.name: "one factor" for s in one_factor} | {s.name: "factorial" for s in factorial}
    kinds[DEFAULT] = DEFAULT
    settings = one_factor + factorial
    return LabResult(plan, settings, kinds, claims, seconds, str(device), workers)


def train_settings(
    plan: Plan,
    settings: Sequence[Setting],
    task: Task,
    sweep_dir: Path,
    workers: int,
    progress: bool,
    device: Device,
    executor: str | None = None,
) -> list[list[Evidence]]:
    """Each setting's evidence, seed by seed. The settings without results train first:
    ``workers`` at once, or each as a submitit job under ``executor`` ('local', 'slurm');
    with one worker, in turn in this process."""
    calls = []
    for s in settings:
        stack, train = s.stack(plan)
        if pending_stacks(task, [stack], train, sweep_dir):
            calls.append((task, stack, train, sweep_dir))
    options = {"device": device, "measure": measure_evidence, "snapshots": (SNAPSHOT_EPOCH,)}
    if executor is not None and calls:
        run_jobs(run_stack, executor, calls, options, sweep_dir)
    elif workers > 1 and len(calls) > 1:
        run_workers(run_stack, min(workers, len(calls)), by_cost(calls), options, progress)
    found = []
    for k, s in enumerate(settings):
        log.info("setting %d of %d: %s", k + 1, len(settings), s.name)
        found.append(_train_setting(plan, s, task, sweep_dir, progress, device))
    return found


def pending_setting(plan: Plan, s: Setting, task: Task, sweep_dir: Path) -> bool:
    """Whether some seed of the setting has no result in ``sweep_dir`` yet."""
    stack, train = s.stack(plan)
    return bool(pending_stacks(task, [stack], train, sweep_dir))


def _train_setting(
    plan: Plan, s: Setting, task: Task, sweep_dir: Path, progress: bool, device: Device
) -> list[Evidence]:
    stack, train = s.stack(plan)
    results = run_sweep(
        task,
        [stack],
        train,
        sweep_dir,
        progress,
        device=device,
        measure=measure_evidence,
        snapshots=(SNAPSHOT_EPOCH,),
    )
    return [Evidence.from_result(r) for r in results]


def claim_rows(setting_name: str, seed: int, evidence: Evidence) -> list[dict[str, Any]]:
    """One row per claim: ``setting, seed, claim, statistic, paper, holds`` and, for claims on
    single heads' or pairs' s-acc, ``holds_liblinear`` (under LinearSVC's defaults)."""
    rows = []
    for claim in CLAIMS:
        value = claim.value(evidence)
        rows.append(
            {
                "setting": setting_name,
                "seed": seed,
                "claim": claim.id,
                "statistic": value,
                "paper": claim.paper,
                "holds": claim.holds(value),
            }
        )
        if claim.rests_on_s_acc:
            liblinear = Reading(liblinear=True)
            rows[-1][f"holds{liblinear.suffix}"] = claim.holds(claim.value(evidence, liblinear))
    return rows


def factor_effects(
    plan: Plan,
    settings: Sequence[Setting],
    claims: pd.DataFrame,
    calibration_only: bool = False,
) -> pd.DataFrame:
    """How much each single-factor change moves each claim: one row per (claim, factor,
    level), with the share of seeds holding at the default and at that level, their
    difference (``effect``), and for the calibration claims together, ``gain``: the change in
    the mean number of them held per seed."""
    shares = claims.pivot_table(index="setting", columns="claim", values="holds")
    chosen = [c for c in CLAIMS if c.calibration or not calibration_only]
    calibration = [c.id for c in CLAIMS if c.calibration]
    rows = []
    for s in settings:
        if len(s.changes) != 1:
            continue
        ((factor, level),) = s.changes
        gain = float(shares.loc[s.name, calibration].sum() - shares.loc[DEFAULT, calibration].sum())
        for claim in chosen:
            at_default, at_level = shares.loc[DEFAULT, claim.id], shares.loc[s.name, claim.id]
            rows.append(
                {
                    "claim": claim.id,
                    "factor": factor,
                    "level": level,
                    "share_default": at_default,
                    "share_level": at_level,
                    "effect": at_level - at_default,
                    "gain": gain,
                }
            )
    return pd.DataFrame(rows)


def deciding_factors(effects: pd.DataFrame) -> pd.DataFrame:
    """Per claim, the factor (and level) that moves it most, with the size of the effect
    (factor and level 'none' where no single change moves it)."""
    largest = effects.assign(size=effects["effect"].abs()).sort_values(
        ["claim", "size"], ascending=[True, False], kind="stable"
    )
    top = largest.drop_duplicates("claim").set_index("claim")
    top.loc[top["size"] == 0, ["factor", "level"]] = "none"
    order = [c.id for c in CLAIMS if c.id in top.index]
    return top.loc[
        order, ["factor", "level", "share_default", "share_level", "effect"]
    ].reset_index()


def robustness(result: LabResult) -> pd.DataFrame:
    """Per claim: the share of all models where it holds, the share of settings where it holds
    for most seeds, and its share of seeds under the default and the selected setting."""
    shares = result.shares()
    selected = result.selected().name
    rows = []
    for claim in CLAIMS:
        column = shares[claim.id]
        rows.append(
            {
                "claim": claim.id,
                "calibration": claim.calibration,
                "share_of_models": float(
                    result.claims[result.claims["claim"] == claim.id]["holds"].mean()
                ),
                "share_of_settings": float((column > 0.5).mean()),
                "default": float(column[DEFAULT]),
                "selected": float(column[selected]),
            }
        )
    return pd.DataFrame(rows)


def claim_table(claims: Sequence[Claim] = CLAIMS) -> pd.DataFrame:
    """The registry as a table: id, section, finding, statistic, paper, band, rationale."""
    return pd.DataFrame(
        [
            {
                "id": c.id,
                "section": c.section,
                "finding": c.finding,
                "statistic": c.statistic,
                "paper": c.paper,
                "holds within": c.band(),
                "rationale": c.rationale,
                "calibration": c.calibration,
            }
            for c in claims
        ]
    )
