"""Where a sweep's stacks run on this machine: a pool of worker processes, each with its share
of the cores, kept for every sweep of the process, stopped with it (Ctrl-C, SIGTERM) and ending
themselves when it is killed.
"""

import atexit
import contextlib
import functools
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from multiprocessing import active_children as multiprocessing_children
from multiprocessing import resource_tracker
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from concurrent.futures import ProcessPoolExecutor

from headcoop.memory import keep_freed_memory
from headcoop.progress import progress_bar


def run_workers(
    run: Callable[..., Any],
    workers: int,
    calls: Sequence[tuple],
    options: dict[str, Any],
    progress: bool = False,
) -> None:
    """Run ``run`` (a module-level function: it is pickled) on each argument tuple of
    ``calls``, in their order, with the keyword ``options`` and ``wait=True``, in ``workers``
    processes on this machine, each with an equal share of the cores, and wait for them all.
    The processes stay for the next sweep of this process (`_worker_pool`). After a
    failure no further stack starts, and the error is raised once the running ones end (their
    results are kept)."""
    from concurrent.futures import as_completed

    pool = _worker_pool(workers)
    with _ctrl_c_ignored():  # the workers start with it ignored: their parent stops them
        futures = [pool.submit(run, *args, wait=True, **options) for args in calls]
    bar = progress_bar(total=len(futures), desc="stacks", unit="stack", disable=not progress)
    try:
        for future in as_completed(futures):
            future.result()
            bar.update()
    except BaseException as exc:
        _worker_pool.cache_clear()
        if isinstance(exc, KeyboardInterrupt):  # Ctrl-C or SIGTERM: the workers stop now
            for process in multiprocessing_children():
                process.terminate()
        pool.shutdown(cancel_futures=True)  # start no more stacks; running ones end
        raise
    finally:
        bar.close()


@functools.cache
def _worker_pool(workers: int) -> "ProcessPoolExecutor":
    """``workers`` fresh processes, each with an equal share of the cores, kept for every
    sweep of this process: a worker's start (importing torch, TransformerLens and the kernel)
    takes several seconds, paid once rather than once per sweep. Shut down at exit."""
    import multiprocessing
    import os
    from concurrent.futures import ProcessPoolExecutor

    threads = max(1, (os.cpu_count() or 1) // workers)
    context = multiprocessing.get_context("spawn")  # torch's thread pools do not survive fork
    # Workers stopped by Ctrl-C or SIGTERM leave their queue's semaphores to multiprocessing's
    # tracker process, which cleans them up and would say so after our one line.
    sys.warnoptions.append(f"ignore::UserWarning:{resource_tracker.__name__}")
    pool = ProcessPoolExecutor(workers, context, _start_worker, (threads, os.getpid()))
    atexit.register(_shut_down, pool)
    return pool


def _shut_down(pool: "ProcessPoolExecutor") -> None:
    """Stop the kept workers at exit; a Ctrl-C during it only ends the wait."""
    try:
        pool.shutdown()
    except KeyboardInterrupt:
        for process in multiprocessing_children():
            process.terminate()


def forget_workers() -> None:
    """Drop the kept worker processes (after they were stopped): the next sweep starts anew."""
    _worker_pool.cache_clear()


@contextlib.contextmanager
def _ctrl_c_ignored() -> Iterator[None]:
    """Ctrl-C ignored while worker processes start (submitting spawns them): a process started
    with it ignored keeps it so, Python included, and a terminal sends it to every process of
    the group; the parent alone handles it and stops its workers."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _start_worker(threads: int, parent: int) -> None:
    """A worker's start: its share of the cores, malloc keeping freed memory, and a watch on
    its parent (process ``parent``): a parent killed with SIGKILL cannot stop its workers, so
    each ends itself once it is orphaned."""
    torch.set_num_threads(threads)
    keep_freed_memory()
    threading.Thread(target=_exit_when_orphaned, args=(parent,), daemon=True).start()


ORPHAN_CHECK_SECONDS = 0.5
"""How often a worker looks whether its parent is still alive."""


def _exit_when_orphaned(parent: int) -> None:
    """End this process when its parent is gone (it is then re-parented: another parent id)."""
    import os

    while os.getppid() == parent:
        time.sleep(ORPHAN_CHECK_SECONDS)
    os._exit(1)
