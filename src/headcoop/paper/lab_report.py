"""The lab's output directory: tables to reload, the heatmap and the report section.

DIR/
  claims.csv          one row per model and claim: setting, seed, claim, statistic,
                      paper, holds
  settings.csv        each setting's training choices, and whether it is the default, a
                      one-factor change or a factorial cell
  summary.csv         per setting: claims held per seed, share of seeds per claim
  effects.csv         per claim and single-factor change: share of seeds at the default
                      and at that level
  factors.csv         per claim, the factor that moves it most and by how much
  robustness.csv      per claim, how widely it holds
  registry.csv        the claims: statistic, the paper's value, tolerance, rationale
  selected.json       the setting that holds the most calibration claims (`make figures
                      PLAN=calibrated` trains under it)
  heatmap.html, .png  settings x claims, coloured by the share of seeds where it holds
  claims.html         the report section
  summary.json        the plan, the machine and the time each stage took
"""

import html
import json
import logging
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pandas as pd
import plotly.graph_objects as go

from headcoop import pages
from headcoop.files import config_key, write_atomic
from headcoop.paper.claims import BY_ID, CLAIMS
from headcoop.paper.lab import (
    DEFAULT,
    LabResult,
    claim_table,
    deciding_factors,
    factor_effects,
    robustness,
)
from headcoop.paper.plan import SELECTED
from headcoop.runinfo import machine

log = logging.getLogger(__name__)

SECTION = "claims_section.html"
"""The report section alone, for `make figures` to embed."""


def write_lab(result: LabResult, out: str | Path, png: bool = True) -> dict[str, Any]:
    """Write every file of the lab's output into ``out``; return what summary.json holds."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    plan = result.plan
    selected = result.selected()
    effects = factor_effects(plan, result.settings, result.claims)
    factors = deciding_factors(effects)
    robust = robustness(result)
    per_setting = _per_setting(result)

    write_atomic(out / "claims.csv", result.claims.to_csv(index=False))
    write_atomic(out / "settings.csv", _settings_frame(result).to_csv(index=False))
    write_atomic(out / "summary.csv", per_setting.to_csv())
    write_atomic(out / "effects.csv", effects.to_csv(index=False))
    write_atomic(out / "factors.csv", factors.to_csv(index=False))
    write_atomic(out / "robustness.csv", robust.to_csv(index=False))
    write_atomic(out / "registry.csv", claim_table().to_csv(index=False))
    model, train = selected.configs(plan)
    choice = {
        "setting": selected.name,
        "changes": dict(selected.changes),
        "layernorm": model.layernorm,
        "train": train.key_dict(),
        "lab_plan": config_key(plan),
    }
    write_atomic(out / SELECTED, json.dumps(choice, indent=2) + "\n")

    figure = heatmap(result)
    pages.write_figure(figure, out / "heatmap.html")
    png_note = pages.write_pngs([figure], [out / "heatmap.png"]) if png else "PNG not asked for."
    section = section_html(result, per_setting, factors, robust)
    write_atomic(out / SECTION, section)
    summary = {
        "selected": choice,
        "seconds": result.seconds,
        "machine": {**machine(result.device), "workers": result.workers},
        "plan": json.loads(json.dumps(asdict(plan), default=str)),
        "png": png_note,
    }
    write_atomic(out / "summary.json", json.dumps(summary, indent=2, default=str) + "\n")
    write_atomic(out / "claims.html", _page(section, summary))
    return summary


def heatmap(result: LabResult) -> go.Figure:
    """Settings x claims, coloured by the share of seeds where the claim holds."""
    shares = result.shares()
    labels = [f"{c}{' *' if BY_ID[c].calibration else ''}" for c in shares.columns]
    figure = go.Figure(
        go.Heatmap(
            z=shares.to_numpy(),
            x=labels,
            y=list(shares.index),
            zmin=0,
            zmax=1,
            colorscale="RdYlGn",
            colorbar={"title": "share of seeds"},
            hovertemplate="%{y}<br>%{x}: %{z:.2f}<extra></extra>",
        )
    )
    figure.update_layout(
        title="Where each claim holds (* calibration claims)",
        width=1200,
        height=max(450, 24 * len(shares) + 250),
        yaxis={"autorange": "reversed"},
        xaxis={"tickangle": -45},
        margin={"l": 320},
    )
    return figure


def section_html(
    result: LabResult, per_setting: pd.DataFrame, factors: pd.DataFrame, robust: pd.DataFrame
) -> str:
    """The report section: which settings reproduce the most claims, how robust each finding
    is, what decides it, and the claims themselves."""
    selected = result.selected().name
    n_calibration = sum(c.calibration for c in CLAIMS)
    top = per_setting.sort_values("calibration_held", ascending=False).head(5)
    n_seeds = len(result.plan.lab.seeds)
    best_lines = "".join(
        f"<li><code>{html.escape(name)}</code>: {row['calibration_held']:.1f} of "
        f"{n_calibration} calibration claims per seed, {row['claims_held']:.1f} of {len(CLAIMS)} "
        "claims in all</li>"
        for name, row in top.iterrows()
    )
    default_held = per_setting.loc[DEFAULT, "calibration_held"]
    return f"""<section id="claims-lab"><h2>The claims lab: which training choices make the
