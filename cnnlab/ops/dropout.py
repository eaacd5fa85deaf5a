"""Inverted dropout: drop a fraction ``rate`` and scale survivors by 1/(1-rate).

Scaling at training time keeps the expectation of every unit, so inference is
the identity (Keras's and PyTorch's convention).
"""
import numpy as np

from . import threads
from .im2col import empty
from .threads import flat, parallel_slices


def forward(x, rate, rng, training=True, mask=None):
    """-> (y, cache); ``rng`` is a numpy Generator, the only source of the mask, unless ``mask``
    (``x``'s shape, True where kept) was drawn already (``draw_mask``: by the process that
    draws one mask for a batch split over processes)."""
    rate = float(rate)
    if not 0.0 <= rate < 1.0:
        raise ValueError(f"dropout: `rate` must be in [0, 1) (the fraction of units dropped). Received: rate={rate}")
    if not training or rate == 0.0:
        return x, None
    if mask is None:
        mask = draw_mask(x.shape, rate, rng)
    elif mask.shape != x.shape or mask.dtype != np.bool_:
        raise ValueError(f"dropout: the mask given has shape {mask.shape} and dtype {mask.dtype}, expected "
                         f"{x.shape} (the input's) and bool")
    scale = 1.0 / (1.0 - rate)
    return _apply(x, mask, scale), (mask, scale)


def draw_mask(shape, rate, rng):
    """The keep-mask ``forward`` draws for an input of ``shape``: True with probability 1 - rate."""
    return rng.random(shape, dtype=np.float32) >= rate


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
