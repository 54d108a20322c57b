"""Where a sweep's stacks run as jobs: submitit on this machine or a Slurm cluster, waited for
with a watch on the Slurm queue (a job cancelled or killed there is one error, not a hang).
"""

import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from headcoop.errors import HeadcoopError

EXECUTORS = ("local", "slurm")
"""submitit's executors a sweep can run on."""
JOB_TIMEOUT_MIN = 24 * 60
"""The time limit of one stack's job, in minutes."""


def run_jobs(
    run: Callable[..., Any],
    executor: str,
    calls: Sequence[tuple],
    options: dict[str, Any],
    out: Path,
) -> None:
    """Run ``run`` (a module-level function: it is pickled) on each argument tuple of
    ``calls``, with the keyword ``options``, as a submitit job ('local': on this machine,
    one job at a time, since a stack's training uses every core; 'slurm': one job array).
    Job logs go to ``out/jobs``; a failed job is reported with the end of its log."""
    try:
        import submitit
    except ImportError:
        raise HeadcoopError("--executor needs submitit: pip install submitit") from None
    if executor not in EXECUTORS:
        raise HeadcoopError(f"unknown executor {executor!r}: choose from {', '.join(EXECUTORS)}")
    runner = submitit.AutoExecutor(folder=out / "jobs" / "%j", cluster=executor)
    runner.update_parameters(timeout_min=JOB_TIMEOUT_MIN, name="headcoop-stack")
    if executor == "slurm":
        with runner.batch():
            jobs = [runner.submit(run, *args, **options) for args in calls]
        _wait(jobs)
    else:
        for args in calls:
            _wait([runner.submit(run, *args, **options)])


def _wait(jobs: list) -> None:
    """Wait for every job; a job that failed, or left the Slurm queue without a result
    (cancelled or killed), is one error, and the jobs still queued or running are cancelled.
    Every finished result stays: a rerun resumes."""
    try:
        for job in jobs:
            _wait_one(job)
    except HeadcoopError:
        for job in jobs:
            if not job.done():
                job.cancel(check=False)
        raise


def _wait_one(job: Any) -> None:
    while not job.done():
        if _left_the_queue(job):
            raise HeadcoopError(
                f"sweep job {job.job_id} ended without a result (cancelled or killed?): "
                "run again to resume"
            )
        time.sleep(JOB_POLL_SECONDS)
    try:
        job.result()
    except Exception as exc:  # submitit raises its own errors, or the job's
        tail = " ".join(str(exc).strip().splitlines()[-3:])
        raise HeadcoopError(f"sweep job {job.job_id} failed: {tail}") from None


JOB_POLL_SECONDS = 2.0
"""How often `_wait` looks at a job that is not done."""


def _left_the_queue(job: Any) -> bool:
    """Whether a Slurm job is out of the queue with no result written. submitit learns a job's
    end from ``sacct``, which a cluster without accounting lacks: there a cancelled job would
    be waited for forever."""
    if type(job).__name__ != "SlurmJob":
        return False
    listed = subprocess.run(
        ["squeue", "-h", "-j", str(job.job_id), "-o", "%T"], capture_output=True, text=True
    )
    if listed.stdout.strip():
        return False
    time.sleep(JOB_POLL_SECONDS)  # a result written as the job left the queue
    return not job.done(force_check=True) and not job.paths.result_pickle.exists()
