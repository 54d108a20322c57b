"""The claims lab as a search: an Optuna study over every training choice at once.

Two objectives: the calibration claims held per seed (up) and the training spent, in models'
worth (down: each seed's epochs over the lab's default epochs). Trials are asked in batches;
each trial's seeds train as one stack through `headcoop.training.sweep.run_sweep` (cached by
configuration, so a setting the grid or an earlier trial trained costs nothing), the stacks
of a batch in worker processes or as submitit jobs. The study lives in an Optuna journal file
in the lab's directory, named by the plan (two plans never mix): several processes may share
it, and a search that was killed resumes where it stopped, the trials it left running asked
again. The grid's settings whose models are cached seed the study as finished trials.
"""

import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from headcoop.device import Device
from headcoop.files import config_key
from headcoop.paper.claims import CLAIMS
from headcoop.paper.lab import (
    Setting,
    claim_rows,
    defaults,
    one_factor_settings,
    pending_setting,
    setting,
    train_settings,
)
from headcoop.paper.plan import QUICK_LAB, Plan

log = logging.getLogger(__name__)

JOURNAL = "study.journal"
"""The Optuna journal in the lab's directory."""
SIGNIFICANT = 3
"""Significant digits of a continuous choice: nearby trials share cached models."""


@dataclass(frozen=True)
class Space:
    """The search space: each factor's range (low, high, log) or its choices."""

    floats: dict[str, tuple[float, float, bool]] = field(default_factory=dict)
    integers: dict[str, tuple[int, int]] = field(default_factory=dict)
    choices: dict[str, tuple[Any, ...]] = field(default_factory=dict)

    def distributions(self) -> dict[str, Any]:
        import optuna.distributions as d

        return (
            {k: d.FloatDistribution(lo, hi, log=log) for k, (lo, hi, log) in self.floats.items()}
            | {k: d.IntDistribution(lo, hi) for k, (lo, hi) in self.integers.items()}
            | {k: d.CategoricalDistribution(v) for k, v in self.choices.items()}
        )

    def contains(self, values: dict[str, Any]) -> bool:
        """Whether every factor's value lies in the space."""
        inside = [lo <= values[k] <= hi for k, (lo, hi, _) in self.floats.items()]
        inside += [lo <= values[k] <= hi for k, (lo, hi) in self.integers.items()]
        inside += [values[k] in v for k, v in self.choices.items()]
        return all(inside)


PAPER_SPACE = Space(
    floats={
        "lr": (1e-4, 3e-2, True),
        "weight_decay": (1e-3, 1.0, True),
        "dropout": (0.0, 0.3, False),
        "init_scale": (0.25, 4.0, True),
    },
    integers={"epochs": (20, 200), "batch_size": (32, 256)},
    choices={
        "optimizer": ("adamw", "adam", "sgd"),
        "layernorm": (True, False),
        "lr_schedule": ("cosine", "constant"),
        "init": ("transformer_lens", "pytorch"),
    },
)
"""Every factor of the grid, continuous where it is continuous, over the grid's ranges
(batches of 32 to 256 examples: smaller ones cost many more steps than the objective counts)."""
QUICK_SPACE = Space(
    floats={"lr": (1e-3, 1e-2, True), "weight_decay": (1e-2, 1.0, True)},
    integers={"epochs": (2, 4)},
    choices={"layernorm": (True, False)},
)
"""The quick lab's factors (and its learning rate): checks the pipeline in seconds."""


def rounded(value: float) -> float:
    """``value`` to `SIGNIFICANT` significant digits."""
    if value == 0:
        return 0.0
    return round(value, SIGNIFICANT - 1 - math.floor(math.log10(abs(value))))


def trial_setting(plan: Plan, params: dict[str, Any]) -> Setting:
    """The setting a trial's parameters give (continuous ones rounded), as changes from the
    lab's default."""
    values = {k: rounded(v) if isinstance(v, float) else v for k, v in params.items()}
    default = defaults(plan)
    return setting({k: v for k, v in values.items() if v != default.get(k)})


def cost(plan: Plan, s: Setting) -> float:
    """Models' worth of training of a setting: each seed's epochs over the default epochs."""
    _, train = s.configs(plan)
    return len(plan.lab.seeds) * train.epochs / plan.lab_train().epochs


def judged(plan: Plan, s: Setting, evidence: list) -> dict[str, Any]:
    """A setting's outcome: calibration claims held per seed, each claim's share of seeds."""
    pairs = zip(plan.lab.seeds, evidence, strict=True)
    rows = pd.DataFrame([r for seed, e in pairs for r in claim_rows(s.name, seed, e)])
    shares = rows.groupby("claim")["holds"].mean()
    calibration = [c.id for c in CLAIMS if c.calibration]
    return {
        "held": float(shares[calibration].sum()),
        "cost": cost(plan, s),
        "shares": {c.id: float(shares[c.id]) for c in CLAIMS},
    }


