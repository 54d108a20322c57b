"""A fuzz of the command line: random flag values and randomly corrupted checkpoints.

Every case runs ``headcoop.cli.main`` in this process and asserts what a user may rely on:

- no exception escapes (a traceback), whatever the input;
- a failure is one line on stderr and a non-zero exit (2 for a bad flag, 1 for bad input);
- a success is honest: ``eval`` prints exactly what the clean checkpoint gives, ``train``
  leaves a final checkpoint whose stored settings are the flags given.

`run_cases` returns the counts of outcomes; `tests/test_fuzz.py` runs a few hundred cases in the
suite and ``make fuzz`` thousands.
"""

import contextlib
import io
import json
import random
import shutil
from collections import Counter
from pathlib import Path

from safetensors.torch import load_file, save_file

from headcoop.cli import main

SPLITS = {
    "train": {"size": 48, "n01": [0, 8], "n2": [0, 8]},
    "val": {"size": 16, "n01": [9, 12], "n2": [0, 12]},
    "test": {"size": 16, "n01": [13, 16], "n2": [0, 16]},
}
BASE = ["--task-param", f"splits={json.dumps(SPLITS)}", "--d-model", "4", "--n-heads", "2"]
NUMERIC_FLAGS = (
    "--seed",
    "--epochs",
    "--d-model",
    "--n-heads",
    "--d-head",
    "--batch-size",
    "--lr",
    "--weight-decay",
    "--dropout",
    "--checkpoint-every",
)
ODD_VALUES = (
    "0", "-1", "1", "2", "3", "1e-3", "0.5", "1.0", "nan", "inf", "-inf", "1e308", "1e-320",
    "-0.0", "18446744073709551616", "2147483648", "", " ", "abc", "0x10", "1_0", "½", "1e6",
    "３", "None", "[]", "{}", "--", "0.99999", "9" * 40,
)  # fmt: skip
CONFIG_VALUES = (None, "", "x", -1, 0, 1, 2.5, 10**20, [], {}, [1, 2], True, float("inf"))


def call(argv: list[str]) -> tuple[int, str, str]:
    """Run the command line in this process: (exit code, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as exc:  # argparse's usage errors
            code = exc.code if isinstance(exc.code, int) else 1
    return code, out.getvalue(), err.getvalue()


def check_failure(code: int, err: str, argv: list[str]) -> None:
    lines = err.strip().splitlines()
    assert code in (1, 2), (argv, code, err)
    assert len(lines) == 1 and "error:" in lines[0], (argv, err)


def clean_checkpoint(root: Path) -> tuple[Path, str]:
    """A small trained run and what ``eval --json`` prints for it."""
    run = root / "clean"
    code, _, err = call(["train", "--out", str(run), "--epochs", "2", "--quiet", *BASE])
    assert code == 0, err
    code, out, err = call(["eval", str(run), "--json"])
    assert code == 0, err
    return run / "epoch_0002", out


def corrupt(checkpoint: Path, rng: random.Random) -> str:
    """Damage ``checkpoint`` in one random way; return the name of the way."""
    weights, config_file = checkpoint / "model.safetensors", checkpoint / "config.json"
    kind = rng.choice(
        ["flip", "truncate", "rename", "reshape", "drop", "mistype", "garbage", "delete"]
    )
    if kind in ("flip", "truncate"):
        target = rng.choice([weights, config_file])
        raw = bytearray(target.read_bytes())
        if kind == "flip":
            for _ in range(rng.randint(1, 4)):
                raw[rng.randrange(len(raw))] ^= 1 << rng.randrange(8)
        else:
            raw = raw[: rng.randrange(len(raw))]
        target.write_bytes(bytes(raw))
    elif kind in ("rename", "reshape"):
        state = load_file(weights)
        name = rng.choice(sorted(state))
        if kind == "rename":
            state[name + rng.choice(["_", ".x", "0"])] = state.pop(name)
        else:
            state[name] = state[name].flatten()[: max(1, state[name].numel() - 1)].clone()
        save_file(state, weights)
    elif kind in ("drop", "mistype"):
        config = json.loads(config_file.read_text())
        section = rng.choice(["model", "task", "train", None])
        holder = config if section is None else config[section]
        key = rng.choice(sorted(holder))
        if kind == "drop":
            del holder[key]
        else:
            holder[key] = rng.choice(CONFIG_VALUES)
        config_file.write_text(json.dumps(config))
    elif kind == "garbage":
        target = rng.choice([weights, config_file])
        target.write_bytes(rng.randbytes(rng.randint(0, 64)))
    else:
        rng.choice([weights, config_file]).unlink()
    return kind


def checkpoint_case(clean: Path, clean_output: str, root: Path, rng: random.Random) -> str:
    """``eval`` on a corrupted copy: refused in one line, or the clean checkpoint's output."""
    copy = root / f"case_{rng.randrange(10**9)}"
    shutil.copytree(clean, copy)
    kind = corrupt(copy, rng)
    argv = ["eval", str(copy), "--json"]
    code, out, err = call(argv)
    shutil.rmtree(copy)
    if code == 0:
        assert out == clean_output, (kind, out, clean_output)
        return f"checkpoint {kind}: same output"
    check_failure(code, err, argv)
    return f"checkpoint {kind}: refused"


def flag_case(root: Path, rng: random.Random) -> str:
    """``train`` with one random flag value: refused in one line, or an honest run."""
    flag, value = rng.choice(NUMERIC_FLAGS), rng.choice(ODD_VALUES)
    run = root / f"run_{rng.randrange(10**9)}"
    argv = ["train", "--out", str(run), "--quiet", *BASE, "--epochs", "1", flag, value]
    code, _, err = call(argv)
    if code == 0:
        stored = json.loads((run / "final" / "config.json").read_text())
        settings = {**stored["train"], **stored["model"]}
        name = flag.removeprefix("--").replace("-", "_")
        assert float(settings[name]) == float(value), (argv, settings[name])
        outcome = "flag: trained"
    else:
        check_failure(code, err, argv)
        outcome = f"flag: refused ({code})"
    shutil.rmtree(run, ignore_errors=True)
    return outcome


def run_cases(root: Path, n: int, seed: int = 0) -> Counter:
    """``n`` fuzz cases, a third of them flag values and the rest corrupt checkpoints."""
    rng = random.Random(seed)
    clean, clean_output = clean_checkpoint(root)
    outcomes: Counter = Counter()
    for _ in range(n):
        if rng.random() < 1 / 3:
            outcomes[flag_case(root, rng)] += 1
        else:
            outcomes[checkpoint_case(clean, clean_output, root, rng)] += 1
    return outcomes
