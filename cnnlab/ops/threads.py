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

Handing a chunk to a sleeping thread and waiting asleep for its end each cost a wake-up,
40-60 us on this project's 2-core VM (a parallel 128x576x256 GEMM: 289 us, against 283 us
on one thread). So on Linux, a pool thread and the caller wait on POSIX spinlocks, through
ctypes, which releases the GIL while they spin: the same GEMM took 194 us. An idle pool
thread spins for ``PARK_AFTER_S`` at most (as OpenMP runtimes spin-wait, then sleep), and
then a watchdog parks it on a plain lock until the next chunk.

A pool thread still takes its turn at the GIL to start each chunk, and the caller to go on
after the last: 30-80 us each on that VM. So a model runs the layers that treat each sample on
its own (convolutions, pooling, ReLU) inside a ``pipeline``: each thread keeps the same samples
from one layer to the next, and the pool thread's chunks queue up behind each other instead of
being waited for one by one (``parallel_samples``).
"""
import collections
import contextlib
import ctypes
import os
import sys
import threading
import time

import numpy as np

from . import gemm as _gemm
from .gemm import gemm, mkl_takes

# Below this many elements touched, the handoff costs more than it saves: the pool thread
# must take the GIL to start its chunk, and both threads' short NumPy calls then wait on each
# other for it (a 64K-float pass per thread: 41 us in parallel vs 25 us for both inline).
# Measured on seed001's whole step (ms), with sleeping handoffs: 15.7 at 2^16 and 2^17, 15.2 at
# 2^18, 16.0 at 2^19 (seed000 flat from 2^16 to 2^19); with spinning ones, 11.4 at 2^15, 11.2
# at 2^16 and 2^17, 10.9 at 2^18, 11.2 at 2^19.
MIN_WORK = 1 << 18

_lock = threading.Lock()
_local = threading.local()    # .inside: this thread is running a chunk (nested calls run inline)
_num_threads = None
_workers = None              # list of _Worker, created on first use
_busy = threading.RLock()    # held by the thread whose chunks the workers are running


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
    global _num_threads, _workers
    n = int(n)
    if n < 1:
        raise ValueError(f"set_num_threads: n must be >= 1, got {n}")
    join_background()
    with _busy, _lock:  # _busy first, as in parallel_slices
        old, _workers = _workers, None
        _num_threads = n
    for w in old or ():
        w.stop()


def _load_spinlocks():
    """``(lock, unlock, init)``: POSIX spinlock functions from the C library, or None off Linux."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None)
        fns = libc.pthread_spin_lock, libc.pthread_spin_unlock, libc.pthread_spin_init
    except (OSError, AttributeError):
        return None
    for f in fns:
        f.restype = ctypes.c_int
    fns[0].argtypes = fns[1].argtypes = [ctypes.c_void_p]
    fns[2].argtypes = [ctypes.c_void_p, ctypes.c_int]
    return fns


_spin_fns = _load_spinlocks()
USE_SPIN = _spin_fns is not None   # False: pool threads and callers sleep on plain locks instead
PARK_AFTER_S = 0.005               # an idle pool thread spins this long before it is parked


class _SpinSignal:
    """A binary semaphore on a POSIX spinlock, created taken. ``acquire`` busy-waits inside a
    ctypes call, so the GIL is free meanwhile and the wait ends within a cache miss of
    ``release`` instead of a wake-up. Releasing twice leaves one release."""

    def __init__(self):
        lock, self._unlock, init = _spin_fns
        self._buf = ctypes.create_string_buffer(128)
        addr = ctypes.addressof(self._buf)
        self._addr = addr + (-addr) % 64  # a cache line of its own: no false sharing
        init(self._addr, 0)
        lock(self._addr)
        self._lock = lock

    def acquire(self):
        self._lock(self._addr)

    def release(self):
        self._unlock(self._addr)


class _LockSignal:
    """The same on a plain lock: waiters sleep."""

    def __init__(self):
        self._l = threading.Lock()
        self._l.acquire()

    def acquire(self):
        self._l.acquire()

    def release(self):
        try:
            self._l.release()
        except RuntimeError:  # already released: one release is enough (see _Worker.wait)
            pass


_PARK = object()   # a pool thread's task meaning "sleep until the next chunk"


