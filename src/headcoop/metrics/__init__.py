"""Metrics: what the head analyzers compute, from activations cached once per split.

- `cache`: one batched pass that keeps the head outputs and logits at the scored positions;
- `attribution`: per-head logit terms, and the logits of any set of heads under the paper's
  head-only definition or with the direct path kept;
- `subsets`: l-acc and ROC AUC of many sets of heads at once;
- `separation`: s-acc, a batched exact LinearSVC solver;
- `attention`: per-token attention ratios and pattern interventions;
- `classes`: decision labels, chance and the head classes (one definition each).
"""
