"""The paper's figures and tables (`make figures`).

- `plan`: what is computed (`FigurePlan.paper()`, `FigurePlan.quick()`);
- `compute`: the measurements, cached as files (`FigureData`);
- `plots`: one plotly figure per item, from those files;
- `report`: `make_figures`, which writes the HTML, PNGs, data and ``index.html``.
"""
