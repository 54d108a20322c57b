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
      explore/seed_*/       each main model's head explorer (explorer.html, no network)
"""

import json
import logging
import time
from pathlib import Path
from typing import Any

import pandas as pd

from headcoop import pages
from headcoop.device import Device
from headcoop.explore.build import explore
from headcoop.files import write_atomic
from headcoop.paper.comparison import compare_with_paper
from headcoop.paper.compute import FigureData, measure_all
from headcoop.paper.html import index_html
from headcoop.paper.items import render
from headcoop.paper.lab_report import SECTION
from headcoop.paper.plan import Plan
from headcoop.paper.search_report import SEARCH_SECTION
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
        pages.write_figure(item.figure, out / f"{item.slug}.html")
    png_note = (
        pages.write_pngs([i.figure for i in items], [out / f"{i.slug}.png" for i in items])
        if png
        else "PNGs were not asked for (--no-png)."
    )
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
    sections = _lab_section(claims) + _explorers(data, out)
    page = index_html(items, summary, plan, png_note, sections, note)
    write_atomic(out / "index.html", page)
    return summary


def _lab_section(claims: str | Path | None) -> str:
    """The claims lab's sections of the report (the grid's and the search's), from its output
    directory, where they ran."""
    where = Path(claims) if claims is not None else None
    lab, search = (where / SECTION, where / SEARCH_SECTION) if where else (None, None)
    grid = (
        lab.read_text()
        if lab is not None and lab.exists()
        else "<section id='claims-lab'><h2>The claims lab</h2><p>Not run yet: <code>make "
        "claims</code> finds which training choices make each finding hold.</p></section>"
    )
    return grid + (search.read_text() if search is not None and search.exists() else "")


def _explorers(data: FigureData, out: Path) -> str:
    """The head explorer of each main model (made once into the cache, then copied into
    ``out/explore``), and the report's section that links them."""
    links = []
    for seed in data.plan.main_seeds:
        cached = data.root / "explore" / f"seed_{seed}" / "explorer.html"
        if not cached.exists():
            log.info("writing the head explorer of seed %d", seed)
            model, analysis = data.main_model(seed), data.analysis(seed)
            explore(model, cached.parent, data.task, analysis=analysis)
        page = out / "explore" / f"seed_{seed}" / "explorer.html"
        write_atomic(page, cached.read_bytes())
        links.append(f'<li><a href="{page.relative_to(out)}">seed {seed}</a></li>')
    return (
        "<section id='explorers'><h2>Head explorers</h2><p>One interactive page per main "
        "model: click a head for its numbers, circuits, outputs and partners.</p>"
        f"<ul>{''.join(links)}</ul></section>"
    )


def _copy_data(root: Path, dest: Path) -> None:
    """Copy the measurements behind the figures into ``dest``, each file written whole."""
    for path in sorted(root.rglob("*")):
        if path.is_file() and path.suffix in (".csv", ".json", ".gz"):
            write_atomic(dest / path.relative_to(root), path.read_bytes())
