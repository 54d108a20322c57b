"""The paper's study: every figure and Table 1 (`make figures`), and the claims lab
(`make claims`), under one `Plan`.

- `plan`: what is computed (`Plan.paper()`, `.quick()`, `.calibrated()`; `LabGrid`);
- `compute`: the measurements, cached as files (`FigureData`), stage by stage;
- `plots_runs`, `head_space`: plotly figures of many models, and the measurements of one
  model's heads drawn one by one (its heads' figures are `headcoop.heads.plots`, which every
  report of one model shares);
- `items`: the list of the report's items, one entry per figure (what it draws, from what);
- `claims`: the paper's findings as data (`Claim`), and the one form of a verdict
  (`Judgement`);
- `evidence`: what one model's analysis gives the claims to read;
- `summary`, `comparison`: the key numbers, and the paper's statements judged beside them;
- `html`, `figures`: ``index.html`` and `make_figures`, which writes everything;
- `lab`, `lab_report`: the claims lab's grid of training choices, and its output;
- `search`, `search_report`: the claims search (Optuna) over every choice, and its output;
- `minimal`: the hand-set model of the paper's appendix A.
"""
