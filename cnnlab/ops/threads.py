"""Elementwise work split over threads.

NumPy releases the GIL inside ufunc loops and copies of large arrays, so
independent slices of one elementwise computation run in parallel in plain
Python threads. ``parallel_slices`` cuts ``range(n)`` (the batch axis, or a flat
length) into one contiguous chunk per thread; each chunk writes only its own
part of preallocated outputs, so the result is bit-identical to the serial one.

GEMMs run inside the chunks too, each on one BLAS thread (``matmul`` splits the
rows of the output). OpenBLAS's own workers busy-wait for a long time after
every call (2**28 cycles by default) and took the cores away from the chunk
threads that followed: measured, conv2d's dx with its per-tap GEMMs took 43 ms
with OpenBLAS threading each GEMM and 22 ms with one BLAS thread per chunk.
Where the BLAS offers no per-thread setting (not OpenBLAS >= 0.3.27), chunks
that call it run serially and the BLAS threads itself, as before.
"""
import contextlib
import ctypes
import os
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from .gemm import gemm

# Below this many elements touched, the handoff costs more than it saves: waking a pool thread
# and waking the caller again took 70-100 us here (a lock round trip between two threads), about
# a 2^18-element pass. Measured on seed001's step: 12.8 ms at 2^16, 12.1 at 2^18, 12.7 at 2^20.
MIN_WORK = 1 << 18

_lock = threading.Lock()
_local = threading.local()    # .inside: this thread is running a chunk (nested calls run inline)
_num_threads = None
_executor = None


def _find_blas_local():
    """OpenBLAS's ``openblas_set_num_threads_local`` from the library NumPy loaded, or None."""
    try:
        with open("/proc/self/maps") as f:
            paths = {line.split()[-1] for line in f if "openblas" in line.lower() and "/" in line}
    except OSError:  # not Linux
        return None
    for path in sorted(paths):
        try:
            fn = ctypes.CDLL(path).openblas_set_num_threads_local
        except (OSError, AttributeError):
            continue
        fn.argtypes, fn.restype = [ctypes.c_int], ctypes.c_int
        return fn
    return None


_blas_local = _find_blas_local()


def blas_in_chunks():
    """True when each chunk can run its GEMMs on one BLAS thread of its own."""
    return _blas_local is not None


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


def _run_in_worker(fn, sl):
    # Our pool threads run nothing but chunks, so their BLAS setting is never put back.
    # (OpenBLAS's "local" setting acts process-wide in some builds: putting it back per
    # chunk raced with the calling thread's and could leave the process at one thread.)
    if _blas_local is not None:
        _blas_local(1)
    _run(fn, sl)


@contextlib.contextmanager
def _one_blas_thread():
    """The calling thread's BLAS on one thread for the duration; its setting restored after."""
    old = _blas_local(1) if _blas_local is not None else None
    try:
        yield
    finally:
        if old is not None:
            _blas_local(old)


def parallel_slices(fn, n, work=None, blas=False):
    """Call ``fn(slice)`` on contiguous chunks covering ``range(n)``, one per thread, and wait.

    ``work`` is the number of elements touched (default ``n``); below ``MIN_WORK``, with one
    thread, or when called from inside a chunk, ``fn(slice(0, n))`` runs inline. The first
    chunk runs in the calling thread. ``blas`` says that ``fn`` calls the BLAS: it then does so
    with one BLAS thread, inline or not; without a per-thread BLAS setting it runs inline and
    the BLAS threads itself, so that its threads and ours do not oversubscribe the cores. The first exception raised
    by any chunk is re-raised once every chunk has finished.
    """
    k = min(num_threads(), n)
    if getattr(_local, "inside", False) or (blas and _blas_local is None):
        fn(slice(0, n))
        return
    if k <= 1 or (n if work is None else work) < MIN_WORK:
        # inline, but still on one BLAS thread: a small GEMM on OpenBLAS's threads would wake
        # them, and they would spin through the chunks that follow
        with _one_blas_thread() if blas else contextlib.nullcontext():
            fn(slice(0, n))
        return
    bounds = [n * i // k for i in range(k + 1)]
    pool = _pool()
    error = None
    with _one_blas_thread():  # restored only once every chunk is done
        futures = [pool.submit(_run_in_worker, fn, slice(bounds[i], bounds[i + 1])) for i in range(1, k)]
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


def matmul(a, b, out=None, split=None):
    """``a @ b`` for 2-D operands, split over threads by rows (``split=0``) or columns
    (``split=1``) of the output; by default along its longer side, so that each thread
    reads its share of the larger operand (a dense layer's kernel at batch 128) instead of
    all of it. Each output element still sums over all of the inner axis in one GEMM, so
    the result does not depend on the number of threads."""
    m, n = a.shape[0], b.shape[1]
    if split is None:
        split = 0 if m >= n else 1
    if out is None:
        out = np.empty((m, n), np.result_type(a, b))

    def rows(sl):
        gemm(a[sl], b, out[sl])

    def cols(sl):
        gemm(a, b[:, sl], out[:, sl])

    parallel_slices(rows if split == 0 else cols, m if split == 0 else n, m * n * a.shape[1] // 16, blas=True)
    return out


BLOCK_BYTES = 1 << 18   # of both operands' rows, per matmul_tn block
MIN_BLOCK_ROWS = 512
MIN_BLOCKS = 16          # fewer, or K > MAX_BLOCKED_K: one GEMM over all rows (measured
MAX_BLOCKED_K = 128      # no faster blocked: 3x3 convs from 32 channels up)


def matmul_tn(a, b):
    """``a.T @ b`` for tall ``a`` (M, K) and ``b`` (M, F), as conv2d's dW: one GEMM per
    block of rows, the partial products summed in block order.

    One GEMM over all M rows, its output too small to reuse the operands it packs,
    was measured 1.4-3x slower than blocks that stay in cache when K is small (dW over
    128 images: 1 -> 32 channels 5x5 at 28x28, 4.7 vs 1.5 ms; 12 -> 16 channels 3x3 at
    13x13, 0.87 vs 0.60 ms). The blocks depend only on the shapes, so the result does
    not depend on the number of threads.
    """
    M, K = a.shape
    F = b.shape[1]
    dtype = np.result_type(a, b)
    rows = max(MIN_BLOCK_ROWS, BLOCK_BYTES // (dtype.itemsize * (K + F)))
    n_blocks = -(-M // rows)
    # row-major a: (b^T a)^T reads both blocks along their rows; K-major a: a^T is the row-major one
    k_major = a.strides[0] < a.strides[1]
    lhs, rhs = (a, b) if k_major else (b, a)
    if n_blocks < MIN_BLOCKS or K > MAX_BLOCKED_K:
        total = matmul(lhs.T, rhs, split=0 if k_major else 1)
    else:
        parts = np.empty((n_blocks, lhs.shape[1], rhs.shape[1]), dtype)    # (blocks, K, F) or (blocks, F, K)

        def blocks(sl):
            for k in range(sl.start, sl.stop):
                gemm(lhs[k * rows:(k + 1) * rows].T, rhs[k * rows:(k + 1) * rows], parts[k])

        parallel_slices(blocks, n_blocks, M * K * F // 16, blas=True)
        total = parts.sum(axis=0)
    return total if k_major else total.T                                   # (K, F)
