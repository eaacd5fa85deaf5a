"""parallel_slices itself, and every threaded op bit-identical to its serial run."""
import gc
import os
import threading
import time
import weakref

import numpy as np
import pytest

from cnnlab.ops import activations, batchnorm, conv2d, dense, dropout, pool2d, threads
from cnnlab.optimizers import SGD, Adam, RMSprop


@pytest.fixture
def restore_threads():
    n = threads.num_threads()
    yield
    threads.set_num_threads(n)


@pytest.fixture(params=["spin", "locks"])
def no_threshold(request, monkeypatch, restore_threads):
    """Thread every call, however small, so that small shapes exercise the split; with the pool
    threads and the caller waiting on spinlocks (where the C library has them), then on locks."""
    if request.param == "spin" and threads._spin_fns is None:
        pytest.skip("no POSIX spinlocks on this platform")
    monkeypatch.setattr(threads, "USE_SPIN", request.param == "spin")
    monkeypatch.setattr(threads, "MIN_WORK", 0)
    threads.set_num_threads(threads.num_threads())  # a fresh pool, with that kind of wait


@pytest.mark.parametrize("k", [1, 2, 3, 4])
@pytest.mark.parametrize("n", [1, 2, 3, 5, 7, 128])
def test_every_index_once(no_threshold, n, k):
    threads.set_num_threads(k)
    hits = np.zeros(n, dtype=int)
    calls = []
    lock = threading.Lock()

    def fn(sl):
        with lock:
            calls.append(sl)
            hits[sl] += 1

    threads.parallel_slices(fn, n)
    assert (hits == 1).all()
    assert len(calls) == min(k, n)
    assert all(sl.stop > sl.start for sl in calls)


@pytest.mark.parametrize("bad", ["first", "last"])
def test_exception_propagates_after_every_chunk(no_threshold, bad):
    threads.set_num_threads(3)
    done = []

    def fn(sl):
        if (sl.start == 0) if bad == "first" else (sl.stop == 9):
            raise KeyError("boom")
        done.append(sl)

    with pytest.raises(KeyError, match="boom"):
        threads.parallel_slices(fn, 9)
    assert len(done) == 2  # the other chunks ran to the end before the raise


def test_small_work_runs_inline(restore_threads):
    threads.set_num_threads(4)
    seen = []
    threads.parallel_slices(lambda sl: seen.append((sl, threading.get_ident())), 100, work=threads.MIN_WORK - 1)
    assert seen == [(slice(0, 100), threading.get_ident())]


def test_one_thread_runs_inline(restore_threads):
    threads.set_num_threads(1)
    seen = []
    threads.parallel_slices(lambda sl: seen.append((sl, threading.get_ident())), 100, work=1 << 30)
    assert seen == [(slice(0, 100), threading.get_ident())]


def test_nested_calls_run_inline(no_threshold):
    threads.set_num_threads(2)
    inner = []
    lock = threading.Lock()

    def outer(sl):
        me = threading.get_ident()

        def fn(s):
            with lock:
                inner.append((s, threading.get_ident() == me))

        threads.parallel_slices(fn, 10)

    threads.parallel_slices(outer, 2)
    assert sorted((s.start, s.stop, same) for s, same in inner) == [(0, 10, True), (0, 10, True)]


def test_workers_persist_and_stop(no_threshold):
    threads.set_num_threads(3)
    ids = [set(), set()]
    lock = threading.Lock()
    for seen in ids:
        def fn(sl, seen=seen):
            with lock:
                seen.add(threading.get_ident())
        threads.parallel_slices(fn, 3)
    assert len(ids[0]) == 3 and ids[0] == ids[1]  # the same pool threads, not fresh ones per call
    workers = [w.thread for w in threads._workers]
    threads.set_num_threads(1)
    assert threads._workers is None and not any(t.is_alive() for t in workers)


