"""explorer.html: one self-contained page per model. The data are embedded once as JSON and
every chart is drawn as SVG by the page's own script when its head is selected, so the page
needs no network and no plotting library, and stays small."""

import html
import json
import math
from importlib import resources
from pathlib import Path
from typing import Any

from headcoop import pages
from headcoop.files import write_atomic

STYLE = """
#controls { margin: 1em 0; }
#head-grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(150px, 1fr));
  gap: 6px; }
.cell { text-align: left; border: 3px solid #999; border-radius: 6px; background: white;
  padding: 4px 6px; cursor: pointer; font: inherit; font-size: 12px; }
.cell strong { display: block; font-size: 14px; } .cell .metric { display: block; }
.cell .badge { float: right; font-size: 10px; color: #555; }
.cell.selected { background: #e8f0fe; }
#head-panel { margin-top: 1.5em; } .numbers td, .numbers th { padding: 2px 6px; font-size: 12px; }
.charts { display: flex; flex-wrap: wrap; gap: 12px; } .chart { margin: 0; }
.chart figcaption { font-size: 13px; font-weight: 600; }
svg .tick { font-size: 9px; fill: #444; } svg .label { font-size: 11px; fill: #222; }
svg .token { font-size: 9px; fill: #000; }
.partners { float: right; max-width: 380px; font-size: 13px; }
"""


def _finite(value: Any) -> Any:
    """``value`` with every non-finite float as None (JSON has no NaN)."""
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_explorer(data: dict[str, Any], out: str | Path, about: dict[str, Any]) -> Path:
    """Write ``out/explorer.html`` from `headcoop.explore.head_data.explorer_data`'s ``data``
    and the provenance ``about``; returns its path."""
    out = Path(out)
    payload = json.dumps(_finite(data), separators=(",", ":"), allow_nan=False)
    payload = payload.replace("</", "<\\/")  # no "</script>" inside the data
    script = resources.files("headcoop.explore").joinpath("explorer.js").read_text()
    body = f"""<h1>Heads of {html.escape(str(about.get("checkpoint", "a model")))}</h1>
<p>Task {html.escape(str(data["summary"]["task"]))}; heads by class
{html.escape(str(data["summary"]["classes"]))}. Click a head (or open <code>#L0H3</code>) for
its numbers (as heads.csv), its QK and OV circuits, its margins and outputs, and its partners.
Hover any mark for its value.</p>
<div id="controls"><label>sort by <select id="sort"></select></label></div>
<div id="head-grid"></div>
<div id="head-panel"><p>No head selected.</p></div>
<section><h2>what produced this page</h2>{pages.provenance(about)}</section>
<script id="explorer-data" type="application/json">{payload}</script>
<script>{script}</script>"""
    page = pages.page("headcoop: head explorer", body, plotly=False)
    page = page.replace("</style>", STYLE + "</style>", 1)
    write_atomic(out / "explorer.html", page)
    return out / "explorer.html"
