"""Inverted dropout: drop a fraction ``rate`` and scale survivors by 1/(1-rate).

Scaling at training time keeps the expectation of every unit, so inference is
the identity (Keras's and PyTorch's convention).
"""
import numpy as np


def forward(x, rate, rng, training=True):
    """-> (y, cache); ``rng`` is a numpy Generator, the only source of the mask."""
    rate = float(rate)
    if not 0.0 <= rate < 1.0:
        raise ValueError(f"dropout: `rate` must be in [0, 1) (the fraction of units dropped). Received: rate={rate}")
    if not training or rate == 0.0:
        return x, None
    mask = rng.random(x.shape, dtype=np.float32) >= rate  # P(keep) = 1 - rate
    scale = 1.0 / (1.0 - rate)
    return np.where(mask, x * scale, 0).astype(x.dtype, copy=False), (mask, scale)


def backward(dy, cache):
    if cache is None:  # identity
        return dy
    mask, scale = cache
    return np.where(mask, dy * scale, 0).astype(dy.dtype, copy=False)
