"""Every page headcoop writes: one stylesheet, one way to embed plotly offline, one PNG helper.

Pages load plotly from ``plotly.min.js`` beside them (`write_plotly_js` puts it there and
rewrites it whenever it differs from the installed plotly's, so a truncated copy is never
kept), so they open with no network. PNGs come from kaleido, which needs a Chromium; where it
cannot render, the page says so and nothing else fails.
"""

import html
import json
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from headcoop.files import atomic_path, write_atomic

log = logging.getLogger(__name__)

PLOTLY_JS = "plotly.min.js"

STYLE = """
body { font-family: system-ui, sans-serif; max-width: 1300px; margin: 2em auto; padding: 0 1em; }
table { border-collapse: collapse; margin: 1em 0; }
td, th { border: 1px solid #ccc; padding: 4px 8px; text-align: left; vertical-align: top; }
tr.disagrees td { background: #fde2e2; } tr.agrees td { background: #e6f4e6; }
td.decides { font-weight: bold; }
section { margin: 2.5em 0; } pre { background: #f6f6f6; padding: 1em; overflow-x: auto; }
"""


def page(title: str, body: str, plotly: bool = True) -> str:
    """A whole HTML page with the shared stylesheet (and plotly's script from beside it)."""
    script = f'<script src="{PLOTLY_JS}"></script>\n' if plotly else ""
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>{html.escape(title)}</title>
{script}<style>{STYLE}</style></head><body>
{body}
</body></html>
"""


def provenance(settings: Any) -> str:
    """The configuration, machine and times behind a page, as a preformatted block."""
    return f"<pre>{html.escape(json.dumps(settings, indent=2, default=str))}</pre>"


def figure_div(figure: Any, div_id: str) -> str:
    """A plotly figure as a ``<div>`` for a page that loads plotly itself (see `page`)."""
    return figure.to_html(full_html=False, include_plotlyjs=False, div_id=div_id)


def write_figure(figure: Any, path: str | Path) -> Path:
    """Write ``figure`` as a page of its own at ``path``, plotly's script beside it."""
    path = Path(path)
    write_atomic(path, figure.to_html(include_plotlyjs=PLOTLY_JS))
    write_plotly_js(path.parent)
    return path


def write_plotly_js(directory: str | Path) -> Path:
    """Put the installed plotly's script into ``directory``, unless the same bytes are there."""
    from plotly.offline import get_plotlyjs

    script = get_plotlyjs().encode()
    path = Path(directory) / PLOTLY_JS
    if not path.is_file() or path.stat().st_size != len(script) or path.read_bytes() != script:
        write_atomic(path, script)
    return path


def write_pngs(figures: Sequence[Any], paths: Sequence[str | Path]) -> str:
    """Render each figure to its PNG path in one kaleido session, each file written whole;
    returns what happened, in a sentence (PNGs are skipped where no Chromium renders them)."""
    import contextlib

    import plotly.io as pio

    try:
        with contextlib.ExitStack() as stack:
            temps = [stack.enter_context(atomic_path(p)) for p in paths]
            pio.write_images(
                list(figures),
                temps,
                format="png",
                width=[f.layout.width or 900 for f in figures],
                height=[f.layout.height or 500 for f in figures],
            )
    except Exception as exc:  # kaleido reports a missing browser in several ways
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        log.warning("PNGs skipped: %s", first_line)
        return f"PNGs were skipped: kaleido could not render them ({first_line})."
    return f"PNGs written for all {len(paths)} figures."


def table(rows: Sequence[dict[str, Any]], cell: Callable[[str, Any], str] | None = None) -> str:
    """An HTML table of ``rows`` (dicts with the same keys), each cell formatted by
    ``cell(column, value)`` (by default: floats to 3 decimals) and escaped."""
    cell = cell or (lambda _, v: f"{v:.3f}" if isinstance(v, float) else str(v))
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in (rows[0] if rows else {}))
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(cell(c, v))}</td>" for c, v in r.items()) + "</tr>"
        for r in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"
