"""Batch normalisation over every axis but the last (channels-last).

Keras semantics: ``epsilon=1e-3``, ``momentum=0.99`` with
``moving = moving * momentum + batch * (1 - momentum)``, and the biased batch
variance used both to normalise and to update the moving variance.

Speed: the input is seen as rows of C values, ``(M, C)``, and walked in blocks
of rows small enough to stay in cache, so each pass over the data does all of
its elementwise work at once. The cache keeps ``x`` and the statistics rather
than a normalised copy. Channel sums add a few dozen values at a time in the
input's dtype, then go on in float64 across folds and blocks, always in the same
order: the result does not depend on the number of threads.
"""
from dataclasses import dataclass

import numpy as np

from .im2col import empty
from .threads import parallel_slices

BLOCK_VALUES = 1 << 16  # values per block (256 KiB of float32): a block's temporaries stay in L2


@dataclass
class BatchNormCache:
    x: np.ndarray         # the input, (M, C) view
    gamma: np.ndarray     # (C,)
    inv_std: np.ndarray   # (C,) 1 / sqrt(var + eps), x's dtype
    mean: np.ndarray      # (C,) batch mean (training) or moving mean (inference)
    var: np.ndarray       # (C,) biased batch variance (training) or moving variance
    training: bool
    reduce: object = None  # the forward's ``reduce``, for backward

    @property
    def xhat(self):
        """The normalised input, (M, C) (computed on demand)."""
        return (self.x - self.mean) * self.inv_std


def _check(x, gamma, beta):
    C = x.shape[-1]
    if gamma.shape != (C,) or beta.shape != (C,):
        raise ValueError(f"batchnorm: gamma {gamma.shape} and beta {beta.shape} must have shape ({C},) "
                         f"for input of shape {x.shape} (normalised over all axes but the last)")
    return x.reshape(-1, C)  # (M, C)


