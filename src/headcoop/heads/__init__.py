"""The head analyses every study uses, on one model at a time.

- `analyze`: every head, pair and set of heads of a model (heads.csv, pairs.csv, subsets);
- `interventions`: s-acc under fixed attention ratios (the paper's Figures 8 and 9);
- `dynamics`: heads over training and at initialisation;
- `succession`: succession scores of each head's OV circuit (successor heads), from weights;
- `report` and `interaction_plots`: report.html of one analysis, and the interaction figures.
"""
