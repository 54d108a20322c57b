"""The command-line fuzz (tests/fuzz.py): a few hundred cases here, thousands in `make fuzz`."""

import os

import pytest

from tests.fuzz import run_cases
from tests.fuzz_hostile import hostile_table


def report(outcomes) -> str:
    return ", ".join(f"{kind}: {n}" for kind, n in sorted(outcomes.items()))


def test_the_command_line_survives_random_flags_and_corrupt_checkpoints(tmp_path):
    outcomes = run_cases(tmp_path, n=240, seed=1)
    assert sum(outcomes.values()) == 240
    assert any("refused" in kind for kind in outcomes) and any("trained" in k for k in outcomes)


@pytest.mark.fuzz
def test_the_long_fuzz(tmp_path):
    n = int(os.environ.get("FUZZ_CASES", "2000"))
    outcomes = run_cases(tmp_path, n=n, seed=int(os.environ.get("FUZZ_SEED", "0")))
    print(f"\n{n} cases: {report(outcomes)}")
    assert sum(outcomes.values()) == n


@pytest.mark.fuzz
def test_hostile_inputs_by_class(tmp_path):
    """Per class: cases, tracebacks (0), the largest peak memory of a refused input (under
    1 GB) and the longest time to refuse one (under 15 s)."""
    rows = hostile_table(tmp_path)
    print(f"\n{'class':<66} cases  tracebacks  peak MB  longest s")
    for row in rows:
        print(
            f"{row['class']:<66} {row['cases']:>5}  {row['tracebacks']:>10}  "
            f"{row['peak_mb'] if row['peak_mb'] is not None else '-':>7}  "
            f"{row['longest_s'] if row['longest_s'] is not None else '-':>9}"
        )
        for failure in row["failures"]:
            print(f"  {failure}")
    assert all(row["tracebacks"] == 0 for row in rows)
    assert all(row["peak_mb"] is None or row["peak_mb"] < 1024 for row in rows)
    refusals = [row for row in rows if row["class"] not in ("concurrent runs", "signals")]
    assert all((row["longest_s"] or 0) < 15 for row in refusals)