class _Worker:
    """One pool thread, running the chunks handed to it in order, through two signals.

    Not a ThreadPoolExecutor: its queue, futures and conditions cost about 80 us more per
    handoff here (a 64K-float pass per thread: 119 us through the executor, 41 us through
    bare locks, 25 us for both passes inline). Each task carries a number; the worker
    stores it in ``finished`` before it signals ``done``, so that the caller's wait can tell
    a finished chunk from a leftover signal of an interrupted wait. Tasks queue up (see
    ``pipeline``); after a chunk fails, the ones queued behind it are skipped until the
    caller's ``wait`` collects the error.
    """

    def __init__(self, k):
        make = _SpinSignal if USE_SPIN else _LockSignal
        self.go, self.done = make(), make()   # caller -> worker: a task is queued; worker -> caller: one is done
        self.wake = threading.Lock()           # a parked worker sleeps on it
        self.wake.acquire()
        self.parked = False
        self.queue = collections.deque()       # (fn, sl, number); None: stop
        self.error = None
        self.posted = self.finished = 0
        self.thread = threading.Thread(target=self._loop, name=f"cnnlab-{k}", daemon=True)
        self.thread.start()

    def _loop(self):
        while True:
            self.go.acquire()
            while self.queue:
                task = self.queue.popleft()
                if task is None:  # stop()
                    return
                fn, sl, number = task
                task = None
                if fn is _PARK:
                    self.finished = number
                    self.done.release()
                    self.wake.acquire()
                    continue
                # Set per chunk, while the caller holds its own at one thread, and never put back:
                # OpenBLAS's "local" setting acts process-wide in some builds, so a worker's setting
                # made at any other time (or restored per chunk) could race with the caller's.
                if _blas_local is not None:
                    _blas_local(1)
                if self.error is None:
                    try:
                        _run(fn, sl)
                    except BaseException as e:
                        self.error = e
                # drop the chunk's closure before signalling: the arrays it holds must look idle
                # to the workspace pool (im2col.empty) once the caller moves on
                fn = sl = None
                self.finished = number
                self.done.release()

    def submit(self, fn, sl):
        self.posted += 1
        self.queue.append((fn, sl, self.posted))
        self.go.release()
        if self.parked:
            self.parked = False
            self.wake.release()

    def wait(self):
        """Block until every queued task is done, even through a Ctrl-C (a chunk is still writing
        into shared outputs, and the next one must not find it running); return the interrupt,
        a chunk's exception, or None."""
        interrupt = self.wait_for(self.posted)
        error, self.error = self.error, None
        return interrupt or error

    def wait_for(self, number):
        """Block until task ``number`` and those before it are done, as ``wait`` does; return the
        interrupt, or None (a chunk's exception stays for ``wait`` to collect)."""
        interrupt = None
        while True:
            try:
                # an interrupt can land between a successful acquire and this test, or leave a
                # release unconsumed: the number decides, and a leftover release only costs
                # the next wait one more turn of this loop
                while self.finished < number:
                    self.done.acquire()
                break
            except BaseException as e:  # KeyboardInterrupt while blocked
                interrupt = interrupt or e
        return interrupt

    def park(self):
        """Put an idle spinning worker to sleep (the caller holds ``_busy``)."""
        if not self.parked:
            self.submit(_PARK, None)
            self.wait()
            self.parked = True

    def stop(self):
        self.queue.append(None)
        self.go.release()
        if self.parked:
            self.parked = False
            self.wake.release()
        self.thread.join()


_last_used = 0.0            # perf_counter() at the end of the last threaded call
_in_use = threading.Event()  # set while pool threads may be spinning
_watchdog = None


def _watch():
    """Park the pool threads once they have spun ``PARK_AFTER_S`` without a chunk."""
    while True:
        _in_use.wait()
        time.sleep(PARK_AFTER_S)
        busy = _busy
        if time.perf_counter() - _last_used < PARK_AFTER_S or not busy.acquire(blocking=False):
            continue
        try:
            if time.perf_counter() - _last_used >= PARK_AFTER_S:
                for w in _workers or ():
                    w.park()
                _in_use.clear()
        finally:
            busy.release()


def _pool():
    global _workers, _watchdog
    with _lock:
        if _workers is None:
            _workers = [_Worker(k) for k in range(1, num_threads())]
        if USE_SPIN and _workers and _watchdog is None:
            _watchdog = threading.Thread(target=_watch, name="cnnlab-watchdog", daemon=True)
            _watchdog.start()
        return _workers


