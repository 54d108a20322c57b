"""`make test-slurm`: headcoop's sweeps on a real one-node Slurm cluster against the same runs
in this process, table for table, byte for byte.

1. `scripts/slurm_cluster.sh` starts the cluster (a skip, with its reason, where it cannot).
2. `headcoop figures --quick` in process and with `--executor slurm`: Table 1 and every data
   table are compared.
3. A small `headcoop claims --search --quick`, the same two ways: trials.csv, pareto.csv,
   importance.csv and selected.json are compared.
4. A Slurm sweep with one job cancelled (`scancel`) while it runs: the run ends in one line,
   and a rerun finishes with tables identical to the in-process ones.

Prints "identical" when every comparison holds; exits non-zero with the first difference.
"""

import filecmp
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HEADCOOP = [sys.executable, "-m", "headcoop.cli"]
FIGURES = [*HEADCOOP, "figures", "--quick", "--no-png", "--quiet"]
SEARCH = [*HEADCOOP, "claims", "--quick", "--no-png", "--quiet", "--search", "4", "--batch", "2"]
SEARCH_FILES = ("trials.csv", "pareto.csv", "importance.csv", "selected.json")


def run(command: list[str], **kwargs) -> subprocess.CompletedProcess:
    done = subprocess.run(command, capture_output=True, text=True, **kwargs)
    if done.returncode != 0:
        sys.exit(f"failed ({done.returncode}): {' '.join(command)}\n{done.stderr[-3000:]}")
    return done


def figures(where: Path, *extra: str) -> list[str]:
    return [*FIGURES, "--out", str(where / "out"), "--cache", str(where / "cache"),
            "--claims", str(where / "no-lab"), *extra]  # fmt: skip


def tables(out: Path) -> list[Path]:
    """The figures' tables: Table 1 and every CSV of measurements."""
    return [out / "table1.csv", *sorted((out / "data").glob("*.csv"))]


def same(ours: list[Path], theirs_dir: Path, base: Path, what: str) -> None:
    for path in ours:
        other = theirs_dir / path.relative_to(base)
        if not other.exists() or not filecmp.cmp(path, other, shallow=False):
            sys.exit(f"{what}: {path.relative_to(base)} differs")
    print(f"{what}: {len(ours)} files identical")


def cancel_one_job(where: Path) -> None:
    """Start a Slurm sweep, cancel its first running job, check the run ends in one line."""
    sweep = subprocess.Popen(
        figures(where, "--executor", "slurm"), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    deadline, cancelled = time.monotonic() + 600, None
    while cancelled is None and time.monotonic() < deadline and sweep.poll() is None:
        queue = subprocess.run(["squeue", "-h", "-o", "%i %T"], capture_output=True, text=True)
        running = [line.split()[0] for line in queue.stdout.splitlines() if "RUNNING" in line]
        if running:
            time.sleep(2)  # into its training
            subprocess.run(["scancel", running[0]], check=True)
            cancelled = running[0]
        time.sleep(0.5)
    _, err = sweep.communicate(timeout=600)
    if cancelled is None:
        sys.exit("no Slurm job was seen running to cancel")
    if sweep.returncode == 0 or "ended without a result" not in err:
        sys.exit(f"cancelling job {cancelled} did not end the run in one line: {err[-2000:]}")
    print(f"job {cancelled} cancelled: {err.strip().splitlines()[-1]}")


def main() -> int:
    started = subprocess.run(["bash", str(ROOT / "scripts" / "slurm_cluster.sh")])
    if started.returncode == 3:
        print("test-slurm skipped: no Slurm cluster could be started here (see above)")
        return 0
    if started.returncode != 0:
        return started.returncode
    root = Path(tempfile.mkdtemp(prefix="test-slurm-"))
    clock = time.perf_counter()

    run(figures(root / "local", "--workers", "1"))
    run(figures(root / "slurm", "--executor", "slurm"))
    local = root / "local" / "out"
    same(tables(local), root / "slurm" / "out", local, "figures --quick --executor slurm")

    for name, extra in (("lab-local", ["--workers", "1"]), ("lab-slurm", ["--executor", "slurm"])):
        run([*SEARCH, "--out", str(root / name), "--cache", str(root / f"{name}-cache"), *extra])
    ours = [root / "lab-local" / f for f in SEARCH_FILES]
    same(ours, root / "lab-slurm", root / "lab-local", "claims --search --executor slurm")

    cancel_one_job(root / "cancel")
    run(figures(root / "cancel", "--executor", "slurm"))
    same(tables(local), root / "cancel" / "out", local, "rerun after scancel")
    print(f"identical ({time.perf_counter() - clock:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
