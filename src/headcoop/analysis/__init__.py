"""Analyses: the metrics put together into answers about a model.

- `heads`: `analyze`, every head metric of one model (heads.csv, pairs.csv, subsets);
- `interventions`: s-acc under fixed attention ratios (the paper's Figures 8 and 9);
- `dynamics`: heads over training and at initialisation.
"""