def open_study(plan: Plan, out: Path) -> Any:
    """The plan's study in the journal of ``out`` (made on first use): two objectives, a
    multivariate TPE sampler seeded by the number of trials the study already holds, so that
    a search extended or resumed in a new process asks new settings (a fixed seed would ask
    the first ones again), and the same history asks the same ones."""
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    out.mkdir(parents=True, exist_ok=True)
    storage = JournalStorage(JournalFileBackend(str(out / JOURNAL)))
    study = optuna.create_study(
        study_name=f"claims-{config_key(plan)}",
        storage=storage,
        load_if_exists=True,
        directions=["maximize", "minimize"],
    )
    seed = len(study.get_trials(deepcopy=False))
    study.sampler = optuna.samplers.TPESampler(seed=seed, multivariate=True, constant_liar=True)
    return study


def ask_again_what_was_left_running(study: Any) -> int:
    """Trials a killed search left running: failed, their parameters asked again first (their
    models, where trained, are in the cache). Returns how many."""
    from optuna.trial import TrialState

    stale = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    for trial in stale:
        study.enqueue_trial(trial.params, user_attrs={"source": "search"})
        study.tell(trial.number, state=TrialState.FAIL)
    return len(stale)


def seed_from_grid(study: Any, plan: Plan, space: Space, task: Any, sweep_dir: Path) -> int:
    """Add the grid's one-factor settings whose models are cached (and whose values lie in the
    space) as finished trials, once. Returns how many were added."""
    import optuna

    known = {t.user_attrs.get("setting") for t in study.get_trials(deepcopy=False)}
    distributions, added = space.distributions(), 0
    for s in one_factor_settings(plan):
        model, train = s.configs(plan)
        values = {
            k: model.layernorm if k == "layernorm" else getattr(train, k) for k in distributions
        }
        unknown = s.name not in known and space.contains(values)
        if not unknown or pending_setting(plan, s, task, sweep_dir):
            continue
        (evidence,) = train_settings(plan, [s], task, sweep_dir, 1, False, None)
        outcome = judged(plan, s, evidence)
        trial = optuna.trial.create_trial(
            params=values,
            distributions=distributions,
            values=[outcome["held"], outcome["cost"]],
            user_attrs={"source": "grid", "setting": s.name, **_attrs(outcome)},
        )
        study.add_trial(trial)
        added += 1
    return added


def _attrs(outcome: dict[str, Any]) -> dict[str, Any]:
    return {"held": outcome["held"], "cost": outcome["cost"], "shares": outcome["shares"]}


@dataclass(frozen=True)
class SearchRun:
    """How to run the trials: batch size, worker processes, submitit executor, device."""

    batch: int = 4
    workers: int = 1
    executor: str | None = None
    device: Device = None
    progress: bool = False


def search(plan: Plan, cache: str | Path, out: str | Path, n_trials: int, run: SearchRun) -> Any:
    """Run the plan's study until it holds ``n_trials`` finished search trials (those of an
    earlier run count); returns the study."""
    space = QUICK_SPACE if plan.lab == QUICK_LAB else PAPER_SPACE
    out, task = Path(out), plan.make_task()
    sweep_dir = Path(cache) / "claims"
    study = open_study(plan, out)
    if ask_again_what_was_left_running(study):
        log.info("asking again the trials a stopped search left running")
    if seeded := seed_from_grid(study, plan, space, task, sweep_dir):
        log.info("%d grid settings seed the study", seeded)
    while (done := _finished(study)) < n_trials:
        trials = [study.ask(space.distributions()) for _ in range(min(run.batch, n_trials - done))]
        settings = [trial_setting(plan, t.params) for t in trials]
        log.info("trials %d-%d of %d", done + 1, done + len(trials), n_trials)
        found = train_settings(
            plan, settings, task, sweep_dir, run.workers, run.progress, run.device, run.executor
        )
        for trial, s, evidence in zip(trials, settings, found, strict=True):
            outcome = judged(plan, s, evidence)
            for key, value in {"source": "search", "setting": s.name, **_attrs(outcome)}.items():
                trial.set_user_attr(key, value)
            study.tell(trial, [outcome["held"], outcome["cost"]])
    return study


def _finished(study: Any) -> int:
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    return sum(t.user_attrs.get("source") == "search" for t in trials)
