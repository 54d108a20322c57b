"""Training: optimisation, checkpoints on disk, and sweeps of many models.

- `trainer`: `train` (one model, checkpoints, resume) and `train_models` (a stack at once);
- `checkpoint`: the on-disk format (safetensors + config.json), atomic, readable by plain
  TransformerLens users;
- `sweep`: experiments keyed by their configuration, trained in stacks, results cached.
"""
