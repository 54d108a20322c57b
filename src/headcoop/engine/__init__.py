"""Engines: running models on a task's examples, each an exact re-expression of the
TransformerLens forward.

- `run`: the one door (`choose_engine`, `run`, `predict`, `evaluate`): given models, a task and
  examples, it picks the stacked engine, bags or full sequences;
- `bags`: bag compression, where it is exact (`bag_exact`), and its multiplicity hook;
- `batches`: one model's batched passes (bags in order, full sequences shortest first);
- `cache`: one model's activations at the scored positions (`HeadCache`, `collect`);
- `stack`: many one-layer models with a leading model axis (training, sweeps);
- `fused`: the stack's compiled CPU training kernel;
- `loss`: the training loss and the accuracy of each readout;
- `fixed_attention`: pattern interventions, with their fast form on bags.
"""
