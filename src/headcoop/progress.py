"""Progress for people and for logs: a bar that redraws itself on a terminal, one line per
stage (its count and time) where the output is a file or a CI log, so that a log reads as a
list of what happened rather than hundreds of kilobytes of carriage-return redraws.
"""

import sys
import time
from collections.abc import Iterable, Iterator
from typing import Any


def progress_bar(iterable: Iterable | None = None, *, disable: bool = False, **options: Any) -> Any:
    """``tqdm(iterable, **options)`` where standard error is a terminal; elsewhere a
    `StageLine` with the same options, which prints once, when the stage ends."""
    if not disable and not sys.stderr.isatty():
        return StageLine(iterable, **options)
    from tqdm.auto import tqdm

    return tqdm(iterable, disable=disable, **options)


class StageLine:
    """The part of tqdm's interface that headcoop uses (iteration, ``with``, ``update``,
    ``set_postfix``, ``close``), printing ``desc: n/total units in t s`` once, at the end."""

    def __init__(
        self,
        iterable: Iterable | None = None,
        desc: str = "",
        total: int | None = None,
        unit: str = "it",
        initial: int = 0,
        **_: Any,
    ) -> None:
        self.iterable, self.desc, self.unit = iterable, desc, unit
        self.total = len(iterable) if total is None and hasattr(iterable, "__len__") else total
        self.n, self.postfix, self.closed = initial, "", False
        self.start = time.perf_counter()

    def __iter__(self) -> Iterator:
        for item in self.iterable:
            yield item
            self.n += 1
        self.close()

    def __enter__(self) -> "StageLine":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def update(self, n: int = 1) -> None:
        self.n += n

    def set_postfix(self, **values: Any) -> None:
        self.postfix = ", " + ", ".join(f"{k} {v}" for k, v in values.items())

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        count = f"{self.n:,}" + (f"/{self.total:,}" if self.total is not None else "")
        seconds = time.perf_counter() - self.start
        units = self.unit + ("es" if self.unit.endswith(("ss", "sh", "tch", "x")) else "s")
        line = f"{self.desc}: {count} {units} in {seconds:.1f} s{self.postfix}"
        print(line, file=sys.stderr, flush=True)
