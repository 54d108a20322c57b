"""The claims lab: which training choices make the paper's findings hold.

- `registry`: the paper's findings as data (statistic, the paper's value, a tolerance, why);
- `evidence`: what one model's analyses give the claims to read;
- `lab`: the settings grid, trained and measured over seeds, and its summaries;
- `report`: claims.csv, settings.csv, the heatmap and the report section.
"""
