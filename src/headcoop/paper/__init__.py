"""The paper's figures and tables (`make figures`).

- `plan`: what is computed (`Plan.paper()`, `.quick()`, `.calibrated()`);
- `compute`: the measurements, cached as files (`FigureData`), stage by stage;
- `plots_heads`, `plots_runs`: plotly figures of one model's heads, and of many models;
- `items`: the list of the report's items, one entry per figure (what it draws, from what);
- `summary`, `comparison`: the key numbers, and the paper's statements beside them (the
  claims of `headcoop.paper.claims`, judged on each main model, then the sweeps');
- `html`, `report`: ``index.html`` and `make_figures`, which writes everything.
"""