def _forget_pool():
    global _workers, _lock, _busy, _watchdog, _in_use, _background
    _workers, _lock, _busy = None, threading.Lock(), threading.RLock()
    _watchdog, _in_use, _background = None, threading.Event(), None


# a forked child has the workers but none of their threads: start afresh there
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pool)


def _run(fn, sl):
    _local.inside = True
    try:
        fn(sl)
    finally:
        _local.inside = False


@contextlib.contextmanager
def _one_blas_thread():
    """The calling thread's BLAS on one thread for the duration; its setting restored after."""
    old = _blas_local(1) if _blas_local is not None else None
    try:
        yield
    finally:
        if old is not None:
            _blas_local(old)


@contextlib.contextmanager
def single_thread():
    """Within the block, the calling thread runs every threaded call inline and its BLAS on one
    thread: another process has the other cores (``cnnlab.training.processes``)."""
    old = getattr(_local, "inside", False)
    _local.inside = True
    try:
        with _one_blas_thread():
            yield
    finally:
        _local.inside = old


_background = None  # (pool thread, the thread that handed it the task, ids of the arrays it writes)


@contextlib.contextmanager
def background_allowed():
    """Within the block, ``background`` may hand tasks to a pool thread; every one is done by
    the time the outermost such block ends. (A training step opens one around its backward pass
    and update: a weight gradient, needed only by the optimizer, is then computed beside the
    work that follows it.)"""
    depth = getattr(_local, "background_depth", 0)
    _local.background_depth = depth + 1
    try:
        yield
    finally:
        _local.background_depth = depth
        if depth == 0:
            join_background()


def can_background():
    """True when ``background`` would hand a task to a pool thread rather than run it inline."""
    return (getattr(_local, "background_depth", 0) > 0 and not getattr(_local, "inside", False)
            and num_threads() > 1 and (_blas_local is not None or _gemm.backend() == "mkl"))


def background(fn, writes=()):
    """Run ``fn()`` on a pool thread while the caller goes on, if ``can_background()``; else
    inline. ``writes``: the arrays ``fn`` writes, which the caller must not read before
    ``join_background`` (see ``pending``). The task holds the pool until then: the caller's next
    threaded call, or the end of ``background_allowed``, waits for it, so keep it short.

    Between two runs of a pipeline's per-sample work, the caller does the task itself while it
    waits for the pool threads' chunks of the next run (or a pool thread takes it at the
    pipeline's end, if no run comes): handed over at once, it held up the pool thread's share."""
    p = _pipe() or _aside()
    if p is not None and p.workers is not None and not p.queued and can_background():
        p.idle.append((fn, writes))
        return
    with synchronous():  # inside a pipeline: drained first, and the task is not part of it
        _start_background(fn, writes)


def _start_background(fn, writes):
    global _background
    join_background()
    if not can_background() or not _busy.acquire(blocking=False):
        with _one_blas_thread():
            fn()
        return
    try:
        w = _pool()[0]
        w.submit(lambda sl: fn(), None)
    except BaseException:
        _busy.release()
        raise
    _background = (w, threading.get_ident(), frozenset(id(a) for a in writes))


def pending(a):
    """True when the calling thread's background task may still be writing array ``a``."""
    return _background is not None and _background[1] == threading.get_ident() and id(a) in _background[2]


def join_background():
    """Wait for the calling thread's background task, if any, and re-raise its exception."""
    global _background, _last_used
    if _background is None or _background[1] != threading.get_ident():
        return
    w, _background = _background[0], None
    try:
        error = w.wait()
    finally:
        _last_used = time.perf_counter()
        _busy.release()
    if error is not None:
        raise error


class _Pipeline:
    __slots__ = ("n", "bounds", "workers", "queued", "deferred", "blas", "idle", "beside")

    def __init__(self, n):
        self.n = n
        self.bounds = self.workers = None  # set once it holds the pool (see _hold)
        self.queued = False   # chunks may be running or queued on the workers
        self.deferred = []    # functions to run once they are done (see ``defer``)
        self.blas = None      # the caller's BLAS setting, put back at the end
        self.idle = []        # (fn, writes): background tasks for the caller's next wait
        self.beside = None    # (worker, mark, last): tasks queued there after its chunk mark, up to last


