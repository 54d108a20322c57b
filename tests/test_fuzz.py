"""The command-line fuzz (tests/fuzz.py): a few hundred cases here, thousands in `make fuzz`."""

import os

import pytest

from tests.fuzz import run_cases


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
