"""cooperation.html: the cooperation index of every task's models, side by side, with the
rule of the verdict, the table and what produced it."""

from pathlib import Path
from typing import Any

import pandas as pd
import plotly.graph_objects as go

from headcoop import pages
from headcoop.files import write_atomic
from headcoop.metrics.definitions import Definition
from headcoop.metrics.interactions import FLAT_GAIN, VERDICT_CUT

SHOWN = ("l_acc", Definition.DIRECT.column("l_acc"), "roc_auc", "s_acc")
"""The metrics drawn across tasks (cooperation.csv has every game)."""


def across_tasks_figure(table: pd.DataFrame) -> go.Figure:
    """The cooperation index per task, one marker per seed, one colour per metric; the bands
    of the verdict shaded."""
    figure = go.Figure()
    for metric in [m for m in SHOWN if m in set(table["metric"])]:
        rows = table[table["metric"] == metric]
        figure.add_trace(
            go.Box(
                x=rows["task"],
                y=rows["cooperation_index"],
                name=metric,
                boxpoints="all",
                text=[f"seed {s}: {v}" for s, v in zip(rows["seed"], rows["verdict"], strict=True)],
            )
        )
    figure.add_hrect(y0=-1.5, y1=-VERDICT_CUT, fillcolor="blue", opacity=0.06, line_width=0)
    figure.add_hrect(y0=VERDICT_CUT, y1=1.5, fillcolor="red", opacity=0.06, line_width=0)
    return figure.update_layout(
        title="Do heads compete or cooperate? Cooperation index by task",
        yaxis_title="cooperation index (-1 pure ensemble, 0 additive, +1 all needed)",
        boxmode="group",
        height=480,
    )


def write_page(table: pd.DataFrame, out: str | Path, about: dict[str, Any]) -> Path:
    """Write ``out/cooperation.html`` (with plotly beside it); returns its path."""
    out = Path(out)
    verdicts = table.groupby(["task", "metric"])["verdict"].agg(lambda v: "/".join(sorted(set(v))))
    body = f"""<h1>Do heads compete or cooperate?</h1>
<p>For each task's models, each metric measured on every set of heads is read as a cooperative
game. The cooperation index is the mean Shapley interaction of a pair of heads in units of
|v(all) - v(none)| / (n - 1): -1 for a pure ensemble of heads any one of which does the work,
0 for heads that add up, +1 where only all heads together do it; none ("flat") where the
metric moves less than {FLAT_GAIN} from no heads to all. Verdict: substitutes at or
below -{VERDICT_CUT:.2f}, complements at or above {VERDICT_CUT:.2f}, mixed between.
Interactions are exact where every set was measured (column <code>exact</code>), estimated from
sampled sets otherwise.</p>
{pages.figure_div(across_tasks_figure(table), "across_tasks")}
<section><h2>verdicts (over seeds)</h2>{pages.table(verdicts.reset_index().to_dict("records"))}
</section>
<section><h2>cooperation.csv</h2>{pages.table(table.round(4).to_dict("records"))}</section>
<section><h2>what produced this page</h2>{pages.provenance(about)}</section>"""
    pages.write_plotly_js(out)
    write_atomic(out / "cooperation.html", pages.page("headcoop: cooperation", body))
    return out / "cooperation.html"