def _hold(p):
    """Take the pool threads for ``p`` on its first queued chunk (a pipeline that never queues
    one costs nothing); False when another thread's chunks hold them."""
    if p.workers is not None:
        return True
    # re-entrant: with this thread's background task running, chunks queue behind it
    if not _busy.acquire(blocking=False):
        return False
    k = min(num_threads(), p.n)
    p.bounds, p.workers = [p.n * i // k for i in range(k + 1)], _pool()[:k - 1]
    # the caller's chunks run on one BLAS thread while the pool threads' may run
    p.blas = _blas_local(1) if _blas_local is not None else None
    return True


def _let_go(p):
    global _last_used
    if p.workers is None:
        return
    if p.blas is not None:
        _blas_local(p.blas)
    _last_used = time.perf_counter()
    if not _in_use.is_set():
        _in_use.set()
    _busy.release()


def _pipe():
    """The calling thread's open pipeline, or None (also inside a chunk: nested calls run inline)."""
    if getattr(_local, "inside", False):
        return None
    return getattr(_local, "pipe", None)


def _aside():
    """The calling thread's pipeline while ``synchronous`` sets it aside, or None."""
    return None if getattr(_local, "inside", False) else getattr(_local, "aside", None)


@contextlib.contextmanager
def pipeline(n):
    """Within the block, per-sample work over the same ``n`` samples (``parallel_samples``) is
    cut the same way every time, and each pool thread's chunk is queued without waiting for it:
    the pool thread goes from one layer's chunk of its samples to the next layer's, and the
    caller only waits where something needs every sample (``drain``: before any ``parallel_slices``
    or ``background``, inside ``synchronous``, and at the end of the block). A model opens one
    around the layers of its forward and backward passes that touch each sample on its own.

    Every pooled handoff used to cost a round trip: the pool thread took its turn at the GIL
    30-80 us after the caller had started its chunk, and the caller took its own back as late
    after the pool thread had finished (seed001's step: 12 such regions in 10.5 ms). Results
    do not change: each sample's work is the same, in the same order.
    """
    if _pipe() is not None or getattr(_local, "inside", False) or min(num_threads(), n) <= 1:
        yield
        return
    p = _local.pipe = _Pipeline(n)
    try:
        try:
            yield
        except BaseException:
            p.deferred.clear()  # the work failed: what waited on it is moot
            p.idle.clear()
            raise
        finally:
            _local.pipe = None  # before draining: deferred work runs as outside the block
            error = _wait_queued(p)
        if error is not None:
            raise error
        _run_deferred(p)
        idle, p.idle = p.idle, []
        for fn, writes in idle:  # no chunks came to wait for: background tasks after all
            _start_background(fn, writes)
    finally:
        _let_go(p)


def _wait_queued(p):
    """Run ``p``'s idle tasks, then wait for every chunk queued in ``p``; the interrupt or first
    error, or None."""
    error = None
    if p.queued:
        p.queued = False
        p.beside = None
        idle, p.idle = p.idle, []
        try:
            for fn, _ in idle:
                fn()
        except BaseException as e:  # still wait: the chunks are writing into shared outputs
            error = e
        for w in p.workers:
            e = w.wait()
            error = error or e
    return error


def _run_deferred(p):
    while p.deferred:
        todo, p.deferred = p.deferred, []
        for fn in todo:
            fn()


def drain():
    """Wait for the calling thread's pipelined chunks (see ``pipeline``), then run the work
    deferred until they were done. A no-op outside a pipeline."""
    p = _pipe()
    if p is None:
        return
    error = _wait_queued(p)
    if error is not None:
        p.deferred.clear()
        raise error
    _run_deferred(p)


def settle():
    """Wait for the calling thread's queued per-sample chunks: as ``drain``, except that tasks
    handed over by ``beside`` go on running (and work deferred stays deferred) meanwhile."""
    p = _pipe()
    if p is not None and p.beside is not None and _beside_busy(p):
        return
    drain()


class synchronous:
    """Within the block, the calling thread's pipeline (if any) is drained and set aside: per-sample
    work runs and is waited for as outside one (a layer that reads whole arrays between its calls).
    A class, not a generator: a model enters one per layer that is not per-sample."""

    __slots__ = ("p",)

    def __enter__(self):
        self.p = p = _pipe()
        if p is not None:
            drain()
            _local.pipe, _local.aside = None, p

    def __exit__(self, *exc):
        if self.p is not None:
            _local.pipe, _local.aside = self.p, None


def pipelined(n):
    """True when per-sample work over ``n`` samples is being pipelined (see ``pipeline``)."""
    p = _pipe()
    return p is not None and p.n == n


def defer(fn):
    """Call ``fn()`` once the queued per-sample chunks are done: now outside a pipeline or when
    none are queued, else at the next ``drain`` (a convolution's weight gradient, a sum over
    every sample, waits there while its input gradient goes on to the next layer)."""
    p = _pipe()
    if p is None or not p.queued:
        fn()
    else:
        p.deferred.append(fn)


def beside(fn):
    """Queue ``fn()`` on the pool thread behind its chunks, inside a pipeline of two threads whose
    chunks are queued; elsewhere ``defer(fn)``. The background tasks waiting for the caller's next
    wait (``background``) go there after it.

    Until those tasks are done, per-sample calls run whole on the caller, once the pool thread's
    chunks before them are (their outputs are the next layer's inputs): a model hands over a
    convolution's weight gradient, long GEMMs that release the GIL, where the caller has a
    scatter below it that a second thread gains nothing on (``pool2d.scatters``).

    ``fn`` may read what the chunks queued so far write; with more pool threads, the others'
    chunks might still be writing it, so there it is deferred.
    """
    p = _pipe()
    if p is None or not p.queued or len(p.workers) != 1:
        defer(fn)
        return
    w = p.workers[0]
    mark = w.posted if p.beside is None else p.beside[1]
    for task in [fn] + [task for task, _ in p.idle]:
        w.submit(lambda sl, task=task: task(), None)
    p.idle = []
    p.beside = (w, mark, w.posted)


def _beside_busy(p):
    """True while ``p``'s pool thread runs tasks handed over by ``beside``; then waits for the
    chunks queued there before them."""
    w, mark, last = p.beside
    if w.finished >= last:
        p.beside = None
        return False
    interrupt = w.wait_for(mark)
    if interrupt is not None:
        raise interrupt
    return True


def parallel_samples(fn, n, work=None, blas=False):
    """``parallel_slices`` over the samples of a batch, for an ``fn`` whose call on a slice of
    samples reads and writes only those samples' rows (of arrays complete before the call, or
    written by earlier per-sample calls). Inside ``pipeline(n)``, the pool threads' chunks are
    queued and the caller's runs at once (see ``pipeline``); below ``MIN_WORK`` the call waits
    for them and runs inline, as outside: tiny chunks on two threads mostly wait on each other
    for the GIL (8x8 digits, predict at batch 64: 1.58 ms queueing from 2^15, 1.29 from
    ``MIN_WORK``, 1.31 without pipelines; seed001's step 9.7, 9.57, 10.2). While the pool thread
    runs a ``beside`` task, the caller runs the whole call itself."""
    p = _pipe()
    work = n if work is None else work
    if (p is not None and p.beside is not None and n == p.n and not (blas and _blas_local is None)
            and _beside_busy(p)):
        with _one_blas_thread() if blas else contextlib.nullcontext():
            _run(fn, slice(0, n))
        return
    if (p is None or n != p.n or (blas and _blas_local is None)
            or work < MIN_WORK or not _hold(p)):
        parallel_slices(fn, n, work, blas)
        return
    for i, w in enumerate(p.workers, start=1):
        w.submit(fn, slice(p.bounds[i], p.bounds[i + 1]))
    p.queued = True
    _run(fn, slice(p.bounds[0], p.bounds[1]))


def parallel_slices(fn, n, work=None, blas=False):
    """Call ``fn(slice)`` on contiguous chunks covering ``range(n)``, one per thread, and wait.

    ``work`` is the number of elements touched (default ``n``); below ``MIN_WORK``, with one
    thread, or when called from inside a chunk, ``fn(slice(0, n))`` runs inline. The first
    chunk runs in the calling thread. ``blas`` says that ``fn`` calls the BLAS: it then does so
    with one BLAS thread, inline or not; without a per-thread BLAS setting it runs inline and
    the BLAS threads itself, so that its threads and ours do not oversubscribe the cores. The first exception raised
    by any chunk is re-raised once every chunk has finished.
    """
    p = _pipe()
    if p is None:
        _parallel_slices(fn, n, work, blas)
        return
    drain()  # then set aside for the call: per-sample calls inside it must not queue
    _local.pipe, _local.aside = None, p
    try:
        _parallel_slices(fn, n, work, blas)
    finally:
        _local.pipe, _local.aside = p, None


def _parallel_slices(fn, n, work, blas):
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
    join_background()
    if not _busy.acquire(blocking=False):
        # another thread's chunks hold the workers: run inline rather than queue behind them
        with _one_blas_thread() if blas else contextlib.nullcontext():
            fn(slice(0, n))
        return
    try:
        bounds = [n * i // k for i in range(k + 1)]
        workers = _pool()[:k - 1]
        error = None
        with _one_blas_thread():  # restored only once every chunk is done
            for i, w in enumerate(workers, start=1):
                w.submit(fn, slice(bounds[i], bounds[i + 1]))
            try:
                _run(fn, slice(bounds[0], bounds[1]))
            except BaseException as e:  # still wait: the other chunks are writing into shared outputs
                error = e
            for w in workers:
                chunk_error = w.wait()
                error = error or chunk_error
        global _last_used
        _last_used = time.perf_counter()
        if not _in_use.is_set():
            _in_use.set()
    finally:
        _busy.release()
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
MAX_MKL_PARTS = 8


def matmul_tn(a, b):
    """``a.T @ b`` for tall ``a`` (M, K) and ``b`` (M, F), as conv2d's dW: the rows cut into
    parts, one GEMM per part, the partial products summed in part order. The parts depend
    only on the shapes, so the result does not depend on the number of threads.

    With MKL, up to ``MAX_MKL_PARTS`` parts of at least ``MKL_MIN_MACS`` each, split over the
    threads. Otherwise blocks of rows that stay in cache: NumPy's OpenBLAS, given one GEMM
    over all M rows (its output too small to reuse the operands it packs), was measured
    1.4-3x slower than such blocks when K is small (dW over 128 images: 1 -> 32 channels 5x5
    at 28x28, 4.7 vs 1.5 ms; 12 -> 16 channels 3x3 at 13x13, 0.87 vs 0.60 ms). MKL takes
    such long products well, and fewer, longer GEMMs beat those blocks on 2 threads (ms):
    1 -> 12 channels 3x3 at 28x28, 0.42 vs 0.73; 12 -> 16 at 13x13, 0.64 vs 1.13; 1 -> 32 5x5,
    1.0 vs 2.0; 32 -> 64 3x3 at 14x14, 3.5 vs 3.6-3.9 (there against one GEMM per thread).
    """
    M, K = a.shape
    F = b.shape[1]
    dtype = np.result_type(a, b)
    # row-major a: (b^T a)^T reads both blocks along their rows; K-major a: a^T is the row-major one
    k_major = a.strides[0] < a.strides[1]
    lhs, rhs = (a, b) if k_major else (b, a)
    if a.dtype == b.dtype and mkl_takes(M * K * F, dtype):
        n_parts = max(1, min(MAX_MKL_PARTS, M, M * K * F // max(1, _gemm.MKL_MIN_MACS)))
        bounds = [M * k // n_parts for k in range(n_parts + 1)]
    else:
        rows = max(MIN_BLOCK_ROWS, BLOCK_BYTES // (dtype.itemsize * (K + F)))
        n_parts = -(-M // rows)
        if n_parts < MIN_BLOCKS or K > MAX_BLOCKED_K:
            total = matmul(lhs.T, rhs, split=0 if k_major else 1)
            return total if k_major else total.T                           # (K, F)
        bounds = [min(k * rows, M) for k in range(n_parts + 1)]
    parts = np.empty((n_parts, lhs.shape[1], rhs.shape[1]), dtype)         # (parts, K, F) or (parts, F, K)

    def part(sl):
        for k in range(sl.start, sl.stop):
            rows = slice(bounds[k], bounds[k + 1])
            gemm(lhs[rows].T, rhs[rows], parts[k])

    parallel_slices(part, n_parts, M * K * F // 16, blas=True)
    total = parts.sum(axis=0) if n_parts > 1 else parts[0]
    return total if k_major else total.T                                   # (K, F)
