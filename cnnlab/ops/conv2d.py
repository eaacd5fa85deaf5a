"""2-D convolution (cross-correlation, as in every framework), NHWC x (kh, kw, C, F).

Forward is im2col + one GEMM; backward reuses the cached columns for dW and
sums one small GEMM per kernel offset back onto the padded input for dx.
"""
from ..backend import xp
from .im2col import crop2d, empty, im2col, im2col_kmajor, offset_view, pad2d
from .shape import normalize_tuple, window_output_shape
from .threads import parallel_slices


class Conv2DCache:
    __slots__ = ("cols2d", "W2d", "has_b", "x_shape", "padded_shape", "pads", "kernel", "out", "strides", "dilation")

    def __init__(self, **kw):
        for k, v in kw.items():
            setattr(self, k, v)


def forward(x, W, b=None, strides=(1, 1), padding="valid", dilation=(1, 1), where="conv2d"):
    """``y[n, p, q, f] = sum_{i, j, c} xpad[n, p*sh + i*dh, q*sw + j*dw, c] * W[i, j, c, f] + b[f]``."""
    if x.ndim != 4:
        raise ValueError(f"{where}: expected x of shape (N, H, W, C), got x.shape={x.shape}")
    if W.ndim != 4:
        raise ValueError(f"{where}: expected W of shape (kh, kw, C, F), got W.shape={W.shape}")
    N, in_h, in_w, C = x.shape
    kh, kw, Cw, F = W.shape
    if Cw != C:
        raise ValueError(f"{where}: input has {C} channels (x.shape={tuple(x.shape)}, NHWC) but the kernel "
                         f"expects {Cw} (W.shape={tuple(W.shape)}, (kh, kw, C, F))")
    if b is not None and b.shape != (F,):
        raise ValueError(f"{where}: bias shape {tuple(b.shape)} does not match the {F} filters of W.shape={tuple(W.shape)}")
    strides = normalize_tuple(strides, 2, "strides")
    dilation = normalize_tuple(dilation, 2, "dilation")
    out_h, out_w, pads = window_output_shape(in_h, in_w, (kh, kw), strides, dilation, padding, where=where)

    xp_ = pad2d(x, pads)                                                   # (N, Hp, Wp, C)
    M, K = N * out_h * out_w, kh * kw * C
    dtype = xp.result_type(x, W)
    W2d = W.reshape(K, F)                                                  # (K, F)
    if kh == kw == 1 and b is None:
        cols2d = offset_view(xp_, 0, 0, out_h, out_w, strides).reshape(M, K)  # (M, K): no im2col
    else:
        # the bias rides in the GEMM as a column of ones in the patches and a row b under W:
        # cheaper than a pass over y, and backward's dW GEMM then yields db as its last row
        Kb = K + (b is not None)
        if C == 1:
            colsT = empty((Kb, M), xp_.dtype)                              # (Kb, M)
            im2col_kmajor(xp_, kh, kw, out_h, out_w, strides, dilation,
                          out=_view(colsT[:K], (kh, kw, C, N, out_h, out_w)))
            cols2d = colsT.T                                               # (M, Kb), a transposed view
        else:
            cols2d = empty((M, Kb), xp_.dtype)                             # (M, Kb)
            im2col(xp_, kh, kw, out_h, out_w, strides, dilation, out=_view(cols2d[:, :K], (N, out_h, out_w, kh, kw, C)))
        if b is not None:
            cols2d[:, K] = 1
            W2d = xp.concatenate([W2d, b.reshape(1, F).astype(W2d.dtype, copy=False)])  # (K + 1, F)
    y = xp.matmul(cols2d, W2d, out=empty((M, F), dtype))                  # (M, F)
    cache = Conv2DCache(cols2d=cols2d, W2d=W2d, has_b=b is not None, x_shape=x.shape, padded_shape=xp_.shape,
                        pads=pads, kernel=(kh, kw), out=(out_h, out_w), strides=strides, dilation=dilation)
    return y.reshape(N, out_h, out_w, F), cache                            # (N, out_h, out_w, F)


def _view(a, shape):
    """``a.reshape(shape)`` that must not copy (im2col writes through it)."""
    v = a.reshape(shape)
    if not xp.may_share_memory(v, a):  # a copy would live elsewhere
        raise AssertionError("reshape copied")  # cannot happen for the slices used here
    return v


def backward(dy, cache, need_dx=True):
    """Return ``(dx, dW, db)``; ``db`` is None without bias, ``dx`` None when ``need_dx`` is False."""
    c = cache
    kh, kw = c.kernel
    out_h, out_w = c.out
    N, in_h, in_w, C = c.x_shape
    K, F = kh * kw * C, c.W2d.shape[1]
    dy2d = dy.reshape(-1, F)                                               # (M, F)
    cols2d = c.cols2d
    # measured: with row-major columns, (dy^T cols)^T beats cols^T dy in OpenBLAS; K-major the reverse
    dWb = cols2d.T @ dy2d if cols2d.strides[0] < cols2d.strides[1] else (dy2d.T @ cols2d).T  # (K or K + 1, F)
    dW = dWb[:K].reshape(kh, kw, C, F)                                     # (kh, kw, C, F)
    db = dWb[K].copy() if c.has_b else None                                # (F,): the ones column's row
    if not need_dx:
        return None, dW, db
    W2d = c.W2d[:K]                                                        # (K, F) without the bias row
    if kh == kw == 1 and c.padded_shape == c.x_shape and c.strides == (1, 1):
        dx = xp.matmul(dy2d, W2d.T, out=empty((dy2d.shape[0], C), dy2d.dtype))  # (M, C)
        return dx.reshape(c.x_shape), dW, db                               # (N, H, W, C)
    dxp = _dx_per_offset(dy2d, W2d, c)                                     # (N, Hp, Wp, C)
    return crop2d(dxp, c.pads, in_h, in_w), dW, db                         # (N, H, W, C)


def _dx_per_offset(dy2d, W2d, c):
    """col2im without the columns: one (M, F) @ (F, C) GEMM per tap into a contiguous
    buffer, added onto dx.

    Measured faster than one (M, F) @ (F, K) GEMM followed by col2im (threaded over the
    batch too) on every seed shape at 2 threads: 20 vs 24 ms (3x3, 32->64 at 14x14),
    47 vs 60 ms (5x5, 32->64). Each add moves whole rows (out_w * C floats at unit
    stride) instead of C-float pieces spread K apart, and the (M, K) column gradient is
    never materialised.
    """
    kh, kw = c.kernel
    out_h, out_w = c.out
    N, C = c.x_shape[0], c.x_shape[3]
    W4 = W2d.reshape(kh, kw, C, -1)                                        # (kh, kw, C, F)
    dxp = empty(c.padded_shape, dy2d.dtype)                                # (N, Hp, Wp, C)
    g = empty((dy2d.shape[0], C), dy2d.dtype)                              # (M, C)
    g4 = g.reshape(N, out_h, out_w, C)                                     # (N, out_h, out_w, C)
    for i in range(kh):
        for j in range(kw):
            # the GEMM stays one call (OpenBLAS threads it); the add is split over the batch
            xp.matmul(dy2d, W4[i, j].T, out=g)

            def add_slice(sl, i=i, j=j):
                if i == j == 0:  # the zero fill rides along with the first tap
                    dxp[sl].fill(0)
                offset_view(dxp[sl], i, j, out_h, out_w, c.strides, c.dilation)[...] += g4[sl]

            parallel_slices(add_slice, N, g.size)
    return dxp