paper's findings hold</h2>
<p>{len(result.settings)} settings x {n_seeds} seeds: one factor at a time around the default,
then a factorial over the factors that matter most. Each claim is judged on every model; a
cell below is the share of seeds where it holds. Claims marked calibration are those whose
values the paper reports; only they choose the selected setting.</p>
<p><strong>Settings that reproduce the most calibration claims:</strong></p><ul>{best_lines}</ul>
<p>The default holds {default_held:.1f} calibration claims per seed; the selected setting,
<code>{html.escape(selected)}</code>, holds {per_setting.loc[selected, "calibration_held"]:.1f}.
<code>make figures PLAN=calibrated</code> trains every figure and Table 1 under it.</p>
<h3>How robust each finding is</h3>
{_table(robust, percent=("share_of_models", "share_of_settings", "default", "selected"))}
<p>share_of_models: models where the claim holds; share_of_settings: settings where it holds
for most seeds; default, selected: share of seeds under those settings.</p>
<h3>The factor that moves each claim most (one factor at a time)</h3>
{_table(factors, percent=("share_default", "share_level", "effect"))}
<h3>The claims</h3>
{_table(claim_table())}
<p><a href="heatmap.html">heatmap</a> · claims.csv, settings.csv, summary.csv, effects.csv,
factors.csv, robustness.csv and registry.csv hold every number. The lab ran in
{sum(result.seconds.values()):.0f} s ({html.escape(json.dumps(result.seconds))}).</p>
</section>
"""


def _per_setting(result: LabResult) -> pd.DataFrame:
    shares = result.shares()
    calibration = [c.id for c in CLAIMS if c.calibration]
    summary = pd.DataFrame(
        {
            "kind": [result.kinds[s] for s in shares.index],
            "calibration_held": shares[calibration].sum(axis=1),
            "claims_held": shares.sum(axis=1),
        },
        index=shares.index,
    )
    return summary.join(shares)


def _settings_frame(result: LabResult) -> pd.DataFrame:
    rows = []
    for s in result.settings:
        model, train = s.configs(result.plan)
        rows.append(
            {"setting": s.name, "kind": result.kinds[s.name], "layernorm": model.layernorm}
            | asdict(train)
            | {"seeds": " ".join(map(str, result.plan.lab.seeds))}
        )
    return pd.DataFrame(rows).drop(columns=["seed", "checkpoint_every"])


def _table(frame: pd.DataFrame, percent: tuple[str, ...] = ()) -> str:
    """``frame`` as an HTML table, the ``percent`` columns as percentages."""

    def cell(column: str, value: Any) -> str:
        if column in percent and isinstance(value, float):
            return f"{value:.0%}"
        return f"{value:.4g}" if isinstance(value, float) else str(value)

    return pages.table(frame.to_dict(orient="records"), cell)


def _page(section: str, summary: dict[str, Any]) -> str:
    body = f"""{section}
<p><img src="heatmap.png" alt="heatmap (see heatmap.html if the PNG was skipped)"></p>
<h2>Configuration, machine and time</h2>
{pages.provenance(summary)}"""
    return pages.page("headcoop: the claims lab", body, plotly=False)
