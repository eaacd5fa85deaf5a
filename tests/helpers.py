"""Shared checks: float64 central differences and a PyTorch reference.

``numerical_grad`` differentiates a scalar function by central differences;
``check_backward`` turns an op's ``forward``/``backward`` pair into that check
by contracting the output with a fixed random ``dy`` (L = sum(y * dy)).
"""
import contextlib

import numpy as np
import pytest

try:
    import torch
    torch.set_num_threads(2)
except ImportError:  # the reference is optional; the naive-loop checks are not
    torch = None

needs_torch = pytest.mark.skipif(torch is None, reason="PyTorch is not installed (pip install .[test])")


def numerical_grad(f, x, eps=1e-6):
    """d f() / d x by central differences; ``f`` reads ``x`` (float64), which is perturbed in place."""
    g = np.zeros_like(x, dtype=np.float64)
    flat, gflat = x.reshape(-1), g.reshape(-1)
    for i in range(flat.size):
        old = flat[i]
        flat[i] = old + eps
        fp = f()
        flat[i] = old - eps
        fm = f()
        flat[i] = old
        gflat[i] = (fp - fm) / (2 * eps)
    return g


def assert_close(actual, expected, rtol=1e-5, atol=1e-6, name="value"):
    actual, expected = np.asarray(actual), np.asarray(expected)
    assert actual.shape == expected.shape, f"{name}: shape {actual.shape} != expected {expected.shape}"
    err = np.abs(actual.astype(np.float64) - expected.astype(np.float64))
    tol = atol + rtol * np.abs(expected.astype(np.float64))
    if not np.all(err <= tol):
        i = np.unravel_index(np.argmax(err - tol), err.shape)
        raise AssertionError(f"{name}: max abs error {err.max():.3e} at {i}: got {actual[i]!r}, "
                             f"expected {expected[i]!r} (rtol={rtol}, atol={atol})")


def check_backward(forward, backward, inputs, wrt, seed=0, eps=1e-6, rtol=1e-6, atol=1e-8, **kwargs):
    """Gradient check of an op in float64.

    ``forward(**inputs, **kwargs) -> (y, cache)``; ``backward(dy, cache)`` returns one
    gradient or a tuple of them, in the order of ``wrt`` (names of ``inputs``).
    """
    inputs = {k: (np.array(v, dtype=np.float64) if isinstance(v, np.ndarray) else v) for k, v in inputs.items()}
    y, cache = forward(**inputs, **kwargs)
    dy = np.random.default_rng(seed).standard_normal(np.shape(y))
    grads = backward(dy, cache)
    if not isinstance(grads, tuple):
        grads = (grads,)
    for name, g in zip(wrt, grads):
        def f():
            return float(np.sum(forward(**inputs, **kwargs)[0] * dy))
        num = numerical_grad(f, inputs[name], eps=eps)
        assert_close(g, num, rtol=rtol, atol=atol, name=f"d{name}")
    return grads


def rand(shape, seed=0, dtype=np.float32, scale=1.0):
    """Standard normal values: continuous, so no ties for max pooling or ReLU's kink."""
    return (np.random.default_rng(seed).standard_normal(shape) * scale).astype(dtype)


def nhwc_to_nchw(x):
    return np.ascontiguousarray(np.transpose(x, (0, 3, 1, 2)))


def nchw_to_nhwc(x):
    return np.ascontiguousarray(np.transpose(x, (0, 2, 3, 1)))


@contextlib.contextmanager
def one_blas_thread():
    """Training tests on a shared machine: BLAS threads fighting over 2 cores are several times slower."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        yield
        return
    with threadpool_limits(limits=1):
        yield