def test_concurrent_callers_each_get_every_index(no_threshold):
    # two threads of the user's calling at once: whichever finds the workers busy runs inline
    threads.set_num_threads(2)
    results, errors = {}, []
    barrier = threading.Barrier(4)

    def caller(c):
        try:
            barrier.wait()
            for r in range(50):
                hits = np.zeros(64, dtype=int)

                def fn(sl):
                    time.sleep(0.0002)
                    hits[sl] += 1

                threads.parallel_slices(fn, 64)
                assert (hits == 1).all(), (c, r)
            results[c] = True
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    ts = [threading.Thread(target=caller, args=(c,)) for c in range(4)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(timeout=60)
    assert not errors and len(results) == 4


def test_interrupt_while_waiting_still_waits_for_the_chunk(no_threshold):
    # Ctrl-C while the caller waits: the worker's chunk must end before the interrupt surfaces
    threads.set_num_threads(2)
    threads.parallel_slices(lambda sl: None, 2)  # start the worker
    worker = threads._workers[0]
    real = worker.done

    class InterruptOnce:
        raised = False

        def acquire(self):
            if not self.raised:
                self.raised = True
                raise KeyboardInterrupt
            return real.acquire()

        def release(self):
            real.release()

    worker.done = InterruptOnce()
    finished = []

    def fn(sl):
        if sl.start:
            time.sleep(0.05)
            finished.append(sl)

    try:
        with pytest.raises(KeyboardInterrupt):
            threads.parallel_slices(fn, 2)
        assert finished == [slice(1, 2)]
    finally:
        worker.done = real
    hits = np.zeros(2, dtype=int)
    threads.parallel_slices(lambda sl: hits.__setitem__(sl, hits[sl] + 1), 2)  # the pool still works
    assert (hits == 1).all()


def _cpu_ns(thread):
    with open(f"/proc/self/task/{thread.native_id}/schedstat") as f:
        return int(f.read().split()[0])  # nanoseconds on a CPU


def test_idle_workers_park_then_take_chunks_again(no_threshold, monkeypatch):
    if not threads.USE_SPIN:
        pytest.skip("only spinning workers are parked")
    monkeypatch.setattr(threads, "PARK_AFTER_S", 0.01)
    threads.set_num_threads(3)
    hits = np.zeros(6, dtype=int)
    threads.parallel_slices(lambda sl: hits.__setitem__(sl, hits[sl] + 1), 6)
    deadline = time.monotonic() + 20
    while not all(w.parked for w in threads._workers):
        assert time.monotonic() < deadline, "idle pool threads were never parked"
        time.sleep(0.01)
    if os.path.exists(f"/proc/self/task/{threads._workers[0].thread.native_id}/schedstat"):
        before = [_cpu_ns(w.thread) for w in threads._workers]
        time.sleep(0.2)
        spent = [_cpu_ns(w.thread) - b for w, b in zip(threads._workers, before)]
        assert max(spent) < 20e6, f"parked pool threads still use the CPU: {spent} ns in 0.2 s"
    threads.parallel_slices(lambda sl: hits.__setitem__(sl, hits[sl] + 1), 6)
    assert (hits == 2).all() and not any(w.parked for w in threads._workers)
    workers = [w.thread for w in threads._workers]
    threads.set_num_threads(1)  # parked or not, they stop
    assert not any(t.is_alive() for t in workers)


def test_workers_keep_no_reference_to_a_finished_chunk(no_threshold):
    # a chunk's closure holds the op's arrays: kept alive, they would look busy to the workspace
    threads.set_num_threads(2)

    class Payload:
        pass

    payload = Payload()
    ref = weakref.ref(payload)

    def fn(sl, payload=payload):
        pass

    threads.parallel_slices(fn, 2)
    del fn, payload
    gc.collect()
    assert ref() is None


def test_set_num_threads_rejects_zero(restore_threads):
    with pytest.raises(ValueError):
        threads.set_num_threads(0)


def test_env_default(monkeypatch, restore_threads):
    monkeypatch.setenv("CNNLAB_NUM_THREADS", "3")
    monkeypatch.setattr(threads, "_num_threads", None)
    assert threads.num_threads() == 3


# ----- threaded ops == serial ops, bit for bit --------------------------------

def serial_and_threaded(run, k=3):
    """``run()`` with one thread and with ``k``; both results as tuples of arrays."""
    out = []
    for n in (1, k):
        threads.set_num_threads(n)
        r = run()
        out.append(tuple(np.array(a, copy=True) for a in (r if isinstance(r, tuple) else (r,))))
    return out


def assert_identical(pair):
    serial, threaded = pair
    assert len(serial) == len(threaded)
    for a, b in zip(serial, threaded):
        assert a.dtype == b.dtype and a.shape == b.shape
        assert np.array_equal(a, b, equal_nan=True)
        assert np.array_equal(np.signbit(a), np.signbit(b))


def rng_array(shape, seed=0, dtype=np.float32):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


POOL_CASES = [((7, 8, 8, 3), (2, 2), None, "valid"), ((7, 7, 9, 3), (3, 3), (2, 2), "valid"),
              ((5, 7, 6, 2), (2, 2), None, "same"), ((5, 6, 7, 2), (3, 3), (2, 2), "same"),
              ((5, 5, 6, 2), (2, 3), (1, 1), "same")]


@pytest.mark.parametrize("mode", pool2d.MODES)
@pytest.mark.parametrize("case", POOL_CASES)
def test_pool_identical(no_threshold, mode, case):
    shape, pool, strides, padding = case
    x = rng_array(shape)
    if mode == "max":
        x[:, ::2, ::2] = x[:, 1::2, 1::2].max()  # ties: the first offset must win in every chunk
    if mode == "l2":
        x[0] = 0  # all-zero windows: no gradient

    def run():
        y, c = pool2d.forward(x, pool, strides, padding, mode=mode)
        dy = rng_array(y.shape, seed=1)
        return y.copy(), pool2d.backward(dy, c)

    assert_identical(serial_and_threaded(run))


def test_pool_identical_default_threshold(restore_threads):
    x = rng_array((32, 28, 28, 16))  # big enough to split without lowering the threshold

    def run():
        y, c = pool2d.forward(x, (3, 3), (2, 2), "same")
        return y.copy(), pool2d.backward(rng_array(y.shape, seed=1), c)

    assert_identical(serial_and_threaded(run, k=2))


CONV_CASES = [((5, 9, 8, 1), (3, 3, 1, 4), True, (1, 1), "same", (1, 1)),     # K-major columns
              ((5, 9, 8, 3), (5, 5, 3, 4), True, (1, 1), "same", (1, 1)),
              ((5, 9, 8, 3), (3, 3, 3, 4), False, (2, 2), "valid", (1, 1)),
              ((5, 9, 9, 2), (3, 2, 2, 3), True, (1, 2), "same", (2, 1)),
              ((5, 6, 6, 3), (1, 1, 3, 4), False, (2, 2), "same", (1, 1)),
              ((7, 6, 5, 4), (3, 3, 4, 4), True, (1, 1), "same", (1, 1))]          # transposed dx


@pytest.mark.parametrize("case", CONV_CASES)
def test_conv_identical(no_threshold, monkeypatch, case):
    monkeypatch.setattr(conv2d, "DX_BLOCK_BYTES", 1)  # transposed dx: one sample per block
    xs, ws, bias, strides, padding, dilation = case
    x, W = rng_array(xs), rng_array(ws, seed=1)
    b = rng_array(ws[-1:], seed=2) if bias else None

    def run():
        y, c = conv2d.forward(x, W, b, strides, padding, dilation)
        dx, dW, db = conv2d.backward(rng_array(y.shape, seed=3), c)
        return (y.copy(), dx, dW) + ((db,) if bias else ())

    assert_identical(serial_and_threaded(run))


@pytest.mark.parametrize("training", [True, False])
def test_batchnorm_identical(no_threshold, monkeypatch, training):
    monkeypatch.setattr(batchnorm, "BLOCK_VALUES", 64)  # several blocks per thread
    x = rng_array((6, 5, 7, 3)) + 2
    gamma, beta = rng_array((3,), seed=1), rng_array((3,), seed=2)

    def run():
        if training:
            y, c = batchnorm.forward_train(x, gamma, beta)
        else:
            y, c = batchnorm.forward_inference(x, gamma, beta, rng_array((3,), seed=3), np.ones(3, np.float32))
        return (y.copy(), c.mean, c.var) + batchnorm.backward(rng_array(x.shape, seed=4), c)

    assert_identical(serial_and_threaded(run))


@pytest.mark.parametrize("split", [0, 1])
def test_matmul_identical_and_exact(no_threshold, split):
    a, b, c = rng_array((37, 29)), rng_array((29, 23), seed=1), rng_array((37, 11), seed=2)

    def run():  # contiguous operands, and a strided transposed view as the dW GEMMs use
        return threads.matmul(a, b, split=split), threads.matmul(a[:, ::2].T, c, split=split)

    pair = serial_and_threaded(run)
    assert_identical(pair)
    np.testing.assert_allclose(pair[0][0], a @ b, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(pair[0][1], a[:, ::2].T @ c, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("k_major", [False, True])
def test_matmul_tn_blocks_identical_and_exact(no_threshold, monkeypatch, k_major):
    monkeypatch.setattr(threads, "MIN_BLOCK_ROWS", 8)
    monkeypatch.setattr(threads, "BLOCK_BYTES", 8 * 4 * (10 + 6))  # 8-row blocks, a ragged last one
    a = rng_array((10, 203)).T if k_major else rng_array((203, 10))  # as conv2d's two column layouts
    b = rng_array((203, 6), seed=1)
    pair = serial_and_threaded(lambda: threads.matmul_tn(a, b))
    assert_identical(pair)
    np.testing.assert_allclose(pair[0][0], a.astype(np.float64).T @ b, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("C", [1, 3])  # K-major and row-major columns
def test_conv_dW_by_row_blocks(no_threshold, monkeypatch, C):
    monkeypatch.setattr(threads, "MIN_BLOCK_ROWS", 16)
    monkeypatch.setattr(threads, "BLOCK_BYTES", 16)  # 16-row blocks: 27 of them
    x, W, b = rng_array((6, 9, 8, C)), rng_array((3, 3, C, 5), seed=1), rng_array((5,), seed=2)
    y, c = conv2d.forward(x, W, b, padding="same")
    dy = rng_array(y.shape, seed=3)
    _, dW, db = conv2d.backward(dy, c, need_dx=False)
    xp_ = np.pad(x.astype(np.float64), ((0, 0), (1, 1), (1, 1), (0, 0)))
    ref = np.zeros(W.shape)
    for i in range(3):
        for j in range(3):
            ref[i, j] = np.einsum("nhwc,nhwf->cf", xp_[:, i:i + 9, j:j + 8], dy)
    np.testing.assert_allclose(dW, ref, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(db, dy.sum(axis=(0, 1, 2)), rtol=1e-5, atol=1e-5)


def test_dense_identical(no_threshold):
    x, W, b = rng_array((9, 31)), rng_array((31, 17), seed=1), rng_array((17,), seed=2)

    def run():
        y, c = dense.forward(x, W, b)
        return (y,) + dense.backward(rng_array(y.shape, seed=3), c)

    assert_identical(serial_and_threaded(run))


def test_blas_found_on_linux_numpy():
    # NumPy's Linux wheels ship OpenBLAS >= 0.3.27: chunks get their own single BLAS thread
    if not os.path.exists("/proc/self/maps") or "openblas" not in str(np.show_config(mode="dicts")).lower():
        pytest.skip("not NumPy's OpenBLAS on Linux")
    assert threads.blas_in_chunks()


def test_chunks_run_on_one_blas_thread(no_threshold):
    if not threads.blas_in_chunks():
        pytest.skip("no per-thread BLAS setting")
    threads.set_num_threads(2)
    seen = []

    def fn(sl):
        old = threads._blas_local(1)  # returns the setting it replaces: the chunk's own
        threads._blas_local(old)
        seen.append(old)

    threads.parallel_slices(fn, 2, blas=True)
    assert seen == [1, 1]
    threads.set_num_threads(1)  # inline: still one BLAS thread (a GEMM there must not wake the BLAS's own)
    seen.clear()
    threads.parallel_slices(fn, 2, blas=True)
    assert seen == [1]


def test_callers_blas_setting_is_restored_after_the_chunks(no_threshold):
    # the worker's chunk ends last: its own setting must not be what the caller is left with
    if not threads.blas_in_chunks():
        pytest.skip("no per-thread BLAS setting")
    threads.set_num_threads(2)
    before = threads._blas_local(2)
    try:
        for _ in range(20):  # whichever thread sets its BLAS first
            threads.parallel_slices(lambda sl: time.sleep(0.005 if sl.start else 0), 2, blas=True)
            now = threads._blas_local(2)
            assert now == 2
    finally:
        threads._blas_local(before)


def test_blas_chunks_run_inline_without_per_thread_setting(no_threshold, monkeypatch):
    monkeypatch.setattr(threads, "_blas_local", None)
    threads.set_num_threads(3)
    calls = []
    threads.parallel_slices(lambda sl: calls.append((sl, threading.get_ident())), 9, blas=True)
    assert calls == [(slice(0, 9), threading.get_ident())]  # one call, in this thread: the BLAS threads itself
    calls.clear()
    threads.parallel_slices(lambda sl: calls.append(sl), 9)  # elementwise work still splits
    assert len(calls) == 3


@pytest.mark.parametrize("name", ["relu", "leaky_relu"])
def test_activation_identical(no_threshold, name):
    x = rng_array((6, 5, 4, 3))
    x[0, 0, 0] = [0.0, -0.0, np.nan]

    def run():
        y, c = activations.forward(x, name)
        return y, c[2], activations.backward(rng_array(x.shape, seed=1), c)

    assert_identical(serial_and_threaded(run))


def test_dropout_identical(no_threshold):
    x = rng_array((7, 33))
    x[0, :3] = [-1.0, -0.0, np.inf]

    def run():
        y, c = dropout.forward(x, 0.4, np.random.default_rng(5))
        return y, c[0], dropout.backward(rng_array(x.shape, seed=1), c)

    assert_identical(serial_and_threaded(run))


@pytest.mark.parametrize("make", [lambda: Adam(0.01), lambda: Adam(0.01, amsgrad=True),
                                  lambda: SGD(0.1), lambda: SGD(0.1, momentum=0.9, nesterov=True),
                                  lambda: SGD(0.1, momentum=0.9), lambda: RMSprop(0.01),
                                  lambda: RMSprop(0.01, momentum=0.5, centered=True)])
def test_optimizer_identical(no_threshold, make):
    def run():
        opt = make()
        params = {"k": rng_array((17, 13)), "b": rng_array((13,), seed=1)}
        for step in range(3):
            opt.apply(params, {key: rng_array(w.shape, seed=10 + step) for key, w in params.items()})
        return tuple(params.values()) + tuple(a for s in opt.slots.values() for a in s.values())

    assert_identical(serial_and_threaded(run))


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_forked_child_gets_a_fresh_pool(no_threshold):
    threads.set_num_threads(2)
    threads.parallel_slices(lambda sl: None, 4)  # the parent's pool exists
    pid = os.fork()
    if pid == 0:  # child: must not wait on the parent's threads
        try:
            hits = np.zeros(4, dtype=int)
            threads.parallel_slices(lambda sl: hits.__setitem__(sl, 1), 4)
            os._exit(0 if hits.all() else 1)
        except BaseException:
            os._exit(2)
    deadline = time.monotonic() + 20
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if time.monotonic() > deadline:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
            pytest.fail("forked child hung in parallel_slices")
        time.sleep(0.05)
    assert os.waitstatus_to_exitcode(status) == 0


def test_background_runs_beside_the_caller_and_is_joined(no_threshold, monkeypatch):
    threads.set_num_threads(2)
    if not threads.blas_in_chunks() and threads._gemm.backend() != "mkl":
        pytest.skip("the BLAS here cannot be held to one thread per chunk")
    ran = []
    release = threading.Event()

    def task():
        release.wait(10)
        ran.append(threading.get_ident())

    release.set()
    threads.background(task)  # outside background_allowed: inline
    assert ran == [threading.get_ident()]
    ran.clear()
    release.clear()
    with threads.background_allowed():
        threads.background(task)
        assert ran == []  # still waiting on the event: it runs elsewhere
        release.set()
        hits = np.zeros(4, dtype=int)
        threads.parallel_slices(lambda sl: hits.__setitem__(sl, hits[sl] + 1), 4)  # joins it first
        assert len(ran) == 1 and ran[0] != threading.get_ident() and (hits == 1).all()
        release.clear()
        threads.background(task)
        release.set()
    assert len(ran) == 2  # the block's end joined the second one


def test_background_error_surfaces_at_the_join(no_threshold):
    threads.set_num_threads(2)
    if not threads.blas_in_chunks() and threads._gemm.backend() != "mkl":
        pytest.skip("the BLAS here cannot be held to one thread per chunk")

    def bad():
        raise KeyError("boom")

    with pytest.raises(KeyError, match="boom"):
        with threads.background_allowed():
            threads.background(bad)
    hits = np.zeros(2, dtype=int)
    threads.parallel_slices(lambda sl: hits.__setitem__(sl, 1), 2)  # the pool is free again
    assert (hits == 1).all()


def test_background_writes_are_pending_until_joined_and_inner_blocks_do_not_join(no_threshold):
    threads.set_num_threads(2)
    if not threads.blas_in_chunks() and threads._gemm.backend() != "mkl":
        pytest.skip("the BLAS here cannot be held to one thread per chunk")
    out, other = np.zeros(3), np.zeros(3)
    release = threading.Event()

    def task():
        release.wait(10)
        out[:] = 1

    with threads.background_allowed():
        with threads.background_allowed():
            threads.background(task, writes=[out])
        assert threads.pending(out) and not threads.pending(other)  # the inner block's end did not wait
        release.set()
        threads.join_background()
        assert not threads.pending(out) and (out == 1).all()


# ----- pipelines: per-sample chunks queued on the pool threads --------------------------------

@pytest.fixture
def pipelining(no_threshold):
    threads.set_num_threads(2)


def _held_back(gate, log=None, value=1.0, out=None, name=None):
    """A per-sample fn whose pool-thread chunk waits for ``gate``, then logs and/or writes."""
    def fn(sl):
        if sl.start:
            assert gate.wait(10)
        if log is not None:
            log.append((name, sl.start))
        if out is not None:
            out[sl] = value
    return fn


def test_pipeline_queues_the_pool_threads_chunks_in_order_and_waits_at_the_end(pipelining):
    gate, log = threading.Event(), []
    with threads.pipeline(4):
        threads.parallel_samples(_held_back(gate, log, name="first"), 4)
        threads.parallel_samples(_held_back(gate, log, name="second"), 4)
        assert threads.pipelined(4) and not threads.pipelined(5)
        assert log == [("first", 0), ("second", 0)]  # the caller went on without the pool thread
        gate.set()
    assert log[2:] == [("first", 2), ("second", 2)]
    assert not threads.pipelined(4)


def test_deferred_work_runs_once_the_queued_chunks_are_done(pipelining):
    gate, out, seen = threading.Event(), np.zeros(4), []
    with threads.pipeline(4):
        threads.parallel_samples(_held_back(gate, out=out), 4)
        threads.defer(lambda: seen.append(out.copy()))
        assert seen == []
        gate.set()
        threads.drain()
        assert len(seen) == 1 and (seen[0] == 1).all()
        threads.defer(lambda: seen.append("now"))  # nothing queued: at once
        assert seen[-1] == "now"
    threads.defer(lambda: seen.append("outside"))
    assert seen[-1] == "outside"


def test_synchronous_drains_and_sets_the_pipeline_aside(pipelining):
    gate, out = threading.Event(), np.zeros(4)
    with threads.pipeline(4):
        threads.parallel_samples(_held_back(gate, out=out), 4)
        threading.Timer(0.05, gate.set).start()
        with threads.synchronous():
            assert (out == 1).all()
            assert not threads.pipelined(4)
            gate2 = threading.Event()
            threading.Timer(0.05, gate2.set).start()
            threads.parallel_samples(_held_back(gate2, out=out, value=2.0), 4)
            assert (out == 2).all()  # waited for, as outside a pipeline
        assert threads.pipelined(4)


def test_other_calls_inside_a_pipeline_wait_for_its_chunks_first(pipelining):
    gate, out, sums = threading.Event(), np.zeros(4), []
    with threads.pipeline(4):
        threads.parallel_samples(_held_back(gate, out=out), 4)
        threading.Timer(0.05, gate.set).start()
        threads.parallel_slices(lambda sl: sums.append(out.sum()), 1)  # another kind of call
        assert sums == [4]


def test_per_sample_calls_nested_in_an_inline_call_are_not_queued(pipelining, monkeypatch):
    # a small per-sample call runs inline in the caller; a big one inside it must be waited for
    # there, not queued on the pool thread while the outer call reads its output
    monkeypatch.setattr(threads, "MIN_WORK", 100)
    out, sums = np.zeros(4), []

    def inner(sl):
        if sl.start:
            time.sleep(0.05)
        out[sl] = 1

    def outer(sl):
        threads.parallel_samples(inner, 4, work=1000)
        sums.append(out.sum())

    with threads.pipeline(4):
        threads.parallel_samples(outer, 4, work=10)
    assert sums == [4]


def test_pool_thread_error_surfaces_at_the_end_and_skips_the_rest_of_its_queue(pipelining):
    ran, deferred = [], []

    def bad(sl):
        if sl.start:
            raise ValueError("chunk failed")

    with pytest.raises(ValueError, match="chunk failed"):
        with threads.pipeline(4):
            threads.parallel_samples(bad, 4)
            threads.parallel_samples(lambda sl: ran.append(sl.start), 4)
            threads.defer(lambda: deferred.append(1))
    assert ran == [0] and deferred == []
    hits = np.zeros(4, dtype=int)
    with threads.pipeline(4):  # the pool still works
        threads.parallel_samples(lambda sl: hits.__setitem__(sl, hits[sl] + 1), 4)
    assert (hits == 1).all()


def test_caller_error_in_a_pipeline_still_waits_for_the_queued_chunks(pipelining):
    finished = []

    def slow(sl):
        if sl.start:
            time.sleep(0.05)
            finished.append(sl.start)

    with pytest.raises(RuntimeError, match="caller failed"):
        with threads.pipeline(4):
            threads.parallel_samples(slow, 4)
            raise RuntimeError("caller failed")
    assert finished == [2]


@pytest.mark.parametrize("n_threads", [2, 3])
def test_pipelined_training_steps_are_bit_identical(restore_threads, monkeypatch, n_threads):
    """A conv/pool stack (pipelined in forward and backward, with deferred weight gradients and
    background ones, every call threaded however small) gives the same steps with its pipelines
    as without them, and as one thread does."""
    import contextlib

    from cnnlab import layers as L
    from cnnlab.models import Sequential
    rng = np.random.default_rng(0)
    x = rng.random((12, 14, 14, 1), dtype=np.float32)
    y = np.arange(12) % 5
    queued = []
    real_submit = threads._Worker.submit
    monkeypatch.setattr(threads._Worker, "submit", lambda w, fn, sl: (
        queued.append(getattr(threads._local, "pipe", None) is not None), real_submit(w, fn, sl)))
    real_pipeline = threads.pipeline
    results = {}
    for n, pipelines in ((1, True), (n_threads, False), (n_threads, True)):
        threads.set_num_threads(n)
        monkeypatch.setattr(threads, "MIN_WORK", 0)
        monkeypatch.setattr(threads, "pipeline", real_pipeline if pipelines else lambda n: contextlib.nullcontext())
        model = Sequential([L.Input((14, 14, 1)), L.Conv2D(4, 3, padding="same", activation="relu"),
                            L.MaxPooling2D(3, strides=2), L.Conv2D(6, 3, padding="same", activation="relu"),
                            L.AveragePooling2D(2), L.Activation("leaky_relu"), L.Flatten(),
                            L.Dense(16, activation="relu"), L.Dense(5, activation="softmax")])
        model.set_weights([np.random.default_rng(i).standard_normal(w.shape).astype(np.float32) * 0.3
                           for i, w in enumerate(model.get_weights())])
        model.compile("adam", "sparse_categorical_crossentropy")
        queued.clear()
        losses = [model.train_step(x, y)[0] for _ in range(3)]
        results[n, pipelines] = losses, model.get_weights(), model.predict(x, batch_size=12)
        if n > 1:  # chunks were queued from inside a pipeline, or none were
            assert any(queued) == pipelines
    (l1, w1, p1), (l0, w0, p0), (lp, wp, pp) = results[1, True], results[n_threads, False], results[n_threads, True]
    assert lp == l0 and all(np.array_equal(a, b) for a, b in zip(wp, w0)) and np.array_equal(pp, p0)
    # one thread runs no GEMM in parts: its weight gradients may differ in the last bits
    np.testing.assert_allclose(lp, l1, rtol=1e-6)
    np.testing.assert_array_equal(pp.argmax(1), p1.argmax(1))


def test_background_task_between_runs_is_done_by_the_caller_while_it_waits(pipelining, monkeypatch):
    # a weight gradient handed over after one run of per-sample work (a dense layer's, between the
    # forward's and the backward's convolutions) waits for the next run: the caller does it while
    # the pool thread finishes its chunks, instead of holding up the pool thread's share
    monkeypatch.setattr(threads, "can_background", lambda: True)
    gate, out, ran_on = threading.Event(), np.zeros(4), []
    with threads.pipeline(4):
        threads.parallel_samples(lambda sl: None, 4)  # a first run: the pipeline holds the pool
        threads.drain()
        threads.background(lambda: ran_on.append(threading.current_thread()))
        assert ran_on == []
        threads.parallel_samples(_held_back(gate, out=out), 4)
        threading.Timer(0.05, gate.set).start()
        threads.drain()
        assert ran_on == [threading.current_thread()] and (out == 1).all()
        threads.background(lambda: ran_on.append(threading.current_thread()))
    threads.join_background()
    # no run came after it: a pool thread took it at the end
    assert len(ran_on) == 2 and ran_on[1] is not threading.current_thread()


def test_beside_runs_on_the_pool_thread_while_the_caller_takes_whole_calls(pipelining, monkeypatch):
    # a convolution's weight gradient, handed over beside the scattering pooling below it
    monkeypatch.setattr(threads, "can_background", lambda: True)
    gate, release, out, log = threading.Event(), threading.Event(), np.zeros(4), []

    def task(name):
        def run():
            if name == "beside":
                assert release.wait(10)
            log.append((name, threading.current_thread() is threading.main_thread()))
        return run

    with threads.pipeline(4):
        threads.parallel_samples(lambda sl: None, 4)
        threads.drain()
        threads.background(task("background"))  # waiting for the caller's next wait
        threads.parallel_samples(_held_back(gate, out=out), 4)
        threads.beside(task("beside"))
        threading.Timer(0.05, gate.set).start()
        # per-sample calls now run whole on the caller, after the pool thread's chunk before the task
        seen = []
        threads.parallel_samples(lambda sl: seen.append((sl.start, sl.stop, out.sum())), 4)
        threads.settle()  # waits for chunks only: the task is still held back
        assert seen == [(0, 4, 4.0)] and log == []
        release.set()
        threads.drain()
        # the task, then the background task behind it, both on the pool thread
        assert log == [("beside", False), ("background", False)]
        threads.parallel_samples(lambda sl: seen.append((sl.start, sl.stop)), 4)
        assert seen[1] == (0, 2)  # split again
    threads.parallel_samples(lambda sl: None, 4)


def test_beside_goes_back_to_splitting_once_its_task_is_done(pipelining):
    done, slices = threading.Event(), []
    with threads.pipeline(4):
        threads.parallel_samples(lambda sl: None, 4)
        threads.beside(done.set)
        assert done.wait(10)
        while threads._local.pipe.workers[0].finished != threads._local.pipe.workers[0].posted:
            time.sleep(0.001)
        threads.parallel_samples(lambda sl: slices.append((sl.start, sl.stop)), 4)
        threads.drain()
    assert sorted(slices) == [(0, 2), (2, 4)]


@pytest.mark.parametrize("n_threads", [1, 3])
def test_beside_defers_without_exactly_one_pool_thread(restore_threads, monkeypatch, n_threads):
    # with two pool threads the other one's chunks could still be writing what the task reads
    monkeypatch.setattr(threads, "MIN_WORK", 0)
    threads.set_num_threads(n_threads)
    ran_on, out = [], np.zeros(6)
    with threads.pipeline(6):
        threads.parallel_samples(lambda sl: (time.sleep(0.02 * (sl.start > 0)), out.__setitem__(sl, 1)), 6)
        threads.beside(lambda: ran_on.append((threading.current_thread() is threading.main_thread(), out.sum())))
        assert ran_on == [] or n_threads == 1
    assert ran_on == [(True, 6.0)]


def test_beside_task_error_surfaces_at_the_end_of_the_pipeline(pipelining):
    def fail():
        raise ValueError("task failed")

    with pytest.raises(ValueError, match="task failed"):
        with threads.pipeline(4):
            threads.parallel_samples(lambda sl: None, 4)
            threads.beside(fail)
            threads.parallel_samples(lambda sl: None, 4)
    with threads.pipeline(4):  # the pool still works
        threads.parallel_samples(lambda sl: None, 4)


def _residual_bn_model():
    from cnnlab import layers as L
    from cnnlab.models import Model
    x = L.Input((28, 28, 1))
    h = L.MaxPooling2D(3, strides=2)(L.Conv2D(12, 3, padding="same")(x))
    h = L.ReLU()(L.BatchNormalization()(L.Conv2D(16, 3, padding="same")(h)))
    h = L.Add()([h, L.Conv2D(16, 3, padding="same", activation="relu")(h)])
    y = L.Dense(10, activation="softmax")(L.Flatten()(L.MaxPooling2D(3, strides=2)(h)))
    return Model(x, y)


def _seed001_like_model():
    from cnnlab import layers as L
    from cnnlab.models import Sequential
    return Sequential([L.Input((28, 28, 1)), L.Conv2D(12, 3, padding="same"), L.MaxPooling2D(3, strides=2),
                       L.Conv2D(16, 3, padding="same"), L.MaxPooling2D(3, strides=2), L.Flatten(),
                       L.Dense(256, activation="relu"), L.Dense(10, activation="softmax")])


@pytest.mark.parametrize("make", [_seed001_like_model, _residual_bn_model])
def test_training_with_pipelines_at_the_default_threshold_equals_one_thread(restore_threads, make):
    """At the usual thresholds (chunks queued only from MIN_WORK), two threads with pipelines
    train such models exactly as one thread does: every per-sample call cuts the batch, every
    weight gradient sums the same parts."""
    rng = np.random.default_rng(0)
    x = rng.random((64, 28, 28, 1), dtype=np.float32)
    y = np.arange(64) % 10
    results, queued = {}, []
    real_submit = threads._Worker.submit
    for n in (1, 2):
        threads.set_num_threads(n)
        model = make()
        model.set_weights([np.random.default_rng(i).standard_normal(w.shape).astype(np.float32) * 0.2
                           for i, w in enumerate(model.get_weights())])
        model.compile("adam", "sparse_categorical_crossentropy")
        try:
            threads._Worker.submit = lambda w, fn, sl: (
                queued.append(getattr(threads._local, "pipe", None) is not None), real_submit(w, fn, sl))
            losses = [model.train_step(x, y)[0] for _ in range(2)]
        finally:
            threads._Worker.submit = real_submit
        results[n] = losses, model.get_weights()
    assert any(queued)  # the pipeline did queue chunks
    assert results[1][0] == results[2][0]
    for a, b in zip(results[1][1], results[2][1]):
        assert np.array_equal(a, b)


def test_seed001_like_model_hands_its_second_convs_weight_gradient_beside_the_pooling(restore_threads, monkeypatch):
    """The 12 -> 16 convolution above the overlapping pooling computes its weight gradient on the
    pool thread while the caller runs the pooling's backward whole, giving the same steps."""
    from cnnlab.models import Model
    threads.set_num_threads(2)
    rng = np.random.default_rng(0)
    x = rng.random((64, 28, 28, 1), dtype=np.float32)
    y = np.arange(64) % 10
    handed = []
    real = threads.beside

    def spy(fn):
        real(fn)
        handed.append(threads._pipe() is not None and threads._pipe().beside is not None)
    monkeypatch.setattr(threads, "beside", spy)
    results = {}
    for limit in (0, Model.beside_dW_max_macs):
        monkeypatch.setattr(Model, "beside_dW_max_macs", limit)
        handed.clear()
        model = _seed001_like_model()
        model.set_weights([np.random.default_rng(i).standard_normal(w.shape).astype(np.float32) * 0.2
                           for i, w in enumerate(model.get_weights())])
        model.compile("adam", "sparse_categorical_crossentropy")
        results[limit] = [model.train_step(x, y)[0] for _ in range(2)], model.get_weights()
        assert handed == ([] if limit == 0 else [True, True])  # one convolution, two steps
    (l0, w0), (l1, w1) = results.values()
    assert l0 == l1 and all(np.array_equal(a, b) for a, b in zip(w0, w1))
