"""Elementwise work split over threads.

NumPy releases the GIL inside ufunc loops and copies of large arrays, so
independent slices of one elementwise computation run in parallel in plain
Python threads. ``parallel_slices`` cuts ``range(n)`` (the batch axis, or a flat
length) into one contiguous chunk per thread; each chunk writes only its own
part of preallocated outputs, so the result is bit-identical to the serial one.
GEMMs stay single calls: OpenBLAS threads those itself.
"""
import os
import threading
from concurrent.futures import ThreadPoolExecutor

# Below this many elements touched, the handoff (tens of microseconds) costs more than it saves.
MIN_WORK = 1 << 16

_lock = threading.Lock()
_local = threading.local()    # .inside: this thread is running a chunk (nested calls run inline)
_num_threads = None
_executor = None


def _default_threads():
    env = os.environ.get("CNNLAB_NUM_THREADS")
    if env:
        return max(1, int(env))
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def num_threads():
    """Threads used for elementwise work (``CNNLAB_NUM_THREADS``, else the cores this process may use)."""
    global _num_threads
    if _num_threads is None:
        _num_threads = _default_threads()
    return _num_threads


def set_num_threads(n):
    """Use ``n`` threads from now on; 1 runs everything inline in the calling thread."""
    global _num_threads, _executor
    n = int(n)
    if n < 1:
        raise ValueError(f"set_num_threads: n must be >= 1, got {n}")
    with _lock:
        old, _executor = _executor, None
        _num_threads = n
    if old is not None:
        old.shutdown(wait=True)


def _pool():
    global _executor
    with _lock:
        if _executor is None:
            _executor = ThreadPoolExecutor(max_workers=num_threads() - 1, thread_name_prefix="cnnlab")
        return _executor


def _forget_pool():
    global _executor, _lock
    _executor, _lock = None, threading.Lock()


# a forked child has the executor but none of its threads: start afresh there
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pool)


def _run(fn, sl):
    _local.inside = True
    try:
        fn(sl)
    finally:
        _local.inside = False


def parallel_slices(fn, n, work=None):
    """Call ``fn(slice)`` on contiguous chunks covering ``range(n)``, one per thread, and wait.

    ``work`` is the number of elements touched (default ``n``); below ``MIN_WORK``, with one
    thread, or when called from inside a chunk, ``fn(slice(0, n))`` runs inline. The first
    chunk runs in the calling thread. The first exception raised by any chunk is re-raised
    once every chunk has finished.
    """
    k = min(num_threads(), n)
    if k <= 1 or (n if work is None else work) < MIN_WORK or getattr(_local, "inside", False):
        fn(slice(0, n))
        return
    bounds = [n * i // k for i in range(k + 1)]
    pool = _pool()
    futures = [pool.submit(_run, fn, slice(bounds[i], bounds[i + 1])) for i in range(1, k)]
    error = None
    try:
        _run(fn, slice(bounds[0], bounds[1]))
    except BaseException as e:  # still wait: the other chunks are writing into shared outputs
        error = e
    for f in futures:
        try:
            f.result()
        except BaseException as e:
            error = error or e
    if error is not None:
        raise error


def flat(a):
    """``a`` as a 1-D view, or None when that would need a copy (writes must reach ``a``)."""
    return a.reshape(-1) if a.flags.c_contiguous else None
