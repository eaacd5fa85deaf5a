"""Inverted dropout: drop a fraction ``rate`` and scale survivors by 1/(1-rate).

Scaling at training time keeps the expectation of every unit, so inference is
the identity (Keras's and PyTorch's convention).
"""
import numpy as np

from . import threads
from .im2col import empty
from .threads import flat, parallel_slices


def forward(x, rate, rng, training=True):
    """-> (y, cache); ``rng`` is a numpy Generator, the only source of the mask."""
    rate = float(rate)
    if not 0.0 <= rate < 1.0:
        raise ValueError(f"dropout: `rate` must be in [0, 1) (the fraction of units dropped). Received: rate={rate}")
    if not training or rate == 0.0:
        return x, None
    mask = rng.random(x.shape, dtype=np.float32) >= rate  # P(keep) = 1 - rate
    scale = 1.0 / (1.0 - rate)
    return _apply(x, mask, scale), (mask, scale)


def backward(dy, cache):
    if cache is None:  # identity
        return dy
    mask, scale = cache
    return _apply(dy, mask, scale)


def _apply(x, mask, scale):
    """``where(mask, x * scale, 0)`` in x's dtype; big arrays in flat chunks over threads."""
    xf = flat(x)
    if xf is None or x.size < threads.MIN_WORK or x.shape != mask.shape or x.dtype.kind != "f":
        return np.where(mask, x * scale, 0).astype(x.dtype, copy=False)
    y = empty(x.shape, x.dtype)  # a float x times a Python float stays x's dtype
    yf, mf = y.reshape(-1), mask.reshape(-1)

    def chunk(sl):
        yf[sl] = np.where(mf[sl], xf[sl] * scale, 0)

    parallel_slices(chunk, x.size)
    return y
