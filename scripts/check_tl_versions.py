"""Check that transformer-lens 3 and 4 give the same headcoop models and numbers.

Run with one interpreter and name the other (``make test-tl3`` does, with .venv and
.venv-tl3):

    python scripts/check_tl_versions.py --other .venv-tl3/bin/python

Each interpreter (1) builds a model from a seed, (2) trains two small models for a few
epochs: a Count01 model on the stacked bag engine, and a two-layer induction model with
positions through the TransformerLens forward on full sequences, and (3) loads the first
interpreter's trained Count01 checkpoint and evaluates it. Printed side by side: the largest
difference of the weights of (1), of the test logits of (2) and (3), and the accuracies of (3)
(``headcoop eval --json``). Exits non-zero where the versions disagree beyond float32 rounding.
"""

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

TRAIN = ["--epochs", "3", "--d-model", "8", "--n-heads", "4", "--d-head", "2", "--quiet"]
# A small two-layer induction model with positions: trained through the TransformerLens forward.
FULL = ["--task", "induction", "--task-param", "size=400", "--n-layers", "2", "--positional",
        "--no-layernorm", "--n-ctx", "17", "--d-model", "16", "--d-head", "4"]  # fmt: skip
TOL = 1e-4  # float32 rounding of differently ordered kernels

WORKER = r"""
import json, sys, torch
from importlib.metadata import version
from headcoop.cli import main
from headcoop.compat import parameters
from headcoop.config import ModelConfig
from headcoop.model import build_model
from headcoop.tasks import task_from_config
from headcoop.engine.run import predict
from headcoop.loading.checkpoint import load_checkpoint

FULL = __FULL__

out, train_dir, shared_ckpt, train_args = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
built = parameters(build_model(ModelConfig(n_heads=4, d_model=8, d_head=2), 8, seed=3))
trained = {}
for engine, extra in (("stacked", []), ("full", FULL)):
    if main(["train", *train_args, *extra, "--out", f"{train_dir}_{engine}"]) != 0:
        sys.exit(1)
    model, config = load_checkpoint(f"{train_dir}_{engine}")
    task = task_from_config(config["task"])
    trained[engine] = predict(model, task, task.split("test")[:200]).detach()
model, config = load_checkpoint(shared_ckpt)
task = task_from_config(config["task"])
logits = predict(model, task, task.split("test"))
torch.save(
    {
        "version": version("transformer-lens"),
        "built": {k: v.detach() for k, v in built.items()},
        **{f"trained_{engine}": logits for engine, logits in trained.items()},
        "logits": logits.detach(),
    },
    out,
)
"""


def run(python: str, work: Path, tag: str, shared: Path) -> dict:
    out = work / f"{tag}.pt"
    done = subprocess.run(
        [
            python,
            "-c",
            WORKER.replace("__FULL__", repr(FULL)),
            str(out),
            str(work / f"train_{tag}"),
            str(shared),
            *TRAIN,
        ],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        sys.exit(f"{python} failed:\n{done.stderr.strip()[-2000:]}")
    accuracy = subprocess.run(
        [str(Path(python).parent / "headcoop"), "eval", str(shared), "--json"],
        capture_output=True,
        text=True,
        check=True,
    )
    import torch

    return {**torch.load(out), "eval": json.loads(accuracy.stdout)}


def largest_difference(a: dict, b: dict) -> float:
    if a.keys() != b.keys():
        sys.exit(f"parameter names differ: {sorted(a.keys() ^ b.keys())}")
    return max(float((a[k] - b[k]).abs().max()) for k in a)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--other", required=True, help="the other interpreter's python")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        shared = work / "shared"
        cli = str(Path(sys.executable).parent / "headcoop")
        subprocess.run([cli, "train", *TRAIN, "--seed", "7", "--out", str(shared)], check=True)
        this, other = (
            run(sys.executable, work, "this", shared),
            run(args.other, work, "other", shared),
        )
    built = largest_difference(this["built"], other["built"])
    trained = {
        engine: float((this[f"trained_{engine}"] - other[f"trained_{engine}"]).abs().max())
        for engine in ("stacked", "full")
    }
    logits = float((this["logits"] - other["logits"]).abs().max())
    print(f"transformer-lens {this['version']} (this) vs {other['version']} (other)")
    print(f"  weights built from one seed: largest difference {built:.3g} (must be 0)")
    for engine, difference in trained.items():
        print(
            f"  test logits after training ({engine} engine): largest difference "
            f"{difference:.3g} (<= {TOL})"
        )
    print(f"  one checkpoint's test logits: largest difference {logits:.3g} (<= {TOL})")
    for tag, result in (("this", this), ("other", other)):
        print(f"  headcoop eval on it ({tag}): {json.dumps(result['eval'])}")
    agree = (
        built == 0
        and max(trained.values()) <= TOL
        and logits <= TOL
        and this["eval"] == other["eval"]
    )
    print("the versions agree" if agree else "THE VERSIONS DISAGREE")
    return 0 if agree else 1


if __name__ == "__main__":
    sys.exit(main())
