"""The head analyses every study uses, on one model at a time.

- `analyze`: every head, pair and set of heads of a model (heads.csv, pairs.csv, subsets);
- `analysis`: `HeadAnalysis`, what `analyze` returns, saved as one directory and loaded back;
- `set_scorer`: the metrics of many sets of heads, with bootstrap intervals where asked;
- `games`: each game's cooperation index with its interval and the null of independent heads;
- `interventions`: s-acc under fixed attention ratios (the paper's Figures 8 and 9);
- `dynamics`: heads over training and at initialisation;
- `succession`: succession scores of each head's OV circuit (successor heads), from weights;
- `plots`, `interaction_plots`, `colours`: the figures of one model's heads (the paper's Figs
  1 and 3-7, the interactions), shared by `report` (report.html of any analysis) and the
  paper's figures.
"""
