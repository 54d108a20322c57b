"""Tasks: toy languages that the model, engines, trainer and analyzers work on.

Importing this package registers the built-in tasks (``headcoop tasks`` lists them).
"""

from headcoop.tasks.base import (
    SPLITS,
    Batch,
    Readout,
    Task,
    candidate_ids,
    load_task,
    make_task,
    read_names,
    register_task,
    registered_tasks,
    task_from_config,
)
from headcoop.tasks.count01 import Count01, SplitSpec
from headcoop.tasks.histogram import Histogram
from headcoop.tasks.induction import Induction
from headcoop.tasks.plurality import Plurality
from headcoop.tasks.prompts import PromptTask
from headcoop.tasks.successor import Successor

__all__ = [
    "SPLITS",
    "Batch",
    "Count01",
    "Histogram",
    "Induction",
    "Plurality",
    "PromptTask",
    "Readout",
    "SplitSpec",
    "Successor",
    "Task",
    "candidate_ids",
    "load_task",
    "make_task",
    "read_names",
    "register_task",
    "registered_tasks",
    "task_from_config",
]
