"""Tasks: toy languages that the model, engine, trainer and analyzers work on."""

from headcoop.tasks.base import Batch, Task, make_task, register_task, task_from_config
from headcoop.tasks.count01 import Count01, SplitSpec

__all__ = [
    "Batch",
    "Count01",
    "SplitSpec",
    "Task",
    "make_task",
    "register_task",
    "task_from_config",
]
