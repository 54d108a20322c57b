"""The head analyses every study uses, on one model at a time.

- `analyze`: every head, pair and set of heads of a model (heads.csv, pairs.csv, subsets);
- `interventions`: s-acc under fixed attention ratios (the paper's Figures 8 and 9);
- `dynamics`: heads over training and at initialisation.
"""