def _blocks(M, C):
    """Rows per block and number of blocks for an (M, C) array."""
    rows = max(1, BLOCK_VALUES // C)
    return rows, -(-M // rows)


def _fold(m):
    """Rows folded into one wide row (a power of two dividing ``m``, at most 32): broadcasting a
    per-channel vector over (m, C) runs NumPy's inner loop only C long, and short loops are slow."""
    r = 32
    while r > 1 and m % r:
        r //= 2
    return r


def _wide(a, r):
    """(m, C) block as (m / r, r * C)."""
    return a.reshape(a.shape[0] // r, r * a.shape[1])


class _Tiled:
    """Per-channel vectors repeated r times, made once per fold width."""

    def __init__(self, *vectors):
        self.vectors, self.cache = vectors, {}

    def __call__(self, r):
        if r not in self.cache:
            self.cache[r] = [np.tile(v, r) for v in self.vectors]
        return self.cache[r]


def _sum_wide(w, C):
    """Channel sums of a folded block (m / r, r * C): down the rows in the block's dtype (a few
    dozen values each), then in float64 across the fold and (by the caller) across blocks."""
    return w.sum(axis=0).reshape(-1, C).sum(axis=0, dtype=np.float64)  # (C,)


def _per_block(fn, M, C, n_sums=0):
    """Run ``fn(rows_slice, sums_row)`` over every block of rows (threads split the blocks);
    return the ``n_sums`` per-channel sums it filled, added over blocks in order."""
    rows, nb = _blocks(M, C)
    part = np.zeros((nb, n_sums, C), np.float64) if n_sums else None

    def run(sl):
        for k in range(sl.start, sl.stop):
            fn(slice(k * rows, min((k + 1) * rows, M)), part[k] if n_sums else None)

    parallel_slices(run, nb, M * C)
    return part.sum(axis=0) if n_sums else None  # (n_sums, C)


def local(sums, count):
    """The ``reduce`` of a batch that is all here: the sums as they are."""
    return sums, count


def forward_train(x, gamma, beta, epsilon=1e-3, reduce=local):
    """Normalise with the batch statistics -> (y, cache); ``cache.mean``/``cache.var`` feed update_moving.

    ``reduce(sums, count) -> (sums, count)`` turns per-channel float64 sums (k, C) over the ``count``
    rows here into those over the whole batch, where ``x`` is part of a batch split over processes
    (``cnnlab.training.processes``): the statistics are then the whole batch's. Backward reduces
    through the same function."""
    x2 = _check(x, gamma, beta)                                           # (M, C)
    M, C = x2.shape
    dtype = x.dtype

    def sum_x(rs, out):
        out[0] = _sum_wide(_wide(x2[rs], _fold(rs.stop - rs.start)), C)

    sums, total = reduce(_per_block(sum_x, M, C, 1), M)                   # (1, C), rows over the batch
    mean64 = sums[0] / total                                              # (C,)
    mean = mean64.astype(dtype)

    tiled = _Tiled(mean)

    def sum_sq(rs, out):  # two-pass variance: no cancellation
        r = _fold(rs.stop - rs.start)
        xc = _wide(x2[rs], r) - tiled(r)[0]
        xc *= xc
        out[0] = _sum_wide(xc, C)

    var64 = reduce(_per_block(sum_sq, M, C, 1), M)[0][0] / total          # (C,) biased, as Keras
    inv_std = (1.0 / np.sqrt(var64 + epsilon)).astype(dtype)              # (C,)
    y = _affine(x2, mean, gamma * inv_std, beta)                          # (M, C)
    return y.reshape(x.shape), BatchNormCache(x2, gamma, inv_std, mean, var64.astype(dtype), True, reduce)


def _affine(x2, mean, scale, shift):
    """``(x - mean) * scale + shift`` per channel, as ``x * scale + (shift - mean * scale)``,
    block by block: (M, C)."""
    M, C = x2.shape
    y = empty((M, C), np.result_type(x2, scale))
    tiled = _Tiled(scale, shift - mean * scale)

    def fn(rs, _):
        r = _fold(rs.stop - rs.start)
        s, b = tiled(r)
        ys = _wide(y[rs], r)
        np.multiply(_wide(x2[rs], r), s, out=ys)
        ys += b

    _per_block(fn, M, C)
    return y


def forward_inference(x, gamma, beta, moving_mean, moving_var, epsilon=1e-3):
    """Normalise with the moving statistics -> (y, cache)."""
    x2 = _check(x, gamma, beta)                                           # (M, C)
    inv_std = (1.0 / np.sqrt(moving_var + epsilon)).astype(x.dtype)       # (C,)
    y = _affine(x2, moving_mean.astype(x.dtype), gamma * inv_std, beta)   # (M, C)
    return y.reshape(x.shape), BatchNormCache(x2, gamma, inv_std, moving_mean, moving_var, False)


def backward(dy, cache):
    """-> (dx, dgamma, dbeta)."""
    c = cache
    dy2 = dy.reshape(-1, dy.shape[-1])                                    # (M, C)
    M, C = dy2.shape
    mean = np.asarray(c.mean, dtype=c.x.dtype)

    tiled = _Tiled(mean)

    def sums(rs, out):  # sum(dy) and sum(dy * (x - mean))
        r = _fold(rs.stop - rs.start)
        dys = _wide(dy2[rs], r)
        out[0] = _sum_wide(dys, C)
        t = _wide(c.x[rs], r) - tiled(r)[0]
        t *= dys
        out[1] = _sum_wide(t, C)

    s = _per_block(sums, M, C, 2)
    # gamma's and beta's gradients over the rows here: a batch split over processes adds them up
    dbeta = s[0].astype(dy.dtype)                                         # (C,)
    dgamma = (s[1] * c.inv_std).astype(dy.dtype)                          # (C,): sum(dy * xhat)
    a = (c.gamma * c.inv_std).astype(dy.dtype)                            # (C,)
    if not c.training:  # the statistics are constants
        return _affine(dy2, 0, a, 0).reshape(dy.shape), dgamma, dbeta
    # Closed form of the chain through mean and var, whose sums run over the whole batch:
    # dx = a * (dy - dbeta / M - xhat * dgamma / M), xhat = (x - mean) * inv_std
    s_all, M_all = c.reduce(s, M) if c.reduce is not None else (s, M)
    b = (a * c.inv_std * (s_all[1] * c.inv_std).astype(dy.dtype) / M_all).astype(dy.dtype)  # (C,) on (x - mean)
    d = (a * s_all[0].astype(dy.dtype) / M_all).astype(dy.dtype)         # (C,) constant
    dx = empty((M, C), dy.dtype)
    tiled = _Tiled(a, b, mean * b - d)

    def fn(rs, _):  # dx = dy * a - x * b + (mean * b - d)
        r = _fold(rs.stop - rs.start)
        a_, b_, e_ = tiled(r)
        dxs = _wide(dx[rs], r)
        np.multiply(_wide(dy2[rs], r), a_, out=dxs)
        dxs -= _wide(c.x[rs], r) * b_
        dxs += e_

    _per_block(fn, M, C)
    return dx.reshape(dy.shape), dgamma, dbeta


def update_moving(moving, batch_value, momentum=0.99):
    """In place: ``moving = moving * momentum + batch * (1 - momentum)``; returns ``moving``."""
    moving *= momentum
    moving += (1.0 - momentum) * batch_value
    return moving
