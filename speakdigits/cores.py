"""How many cores a stage may use, and worker processes that use one each.

A stage runs its work on ``available_cores()`` processes (or threads, for
TensorFlow). Each worker process keeps its numerical libraries (BLAS, OpenMP)
to one thread: the processes are the parallelism, and a BLAS that starts a
thread per core in every worker makes 2 workers x 2 threads fight over 2 cores,
spinning instead of working (measured: extraction 3.7 times slower in wall time).
"""

from __future__ import annotations

import contextlib
import ctypes
import multiprocessing
import os
import signal
import sys
from collections.abc import Callable, Iterator

from threadpoolctl import threadpool_limits

from speakdigits import librosa_kernels
from speakdigits.errors import PipelineError

#: Environment variable that caps the cores every stage uses (e.g. 1 per experiment
#: when ``dvc queue start -j 2`` runs two on a 2-core machine).
CORES_ENV = "SPEAKDIGITS_CORES"

# Read by OpenMP, OpenBLAS, MKL and numba when a library loads after the fork.
_THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS")


def available_cores() -> int:
    """The cores this process may use: its CPU affinity, capped by ``$SPEAKDIGITS_CORES``.

    The affinity (``os.sched_getaffinity``) is what ``taskset``, a container's
    cpuset or a job scheduler actually grants, unlike ``os.cpu_count()``, the
    machine's total.

    Raises
    ------
    PipelineError
        When ``$SPEAKDIGITS_CORES`` is set but is not a positive integer.
    """
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    cap = os.environ.get(CORES_ENV, "").strip()
    if cap:
        if not cap.isdigit() or int(cap) < 1:
            raise PipelineError(f"{CORES_ENV}={cap!r}: expected a positive number of cores")
        cores = min(cores, int(cap))
    return max(1, cores)


@contextlib.contextmanager
def spawned_pool(jobs: int, initializer: Callable | None = None, initargs: tuple = ()) -> Iterator:
    """A pool of ``jobs`` spawned worker processes (``initializer`` defaults to :func:`init_worker`).

    Spawned, not forked: a fork copies one thread of a process that may run several (a test runner's,
    TensorFlow's), and a lock another thread held stays locked in the child. The workers ignore Ctrl-C
    from their first instruction: SIGINT is ignored while they are started, and an ignored signal stays
    ignored across exec, where Python installs no handler of its own. Ignored from their initializer
    only, a worker interrupted while still importing printed a traceback over the stage's one-line error.
    """
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        pool = multiprocessing.get_context("spawn").Pool(
            jobs, initializer=initializer or init_worker, initargs=initargs
        )
    finally:
        signal.signal(signal.SIGINT, previous)
    with pool:
        yield pool


def init_worker() -> None:
    """Initializer of every worker process: one thread per numerical library, freed memory kept
    for reuse, librosa's kernels compiled or loaded one process at a time (:mod:`speakdigits.librosa_kernels`),
    and Ctrl-C left to the parent (which removes the half-built output once)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    os.environ.update({name: "1" for name in _THREAD_VARIABLES})
    threadpool_limits(1)
    keep_freed_memory()
    librosa_kernels.ready()


def one_thread_each() -> threadpool_limits:
    """For work that a worker of :func:`spawned_pool` does when the pool is too small to start: one
    thread per numerical library here too, as :func:`init_worker` gives each worker, so that the
    result is the same bytes on one process or several. Left on every core, OpenBLAS split a product
    over its threads and rounded it otherwise (DNSMOS's P.808 rating moved by 2e-7). A context manager."""
    return threadpool_limits(1)


def mapped(
    func: Callable, tasks: list, *, per_process: int, jobs: int | None = None, most_per_chunk: int | None = None
) -> Iterator:
    """``func`` of each of ``tasks``, yielded in order as they are done: on ``jobs`` spawned processes (by
    default every core the process may use), but no more than give each ``per_process`` tasks, for a worker
    takes seconds to start (it imports its libraries); in this process, one thread each
    (:func:`one_thread_each`), when that leaves one. Each task's result must depend on the task alone: then
    it is the same bytes whatever the number of processes. ``most_per_chunk`` caps the tasks sent to a
    worker at once, so that a caller hears of progress as it comes."""
    jobs = min(jobs or available_cores(), max(1, len(tasks) // per_process))
    if jobs <= 1:
        librosa_kernels.ready()  # as a worker's initializer does
        with one_thread_each():
            yield from map(func, tasks)
        return
    chunk = max(1, len(tasks) // (4 * jobs))
    with spawned_pool(jobs) as pool:
        yield from pool.imap(func, tasks, chunksize=min(chunk, most_per_chunk or chunk))


# glibc's mallopt() parameters (malloc.h).
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3


def keep_freed_memory(threshold: int = 64 << 20) -> None:
    """Let glibc reuse freed blocks of up to ``threshold`` bytes instead of returning them to the kernel.

    A worker makes the same large temporaries for every clip (an STFT of
    one clip is about 1 MB). By default glibc maps each from the kernel and
    unmaps it on free, or trims the heap, so every clip pays page faults
    again: measured, 1 ms of kernel time per FSDD clip, more than the work
    itself. With this, the process keeps up to ``threshold`` of freed heap.
    No effect outside glibc.
    """
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(None)
        libc.mallopt(_M_MMAP_THRESHOLD, threshold)
        libc.mallopt(_M_TRIM_THRESHOLD, 2 * threshold)
    except (OSError, AttributeError):  # not glibc (musl has no mallopt)
        pass
