"""How the process gets its memory from the operating system.

The batched solvers allocate and free arrays of tens of megabytes many times a second. glibc's
malloc serves blocks of 32 MB and more (and smaller ones, once its heap shrinks) straight from
the operating system, which hands them back zeroed, one page fault per 4 KB: the all-subsets
s-acc of a 16-head model took 19 million page faults, half its time. `keep_freed_memory`
makes malloc keep what is freed for the next allocation. The command line and the sweep
workers call it at start; from Python, call it once before long analyses.

Every allocation that grows with user input (a model's size and context, a task's splits) is
estimated first and refused above one budget, `memory_budget`, in one line naming what asked.
"""

import ctypes
import ctypes.util
import os

from headcoop.errors import HeadcoopError

MAX_MEMORY = "HEADCOOP_MAX_MEMORY"
"""The environment setting of the budget, in GiB."""
DEFAULT_MAX_MEMORY_GIB = 4.0

_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4


def keep_freed_memory() -> bool:
    """Have glibc's malloc keep freed memory for reuse (no block served by its own mapping,
    no heap returned to the system), for the rest of the process. The cost: the process keeps
    its peak size. Returns whether it took effect (False where the C library is not glibc)."""
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError, TypeError):
        return False
    return bool(mallopt(_M_MMAP_MAX, 0)) and bool(mallopt(_M_TRIM_THRESHOLD, 2**31 - 1))


def memory_budget() -> float:
    """Bytes a model (or an allocation that grows with user input) may ask for:
    ``HEADCOOP_MAX_MEMORY`` GiB, 4 by default."""
    text = os.environ.get(MAX_MEMORY, "")
    try:
        gib = float(text) if text else DEFAULT_MAX_MEMORY_GIB
    except ValueError:
        gib = float("nan")
    if not 0 < gib < 2**20:
        raise HeadcoopError(f"{MAX_MEMORY} must be a positive number of GiB, got {text!r:.40}")
    return gib * 2**30


def check_bytes(need: int | float, what: str) -> int | float:
    """``need``, refused in one line naming ``what`` asks for it (the parameter to lower) where
    it is over `memory_budget`."""
    budget = memory_budget()
    if need > budget:
        raise HeadcoopError(
            f"{what} would take about {need / 2**30:.1f} GiB, over the budget of "
            f"{budget / 2**30:.1f} GiB (lower it, or raise the budget with {MAX_MEMORY}=GiB)"
        )
    return need
