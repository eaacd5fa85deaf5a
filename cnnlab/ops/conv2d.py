"""2-D convolution (cross-correlation, as in every framework), NHWC x (kh, kw, C, F).

Forward is im2col + one GEMM; backward reuses the cached columns for dW and
sums the column gradient back per kernel offset (col2im) for dx.
"""
from ..backend import xp
from .im2col import col2im, crop2d, empty, im2col, offset_view, pad2d, zeros
from .shape import normalize_tuple, window_output_shape


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
    if kh == kw == 1:
        cols = offset_view(xp_, 0, 0, out_h, out_w, strides)               # (N, out_h, out_w, C), no im2col
    else:
        cols = im2col(xp_, kh, kw, out_h, out_w, strides, dilation)        # (N, out_h, out_w, kh, kw, C)
    cols2d = cols.reshape(N * out_h * out_w, kh * kw * C)                  # (M, K); copies only a strided 1x1 view
    W2d = W.reshape(kh * kw * C, F)                                        # (K, F)
    y = xp.matmul(cols2d, W2d, out=empty((cols2d.shape[0], F), xp.result_type(x, W)))  # (M, F)
    if b is not None:
        y += b
    cache = Conv2DCache(cols2d=cols2d, W2d=W2d, has_b=b is not None, x_shape=x.shape, padded_shape=xp_.shape,
                        pads=pads, kernel=(kh, kw), out=(out_h, out_w), strides=strides, dilation=dilation)
    return y.reshape(N, out_h, out_w, F), cache                            # (N, out_h, out_w, F)


def backward(dy, cache, need_dx=True):
    """Return ``(dx, dW, db)``; ``db`` is None without bias, ``dx`` None when ``need_dx`` is False."""
    c = cache
    kh, kw = c.kernel
    out_h, out_w = c.out
    K, F = c.W2d.shape
    N, in_h, in_w, C = c.x_shape
    dy2d = dy.reshape(-1, F)                                               # (M, F)
    dW = (c.cols2d.T @ dy2d).reshape(kh, kw, C, F)                         # (kh, kw, C, F)
    db = dy2d.sum(axis=0) if c.has_b else None                             # (F,)
    if not need_dx:
        return None, dW, db
    if kh == kw == 1 and c.padded_shape == c.x_shape and c.strides == (1, 1):
        dx = xp.matmul(dy2d, c.W2d.T, out=empty((dy2d.shape[0], C), dy2d.dtype))  # (M, C)
        return dx.reshape(c.x_shape), dW, db                               # (N, H, W, C)
    if DX_PER_OFFSET(c):
        dxp = _dx_per_offset(dy2d, c)
    else:
        dxp = _dx_col2im(dy2d, c)
    return crop2d(dxp, c.pads, in_h, in_w), dW, db                         # (N, H, W, C)


def _dx_col2im(dy2d, c):
    """One (M, F) @ (F, K) GEMM, then sum each tap's slice of the columns onto dx."""
    kh, kw = c.kernel
    out_h, out_w = c.out
    N, C = c.x_shape[0], c.x_shape[3]
    dcols = xp.matmul(dy2d, c.W2d.T, out=empty((dy2d.shape[0], c.W2d.shape[0]), dy2d.dtype))  # (M, K)
    dcols = dcols.reshape(N, out_h, out_w, kh, kw, C)                      # (N, out_h, out_w, kh, kw, C)
    return col2im(dcols, c.padded_shape, kh, kw, out_h, out_w, c.strides, c.dilation)  # (N, Hp, Wp, C)


def _dx_per_offset(dy2d, c):
    """One (M, F) @ (F, C) GEMM per tap into a contiguous buffer, added onto dx.

    The add then moves whole rows (out_w * C floats at unit stride) instead of
    C-float pieces spread K apart, which is what makes plain col2im slow.
    """
    kh, kw = c.kernel
    out_h, out_w = c.out
    N, C = c.x_shape[0], c.x_shape[3]
    W4 = c.W2d.reshape(kh, kw, C, -1)                                      # (kh, kw, C, F)
    dxp = zeros(c.padded_shape, dy2d.dtype)                                # (N, Hp, Wp, C)
    g = empty((dy2d.shape[0], C), dy2d.dtype)                              # (M, C)
    for i in range(kh):
        for j in range(kw):
            xp.matmul(dy2d, W4[i, j].T, out=g)
            offset_view(dxp, i, j, out_h, out_w, c.strides, c.dilation)[...] += g.reshape(N, out_h, out_w, C)
    return dxp


def DX_PER_OFFSET(c):
    return True
