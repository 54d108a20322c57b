"""Training: optimisation and sweeps of many models (checkpoints are `headcoop.loading`'s).

- `trainer`: `train` (one model, checkpoints, resume) and `train_models` (a stack at once);
- `sweep`: what a sweep is: experiments keyed by their configuration, trained in stacks,
  results cached, interrupted stacks resumed;
- `workers`: where it runs on this machine: a pool of processes, each with its share of cores;
- `jobs`: where it runs as jobs: submitit on this machine or Slurm, the queue watched.
"""
