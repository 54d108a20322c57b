"""`make figures`: every figure and table of the paper, from one command.

- `plan`: what is computed (`FigurePlan.paper()`, `FigurePlan.quick()`);
- `compute`: the measurements, cached as files (`FigureData`);
- `plots`: one plotly figure per item, from those files;
- `report`: `make_figures`, which writes the HTML, PNGs, data and ``index.html``.
"""
