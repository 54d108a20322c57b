"""`explore`: the head explorer of one checkpoint or model, with the analysis it shows."""

import contextlib
import json
import logging
import time
from pathlib import Path
from typing import Any

from headcoop.compat import Model
from headcoop.device import Device
from headcoop.errors import HeadcoopError
from headcoop.explore.explorer_page import write_explorer
from headcoop.explore.head_data import explorer_data
from headcoop.heads.analysis import HeadAnalysis
from headcoop.runinfo import machine
from headcoop.tasks.base import Task

log = logging.getLogger(__name__)


def explore(
    model: Model | str | Path,
    out: str | Path,
    task: Task | None = None,
    device: Device = None,
    analysis: HeadAnalysis | None = None,
) -> Path:
    """Write ``out/explorer.html`` for a model (or a checkpoint or run directory, whose saved
    epochs then give each head's course over training).

    The page shows ``analysis`` where
    one is given; otherwise the analysis saved in ``out``, made there first unless the one
    there is of the same weights.

    Returns:
        The page's path.
    """
    from headcoop.loading.checkpoint import CHECKSUM, load_with_task

    clock = time.perf_counter()
    run = None
    if not isinstance(model, Model):
        run, (model, task, config) = model, load_with_task(model, task, device)
        weights = config.get(CHECKSUM)
    elif task is None:
        raise HeadcoopError("explore needs a task for a model object")
    else:
        weights = None
    if analysis is None:
        task_config = json.loads(json.dumps(task.to_config()))  # as summary.json holds it
        origin = {"checkpoint": str(run), "weights_sha256": weights, "task_config": task_config}
        _analyse(model, task, out, origin)
        analysis = HeadAnalysis.load(out)
    log.info("measuring each head's circuits and samples")
    data = explorer_data(model, task, analysis, run)
    about = {"checkpoint": str(run), "task": task.to_config(), "machine": machine()}
    about["seconds"] = round(time.perf_counter() - clock, 1)
    return write_explorer(data, out, about)


def _analyse(model: Model, task: Task, out: str | Path, origin: dict[str, Any]) -> None:
    """Save the analysis of ``model`` in ``out`` unless the one there is of these weights on
    this task, with the same settings."""
    from headcoop.heads.analyze import analyze

    with contextlib.suppress(HeadcoopError):  # none there, or not whole
        summary = HeadAnalysis.load(out).summary
        if origin["weights_sha256"] and all(summary.get(k) == v for k, v in origin.items()):
            log.info("reusing the analysis in %s", out)
            return
    log.info("analysing every head (the explorer shows its numbers)")
    analyze(model, task).save(out, **origin)
