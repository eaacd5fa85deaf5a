"""The GEMM entry point: NumPy's matmul, or MKL's cblas_?gemm read in place through ctypes."""
import os
import subprocess
import sys

import numpy as np
import pytest

from cnnlab.ops import conv2d, dense, gemm, threads
from tests.helpers import assert_close, rand

needs_mkl = pytest.mark.skipif(gemm._load_mkl() is None, reason="MKL is not installed (pip install .[mkl])")


@pytest.fixture
def backend(monkeypatch):
    """``backend(name)`` switches for one test (every product size); the old one comes back after."""
    monkeypatch.setattr(gemm, "MKL_MIN_MACS", 0)
    monkeypatch.setattr(gemm, "_backend", gemm._backend)  # put back as it was, loaded library and all
    monkeypatch.setattr(gemm, "_kernels", gemm._kernels)
    return gemm.set_backend


def layouts(rng, dtype):
    """(name, a, b, out) covering every way BLAS can read an operand in place, and some it cannot."""
    A = rng.standard_normal((9, 7)).astype(dtype)
    B = rng.standard_normal((7, 5)).astype(dtype)
    big = rng.standard_normal((12, 11)).astype(dtype)
    yield "contiguous", A, B, np.empty((9, 5), dtype)
    yield "a transposed", np.ascontiguousarray(A.T).T, B, np.empty((9, 5), dtype)
    yield "b transposed", A, np.ascontiguousarray(B.T).T, np.empty((9, 5), dtype)
    yield "row slices (ld > K)", big[:9, 2:9], big[3:10, 1:6], np.empty((9, 5), dtype)
    yield "transposed slices", big[2:9, :9].T, big[1:6, 3:10].T, np.empty((9, 5), dtype)
    yield "out a column slice", A, B, np.zeros((9, 8), dtype)[:, 2:7]
    yield "strided columns (copied)", big[:9, ::2][:, :5], big[:5, ::2][:, :5], np.empty((9, 5), dtype)
    yield "one row", A[:1], B, np.empty((1, 5), dtype)
    yield "one column", A, B[:, :1], np.empty((9, 1), dtype)


