"""Metrics: what the head analyzers compute, from activations cached once per split.

- `definitions`: `Definition`, the ways a set of heads is read out (and their column names);
- `attribution`: per-head logit terms, and the logits of any set of heads under each
  definition (one `SetReader` each);
- `subsets`: l-acc and ROC AUC of many sets of heads at once;
- `separation`, `svm_tree`: s-acc, an exact LinearSVC solver over many sets at once;
- `single_heads`: the s-acc of single heads of many models, and each model's accuracy;
- `interactions`: a metric on every set of heads as a cooperative game: Harsanyi dividends,
  Shapley and Banzhaf values, pair interactions;
- `bootstrap`: resamples of the test split, percentile intervals of every set metric;
- `null_model`: the same games on independent heads (terms permuted within class);
- `attention`: per-token attention ratios;
- `classes`: decision labels, chance and the head classes (one definition each).
"""
