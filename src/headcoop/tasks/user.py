"""A researcher's own task, checked where it meets headcoop.

A task class from outside the package (``--task FILE.py:CLASS``, ``MODULE:CLASS``, or one
registered by a user's file) is wrapped in `UserTask`: each protocol method it implements is
called through one guard that turns an error raised in the user's code into one line naming the
file, the method and the error (the stack stays attached as the cause, shown by ``--debug``),
and checks what the method returned before any engine reads it: a split that is empty, targets
of the wrong shape or sequences that disagree with their readouts are refused here, not deep in
a forward pass.
"""

import inspect
from typing import Any

import torch

from headcoop.errors import HeadcoopError
from headcoop.tasks.base import Batch


def is_users(cls: type) -> bool:
    """Whether ``cls`` is defined outside headcoop's package (a researcher's own task)."""
    return not cls.__module__.startswith("headcoop.")


def where_defined(cls: type) -> str:
    """``file.py:Class``, or ``module:Class`` where the file is unknown."""
    try:
        return f"{inspect.getsourcefile(cls)}:{cls.__qualname__}"
    except TypeError:
        return f"{cls.__module__}:{cls.__qualname__}"


def failed(where: str, method: str, exc: BaseException) -> HeadcoopError:
    """The error ``exc`` raised in the user's ``method``, in one line."""
    first = next(iter(str(exc).strip().splitlines()), "")
    return HeadcoopError(f"task {where}, in {method}(): {type(exc).__name__}: {first:.300}")


class UserTask:
    """A user's task behind a guard: the same members and class (``isinstance`` sees the
    task's own), each method's errors in one line and its results checked (see the module's
    docstring)."""

    def __init__(self, task: Any, where: str) -> None:
        self.task, self.where = task, where

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") or "task" not in self.__dict__:
            raise AttributeError(name)
        return getattr(self.task, name)

    def __repr__(self) -> str:
        return f"UserTask({self.where})"

    @property
    def __class__(self) -> type:
        return type(self.task)

    def __reduce__(self) -> tuple:
        return UserTask, (self.task, self.where)

    def __eq__(self, other: object) -> bool:
        """Equal to the task it guards, as that task compares (guarded or not)."""
        return self.task == (other.task if isinstance(other, UserTask) else other)

    def __hash__(self) -> int:
        return hash(self.task)

    def _call(self, method: str, *args: Any) -> Any:
        try:
            return getattr(self.task, method)(*args)
        except HeadcoopError:
            raise
        except Exception as exc:  # a user's code may fail in any way
            raise failed(self.where, method, exc) from exc

    def _refuse(self, method: str, problem: str) -> HeadcoopError:
        return HeadcoopError(f"task {self.where}, {method}(): {problem}")

    def split(self, name: str) -> torch.Tensor:
        examples = self._call("split", name)
        if not isinstance(examples, torch.Tensor) or examples.ndim == 0:
            raise self._refuse("split", f"{name!r} must be a tensor of examples")
        if len(examples) == 0:
            raise self._refuse("split", f"{name!r} has no examples")
        return examples

    def targets(self, examples: torch.Tensor) -> torch.Tensor:
        targets = self._call("targets", examples)
        shape = (len(examples), len(self.task.readouts))
        if not isinstance(targets, torch.Tensor) or tuple(targets.shape) != shape:
            found = tuple(targets.shape) if isinstance(targets, torch.Tensor) else type(targets)
            raise self._refuse("targets", f"gave {found}, not a tensor of shape {shape}")
        return targets

    def sequences(self, examples: torch.Tensor) -> Batch:
        return self._batch("sequences", examples)

    def bags(self, examples: torch.Tensor) -> Batch:
        return self._batch("bags", examples)

    def _batch(self, method: str, examples: torch.Tensor) -> Batch:
        batch = self._call(method, examples)
        if not isinstance(batch, Batch):
            raise self._refuse(method, f"gave a {type(batch).__name__}, not a Batch")
        if len(batch) != len(examples):
            raise self._refuse(method, f"gave {len(batch)} rows for {len(examples)} examples")
        try:
            return batch.check(len(self.task.vocab), len(self.task.readouts))
        except HeadcoopError as exc:
            raise self._refuse(method, str(exc)) from None

    def lengths(self, examples: torch.Tensor) -> torch.Tensor:
        lengths = self._call("lengths", examples)
        if not isinstance(lengths, torch.Tensor) or tuple(lengths.shape) != (len(examples),):
            raise self._refuse("lengths", f"must give one length per example ({len(examples)})")
        return lengths

    def to_config(self) -> dict[str, Any]:
        config = self._call("to_config")
        if not isinstance(config, dict):
            raise self._refuse("to_config", f"gave a {type(config).__name__}, not a dict")
        return config
