"""Engines: running models on a task's batches.

- `bags`: one `HookedTransformer` on bags (exact where `bag_exact` holds) or full sequences;
  predict and evaluate.
- `stack`: many models with a leading model axis at once, an exact re-expression of the
  `HookedTransformer` forward on bags (for training and sweeps).
"""
