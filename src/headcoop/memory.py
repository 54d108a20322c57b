"""How the process gets its memory from the operating system.

The batched solvers allocate and free arrays of tens of megabytes many times a second. glibc's
malloc serves blocks of 32 MB and more (and smaller ones, once its heap shrinks) straight from
the operating system, which hands them back zeroed, one page fault per 4 KB: the all-subsets
s-acc of a 16-head model took 19 million page faults, half its time. `keep_freed_memory`
makes malloc keep what is freed for the next allocation. The command line and the sweep
workers call it at start; from Python, call it once before long analyses.
"""

import ctypes
import ctypes.util

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
