"""Training: optimisation and sweeps of many models (checkpoints are `headcoop.loading`'s).

- `trainer`: `train` (one model, checkpoints, resume) and `train_models` (a stack at once);
- `sweep`: experiments keyed by their configuration, trained in stacks, results cached.
"""