@pytest.mark.parametrize("name", ["numpy", pytest.param("mkl", marks=needs_mkl)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_every_layout_matches_float64_product(backend, name, dtype):
    backend(name)
    rng = np.random.default_rng(0)
    tol = dict(rtol=1e-5, atol=1e-5) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-12)
    for label, a, b, out in layouts(rng, dtype):
        before = out.base.copy() if out.base is not None else None
        r = gemm.gemm(a, b, out)
        assert r is out
        assert_close(out, a.astype(np.float64) @ b.astype(np.float64), name=f"{name} {label}", **tol)
        if before is not None:  # nothing outside the view was written
            mask = np.ones(before.shape, bool)
            mask[:, 2:7] = False
            assert np.array_equal(out.base[mask], before[mask])


@needs_mkl
def test_mkl_is_really_called_and_falls_back_where_it_must(backend, monkeypatch):
    backend("mkl")
    calls = []
    kernels = dict(gemm._kernels)
    monkeypatch.setattr(gemm, "_kernels", {k: (lambda *a, fn=fn: calls.append(a) or fn(*a))
                                           for k, fn in kernels.items()})
    a, b = rand((6, 4), 1), rand((4, 3), 2)
    gemm.gemm(a, b, np.empty((6, 3), np.float32))
    assert len(calls) == 1
    # ints, mixed dtypes, an out that overlaps an input, a too-small product: NumPy, same answers
    ai, bi = np.arange(24).reshape(6, 4), np.arange(12).reshape(4, 3)
    assert np.array_equal(gemm.gemm(ai, bi, np.empty((6, 3), ai.dtype)), ai @ bi)
    assert_close(gemm.gemm(a, b.astype(np.float64), np.empty((6, 3))), a.astype(np.float64) @ b, rtol=1e-6)
    sq = rand((4, 4), 3)
    expected = sq @ sq
    gemm.gemm(sq, sq.copy(), sq)
    assert_close(sq, expected, rtol=1e-6)
    monkeypatch.setattr(gemm, "MKL_MIN_MACS", 10**9)
    gemm.gemm(a, b, np.empty((6, 3), np.float32))
    assert len(calls) == 1


@needs_mkl
def test_mkl_keeps_numpys_shape_errors(backend):
    backend("mkl")
    with pytest.raises(ValueError):
        gemm.gemm(rand((3, 4)), rand((5, 2)), np.empty((3, 2), np.float32))


@needs_mkl
def test_conv_and_dense_agree_across_backends_and_threads(backend, monkeypatch):
    monkeypatch.setattr(threads, "MIN_WORK", 0)
    x, W, b = rand((5, 9, 8, 6), 1), rand((3, 3, 6, 8), 2), rand((8,), 3)
    xd, Wd = rand((7, 20), 4), rand((20, 9), 5)

    def run():
        y, c = conv2d.forward(x, W, b, padding="same")
        dx, dW, db = conv2d.backward(rand(y.shape, 6), c)
        yd, cd = dense.forward(xd, Wd)
        return (y.copy(), dx, dW, db, yd) + tuple(dense.backward(rand(yd.shape, 7), cd))

    results = {}
    n = threads.num_threads()
    try:
        for name in ("numpy", "mkl"):
            backend(name)
            for k in (1, 3):
                threads.set_num_threads(k)
                results[name, k] = run()
    finally:
        threads.set_num_threads(n)
    for got, want in zip(results["mkl", 1], results["numpy", 1]):
        if want is not None:
            assert_close(got, want, rtol=1e-5, atol=1e-5)
    for got, want in zip(results["mkl", 3], results["mkl", 1]):  # row blocks do not change any row
        if want is not None:
            assert np.array_equal(got, want)


def test_set_backend_errors_name_the_value(monkeypatch, backend):
    with pytest.raises(ValueError, match="'blas'"):
        gemm.set_backend("blas")
    monkeypatch.setattr(gemm, "_kernels", None)
    monkeypatch.setattr(gemm, "_mkl_candidates", lambda: [])
    with pytest.raises(RuntimeError, match="pip install mkl"):
        gemm.set_backend("mkl")
    assert gemm.set_backend("auto") == "numpy"  # auto without MKL: NumPy, no error


@needs_mkl
def test_auto_leaves_numpy_alone_on_other_cpus_and_when_numpy_is_on_mkl(monkeypatch, backend):
    monkeypatch.setattr(gemm, "_kernels", None)
    monkeypatch.setattr(gemm, "_numpy_has_mkl", lambda: False)
    monkeypatch.setattr(gemm, "_intel_cpu", lambda: False)
    assert gemm.set_backend("auto") == "numpy"
    monkeypatch.setattr(gemm, "_intel_cpu", lambda: True)
    monkeypatch.setattr(gemm, "_numpy_has_mkl", lambda: True)  # conda's NumPy: its matmul is MKL already
    assert gemm.set_backend("auto") == "numpy"
    assert gemm.set_backend("mkl") == "mkl"  # asked for by name, it loads anyway
    monkeypatch.setattr(gemm, "_numpy_has_mkl", lambda: False)
    monkeypatch.setattr(gemm, "_kernels", None)
    assert gemm.set_backend("auto") == "mkl"


@pytest.mark.parametrize("value, expected", [("numpy", "numpy"), ("bogus", "CNNLAB_GEMM must be")])
def test_environment_variable(value, expected):
    env = dict(os.environ, CNNLAB_GEMM=value)
    r = subprocess.run([sys.executable, "-c", "from cnnlab.ops import gemm; print(gemm.backend())"],
                       capture_output=True, text=True, env=env)
    assert expected in (r.stdout + r.stderr)


@needs_mkl
@pytest.mark.parametrize("k_major", [False, True])
@pytest.mark.parametrize("min_macs, n_parts", [(0, 8), (203 * 10 * 6 // 3, 3)])
def test_matmul_tn_parts_under_mkl(backend, monkeypatch, k_major, min_macs, n_parts):
    # dW's long reduction: up to 8 parts of at least MKL_MIN_MACS, one MKL GEMM each, summed in order
    backend("mkl")
    monkeypatch.setattr(gemm, "MKL_MIN_MACS", min_macs)
    monkeypatch.setattr(threads, "MIN_WORK", 0)
    a = rand((10, 203), 1).T if k_major else rand((203, 10), 1)  # conv2d's two column layouts
    b = rand((203, 6), 2)
    rows = []
    real = threads.gemm
    monkeypatch.setattr(threads, "gemm", lambda x, y, out: (rows.append(x.shape[1]),
                                                 real(x, y, out))[1])
    n = threads.num_threads()
    results = []
    try:
        for k in (1, 3):
            threads.set_num_threads(k)
            rows.clear()
            results.append(threads.matmul_tn(a, b))
            assert sorted(rows) == sorted(203 * (i + 1) // n_parts - 203 * i // n_parts for i in range(n_parts))
    finally:
        threads.set_num_threads(n)
    assert np.array_equal(results[0], results[1])  # the parts depend on the shapes only
    assert_close(results[0], a.astype(np.float64).T @ b, rtol=1e-5, atol=1e-5)
