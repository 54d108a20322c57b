"""What the claims search writes beside the grid's files: trials.csv, pareto.csv,
importance.csv, selected.json (which `make figures PLAN=calibrated` reads) and search.html,
with the optimisation history and the importances as plotly figures.
"""

import html
import json
import logging
from pathlib import Path
from typing import Any

import pandas as pd
import plotly.graph_objects as go

from headcoop import pages
from headcoop.files import config_key, write_atomic
from headcoop.paper.claims import CLAIMS
from headcoop.paper.lab import Setting
from headcoop.paper.plan import SELECTED, Plan
from headcoop.paper.search import rounded, trial_setting
from headcoop.runinfo import machine

log = logging.getLogger(__name__)

SEARCH_SECTION = "search_section.html"
"""The search's section of the lab page, which `make figures` includes where it exists."""


def trials_frame(study: Any) -> pd.DataFrame:
    """One row per finished trial: number, source (search or grid), setting, every factor (as
    trained: continuous ones rounded), training cost, calibration claims held per seed, and
    each claim's share of seeds."""
    from optuna.trial import TrialState

    rows = []
    for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        attrs = t.user_attrs
        row = {"trial": t.number, "source": attrs["source"], "setting": attrs["setting"]}
        params = {k: rounded(v) if isinstance(v, float) else v for k, v in sorted(t.params.items())}
        row |= params | {"cost": attrs["cost"], "held": round(attrs["held"], 9)}
        rows.append(row | {c.id: attrs["shares"][c.id] for c in CLAIMS})
    return pd.DataFrame(rows)


def importance_frame(study: Any, trials: pd.DataFrame) -> pd.DataFrame:
    """Per claim (and for the calibration claims held, 'held'), each factor's importance by
    fANOVA over the finished trials (zero for a claim that no trial moves)."""
    import optuna

    evaluator = optuna.importance.FanovaImportanceEvaluator(seed=0)
    rows = []
    for target in ["held", *[c.id for c in CLAIMS]]:
        if trials[target].nunique() < 2:
            continue
        found = optuna.importance.get_param_importances(
            study, evaluator=evaluator, target=lambda t, k=target: _target(t, k)
        )
        rows += [{"claim": target, "factor": f, "importance": v} for f, v in found.items()]
    return pd.DataFrame(rows, columns=["claim", "factor", "importance"])


def _target(trial: Any, name: str) -> float:
    attrs = trial.user_attrs
    return attrs["held"] if name == "held" else attrs["shares"][name]


def selected_trial(study: Any) -> Any:
    """The Pareto trial holding the most calibration claims per seed (ties: the cheaper)."""
    return max(study.best_trials, key=lambda t: (t.values[0], -t.values[1], -t.number))


def write_search(study: Any, plan: Plan, out: str | Path, seconds: float) -> dict[str, Any]:
    """Write every file of the search into ``out``; returns what summary_search.json holds."""
    out = Path(out)
    trials = trials_frame(study)
    pareto = trials[trials["trial"].isin([t.number for t in study.best_trials])]
    importance = importance_frame(study, trials)
    write_atomic(out / "trials.csv", trials.to_csv(index=False))
    write_atomic(out / "pareto.csv", pareto.to_csv(index=False))
    write_atomic(out / "importance.csv", importance.to_csv(index=False))
    best = selected_trial(study)
    choice = _choice(plan, trial_setting(plan, best.params))
    write_atomic(out / SELECTED, json.dumps(choice, indent=2) + "\n")
    summary = {
        "selected": choice | {"trial": best.number, "held": best.values[0], "cost": best.values[1]},
        "trials": int((trials["source"] == "search").sum()),
        "grid_trials": int((trials["source"] == "grid").sum()),
        "models_trained": float(trials["cost"].sum()),
        "seconds": round(seconds, 1),
        "machine": machine(),
    }
    write_atomic(out / "summary_search.json", json.dumps(summary, indent=2, default=str) + "\n")
    section = _section(trials, importance, summary)
    write_atomic(out / SEARCH_SECTION, section)
    write_atomic(out / "search.html", pages.page("headcoop: claims search", section))
    return summary


def _choice(plan: Plan, s: Setting) -> dict[str, Any]:
    """selected.json: the setting in the form `headcoop.paper.plan.Plan.calibrated` reads."""
    model, train = s.configs(plan)
    return {
        "setting": s.name,
        "changes": dict(s.changes),
        "layernorm": model.layernorm,
        "train": train.key_dict(),
        "lab_plan": config_key(plan),
    }


def history_figure(trials: pd.DataFrame) -> go.Figure:
    """Calibration claims held per seed by trial, and the best so far."""
    ordered = trials.sort_values("trial")
    figure = go.Figure(
        [
            go.Scatter(
                x=ordered["trial"],
                y=ordered["held"],
                mode="markers",
                name="trial",
                text=ordered["setting"],
            ),
            go.Scatter(x=ordered["trial"], y=ordered["held"].cummax(), name="best so far"),
        ]
    )
    return figure.update_layout(
        title="optimisation history", xaxis_title="trial", yaxis_title="calibration claims held"
    )


def importance_figure(importance: pd.DataFrame) -> go.Figure:
    """fANOVA importance of each factor (columns) for each claim (rows)."""
    table = importance.pivot_table(index="claim", columns="factor", values="importance")
    heatmap = go.Heatmap(z=table.values, x=table.columns, y=table.index, colorscale="Blues")
    figure = go.Figure(heatmap)
    return figure.update_layout(title="factor importance (fANOVA)", height=200 + 22 * len(table))


def _section(trials: pd.DataFrame, importance: pd.DataFrame, summary: dict[str, Any]) -> str:
    chosen = summary["selected"]
    figures = pages.figure_div(history_figure(trials), "search_history")
    if len(importance):
        figures += pages.figure_div(importance_figure(importance), "search_importance")
    return f"""<section id="claims-search"><h2>The claims search</h2>
<p>{summary["trials"]} search trials and {summary["grid_trials"]} grid settings,
{summary["models_trained"]:.0f} models' worth of training, in {summary["seconds"]} s. The
selected trial ({chosen["trial"]}, <code>{html.escape(chosen["setting"])}</code>) holds
{chosen["held"]:.2f} calibration claims per seed at a cost of {chosen["cost"]:.1f} models.</p>
{figures}</section>"""
