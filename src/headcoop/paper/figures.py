"""`make figures`: measure (or read from the cache), draw every item, write the report.

Output directory layout::

    figures/
      index.html            every item with the key numbers, the comparison with the paper's
                            text, the plan, the machine and the time each stage took
      <item>.html, .png     one interactive figure and one picture per item
      plotly.min.js         shared by the HTML files (no network needed to view them)
      table1.csv            Table 1
      data/*.csv            the measurements behind the figures
      summary.json          the key numbers
"""

import json
import logging
import shutil
import time
from pathlib import Path
from typing import Any

import pandas as pd
import plotly.io as pio

from headcoop.device import Device
from headcoop.files import write_atomic
from headcoop.paper.comparison import compare_with_paper
from headcoop.paper.compute import FigureData, measure_all
from headcoop.paper.html import index_html
from headcoop.paper.items import Rendered, render
from headcoop.paper.lab_report import SECTION
from headcoop.paper.plan import Plan
from headcoop.paper.summary import key_numbers
from headcoop.runinfo import machine

log = logging.getLogger(__name__)


def make_figures(
    plan: Plan,
    out: str | Path = "figures",
    cache: str | Path = "runs/figures",
    png: bool = True,
    progress: bool = False,
    device: Device = None,
    executor: str | None = None,
    claims: str | Path | None = None,
    note: str = "",
    workers: int | None = None,
) -> dict[str, Any]:
    """Compute what is missing, then write every item, the data and ``index.html`` into
    ``out``. Returns the summary (also written to ``out/summary.json``). ``device``,
    ``executor`` and ``workers`` are `FigureData`'s; ``claims`` is a claims lab's output
    directory, whose section the report includes where it exists; ``note`` opens the report
    (what plan it follows)."""
    out = Path(out)
    clock = time.perf_counter()
    data = FigureData(plan, cache, progress, device, executor, workers)
    stages = measure_all(data)
    measured = time.perf_counter() - clock
    items = render(data)
    summary = key_numbers(data)
    summary["paper_comparison"] = compare_with_paper(summary)

    out.mkdir(parents=True, exist_ok=True)
    for item in items:
        item.figure.write_html(out / f"{item.slug}.html", include_plotlyjs="directory")
    png_note = _write_pngs(items, out) if png else "PNGs were not asked for (--no-png)."
    _copy_data(data.root, out / "data")
    write_atomic(out / "table1.csv", pd.DataFrame(summary["table1"]).to_csv(index=False))
    summary["png"] = png_note
    summary["machine"] = {**machine(str(data.device)), "sweep_workers": data.workers}
    summary["seconds"] = {
        "stages": stages,
        "measure": round(measured, 1),
        "total": round(time.perf_counter() - clock, 1),
    }
    write_atomic(out / "summary.json", json.dumps(summary, indent=2, default=float) + "\n")
    lab = Path(claims) / SECTION if claims is not None else None
    lab_section = (
        lab.read_text()
        if lab is not None and lab.exists()
        else (
            "<section id='claims-lab'><h2>The claims lab</h2><p>Not run yet: "
            "<code>make claims</code> finds which training choices make each finding "
            "hold.</p></section>"
        )
    )
    page = index_html(items, summary, plan, png_note, lab_section, note)
    write_atomic(out / "index.html", page)
    return summary


def _write_pngs(items: list[Rendered], out: Path) -> str:
    """Write one PNG per item with kaleido (which needs a Chromium); say what happened."""
    try:
        pio.write_images(
            [item.figure for item in items],
            [out / f"{item.slug}.png" for item in items],
            width=[item.figure.layout.width or 900 for item in items],
            height=[item.figure.layout.height or 500 for item in items],
        )
    except Exception as exc:  # kaleido reports a missing browser in several ways
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        log.warning("PNGs skipped: %s", first_line)
        return f"PNGs were skipped: kaleido could not render them ({first_line})."
    return f"PNGs written for all {len(items)} items."


def _copy_data(root: Path, dest: Path) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    for path in sorted(root.rglob("*")):
        if path.is_file() and path.suffix in (".csv", ".json", ".gz"):
            target = dest / path.relative_to(root)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, target)
