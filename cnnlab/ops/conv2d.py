"""2-D convolution (cross-correlation, as in every framework), NHWC x (kh, kw, C, F).

Forward is im2col + GEMM; backward reuses the cached columns for dW. dx is
either one small GEMM per kernel offset summed back onto the padded input, or,
for stride-1 convs with at least about as many input as output channels, the
correlation of the padded dy with the flipped kernel (im2col of dy + one GEMM).
Each thread works on its own samples (or rows of dW), GEMMs included.
"""
from ..backend import xp
from .gemm import gemm
from .im2col import empty, from_phase, im2col, im2col_kmajor, offset_view, pad2d
from .shape import normalize_tuple, window_output_shape
from .threads import matmul, matmul_tn, parallel_samples


class Conv2DCache:
    __slots__ = ("cols2d", "W2d", "has_b", "x_shape", "padded_shape", "pads", "kernel", "out", "strides", "dilation",
                 "phase")

    def __init__(self, **kw):
        for k, v in kw.items():
            setattr(self, k, v)


def forward(x, W, b=None, strides=(1, 1), padding="valid", dilation=(1, 1), where="conv2d", phase=False):
    """``y[n, p, q, f] = sum_{i, j, c} xpad[n, p*sh + i*dh, q*sw + j*dw, c] * W[i, j, c, f] + b[f]``.

    With ``phase`` and an even output height and width, y comes in phase layout,
    (N, 2, 2, out_h / 2, out_w / 2, F) (see ``im2col.to_phase``), at no cost: the im2col rows
    are simply gathered in that order. Backward then takes dy in the same layout.
    """
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
    phase = bool(phase) and out_h % 2 == 0 and out_w % 2 == 0
    pix = (2, 2, out_h // 2, out_w // 2) if phase else (out_h, out_w)  # the output pixels, in their order

    xp_ = pad2d(x, pads)                                                   # (N, Hp, Wp, C)
    M, K = N * out_h * out_w, kh * kw * C
    P = out_h * out_w                                                      # rows of the columns per sample
    dtype = xp.result_type(x, W)
    W2d = W.reshape(K, F)                                                  # (K, F)
    y = empty((M, F), dtype)                                               # (M, F)
    if kh == kw == 1 and b is None and not phase:
        cols2d = offset_view(xp_, 0, 0, out_h, out_w, strides).reshape(M, K)  # (M, K): no im2col
        matmul(cols2d, W2d, out=y)
    else:
        # the bias rides in the GEMM as a column of ones in the patches and a row b under W:
        # cheaper than a pass over y, and backward's dW GEMM then yields db as its last row
        Kb = K + (b is not None)
        if C == 1:
            colsT = empty((Kb, M), xp_.dtype)                              # (Kb, M)
            cols6 = _view(colsT[:K], (kh, kw, C, N) + pix)
            cols2d = colsT.T                                               # (M, Kb), a transposed view
        else:
            cols2d = empty((M, Kb), xp_.dtype)                             # (M, Kb)
            cols6 = _view(cols2d[:, :K], (N,) + pix + (kh, kw, C))
        if b is not None:
            W2d = xp.concatenate([W2d, b.reshape(1, F).astype(W2d.dtype, copy=False)])  # (K + 1, F)

        def patches_times_kernel(sl):  # im2col and GEMM of the samples in sl, while their columns are in cache
            rows = slice(sl.start * P, sl.stop * P)
            if C == 1:
                im2col_kmajor(xp_[sl], kh, kw, out_h, out_w, strides, dilation, out=cols6[:, :, :, sl], phase=phase)
            else:
                im2col(xp_[sl], kh, kw, out_h, out_w, strides, dilation, out=cols6[sl], phase=phase)
            if b is not None:
                cols2d[rows, K] = 1
            gemm(cols2d[rows], W2d, y[rows])

        parallel_samples(patches_times_kernel, N, M * Kb * F // 16, blas=True)
    cache = Conv2DCache(cols2d=cols2d, W2d=W2d, has_b=b is not None, x_shape=x.shape, padded_shape=xp_.shape,
                        pads=pads, kernel=(kh, kw), out=(out_h, out_w), strides=strides, dilation=dilation,
                        phase=phase)
    return y.reshape((N,) + pix + (F,)), cache                             # (N, out_h, out_w, F) or phase layout


def _view(a, shape):
    """``a.reshape(shape)`` that must not copy (im2col writes through it)."""
    v = a.reshape(shape)
    if not xp.may_share_memory(v, a):  # a copy would live elsewhere
        raise AssertionError("reshape copied")  # cannot happen for the slices used here
    return v


def backward(dy, cache, need_dx=True):
    """Return ``(dx, dW, db)``; ``db`` is None without bias, ``dx`` None when ``need_dx`` is False."""
    dW, db = weight_grads(dy, cache)
    return (input_grad(dy, cache) if need_dx else None), dW, db


def weight_grads(dy, cache):
    """``(dW, db)``: sums over every sample (``db`` None without bias)."""
    c = cache
    kh, kw = c.kernel
    C = c.x_shape[3]
    K, F = kh * kw * C, c.W2d.shape[1]
    dWb = matmul_tn(c.cols2d, dy.reshape(-1, F))                           # (K or K + 1, F); rows in the columns' order
    dW = dWb[:K].reshape(kh, kw, C, F)                                     # (kh, kw, C, F)
    db = dWb[K].copy() if c.has_b else None                                # (F,): the ones column's row
    return dW, db


def input_grad(dy, cache):
    """dx (N, H, W, C), each sample's from its own rows of ``dy``."""
    c = cache
    kh, kw = c.kernel
    out_h, out_w = c.out
    N, in_h, in_w, C = c.x_shape
    K, F = kh * kw * C, c.W2d.shape[1]
    if c.phase:
        dy = from_phase(dy)                                                # (N, out_h, out_w, F)
    dy2d = dy.reshape(-1, F)                                               # (M, F)
    W2d = c.W2d[:K]                                                        # (K, F) without the bias row
    if kh == kw == 1 and c.padded_shape == c.x_shape and c.strides == (1, 1):
        dx = matmul(dy2d, W2d.T, out=empty((dy2d.shape[0], C), dy2d.dtype))  # (M, C)
        return dx.reshape(c.x_shape)                                       # (N, H, W, C)
    dy_pads = _transposed_pads(c) if c.strides == (1, 1) and C >= DX_TRANSPOSED_MIN_C_PER_F * F else None
    if dy_pads is not None:
        return _dx_transposed(dy.reshape(N, out_h, out_w, F), W2d, c, dy_pads)  # (N, H, W, C)
    return _dx_per_offset(dy2d, W2d, c)                                    # (N, H, W, C)


def _transposed_pads(c):
    """Padding of dy that turns dx into a 'valid' correlation with the flipped kernel (stride 1):
    ``(top, bottom, left, right)``, or None where the forward padding exceeds the kernel."""
    (kh, kw), (dh, dw) = c.kernel, c.dilation
    N, in_h, in_w, C = c.x_shape
    out_h, out_w = c.out
    pt, _, pl, _ = c.pads
    top, left = dh * (kh - 1) - pt, dw * (kw - 1) - pl
    bottom, right = in_h - out_h - top + dh * (kh - 1), in_w - out_w - left + dw * (kw - 1)
    pads = (top, bottom, left, right)
    return pads if min(pads) >= 0 else None


# C / F from which dx is the transposed correlation (see _dx_transposed)
DX_TRANSPOSED_MIN_C_PER_F = 0.75
# dy's patches per block of samples: about this many bytes, so that each block's
# im2col is still in L2 when its GEMM reads it (measured best of 128 KiB - 2 MiB)
DX_BLOCK_BYTES = 1 << 21


def _dx_transposed(dy, W2d, c, dy_pads):
    """``dx[n, h, w, c] = sum_{i, j, f} dyp[n, h + i*dh, w + j*dw, f] * W[kh-1-i, kw-1-j, c, f]``.

    One GEMM with K = kh*kw*F instead of kh*kw GEMMs with K = F: measured faster where C
    is at least about F (12 -> 16 channels at 13x13: 1.8 vs 2.1 ms; 64 -> 64 at 14x14: 12.2
    vs 14.0 ms; 32 -> 32 at 28x28: 16.2 vs 20.6 ms), slower where C is half of F.
    """
    kh, kw = c.kernel
    N, in_h, in_w, C = c.x_shape
    F = dy.shape[3]
    K = kh * kw * F
    dyp = pad2d(dy, dy_pads)                                               # (N, in_h + ekh - 1, in_w + ekw - 1, F)
    Wf = xp.ascontiguousarray(W2d.reshape(kh, kw, C, F)[::-1, ::-1].transpose(0, 1, 3, 2)).reshape(K, C)  # (K, C)
    dx = empty(c.x_shape, dy.dtype)                                        # (N, H, W, C)
    per = max(1, DX_BLOCK_BYTES // (in_h * in_w * K * dy.dtype.itemsize))  # samples per block

    def dx_slice(sl):
        # blocks of equal size: a last block of a sample or two ran its GEMM at a tenth of the speed
        n_blocks = -(-(sl.stop - sl.start) // per)
        size = -(-(sl.stop - sl.start) // n_blocks)
        cols = empty((size, in_h, in_w, kh, kw, F), dy.dtype)              # (size, H, W, kh, kw, F)
        for s0 in range(sl.start, sl.stop, size):
            blk = slice(s0, min(s0 + size, sl.stop))
            n = blk.stop - blk.start
            cb = im2col(dyp[blk], kh, kw, in_h, in_w, (1, 1), c.dilation, out=cols[:n])
            gemm(cb.reshape(n * in_h * in_w, K), Wf, dx[blk].reshape(-1, C))      # (n*H*W, C)

    parallel_samples(dx_slice, N, dx.size * K // 16, blas=True)
    return dx


def _dx_per_offset(dy2d, W2d, c):
    """col2im without the columns: one (m, F) @ (F, C) GEMM per tap, added onto the
    padded dx, for the samples of each thread.

    Measured faster than one (M, F) @ (F, K) GEMM followed by col2im on every seed
    shape: each add moves whole rows (out_w * C floats at unit stride) instead of
    C-float pieces spread K apart, and the (M, K) column gradient never exists. Each
    thread runs its own GEMMs: handing every tap's add from the BLAS's threads to ours
    and back doubled the time (43 vs 22 ms for the 5x5 32->64 conv at 14x14).
    """
    kh, kw = c.kernel
    out_h, out_w = c.out
    P = out_h * out_w
    N, in_h, in_w, C = c.x_shape
    pt, pl = c.pads[0], c.pads[2]
    W4 = W2d.reshape(kh, kw, C, -1)                                        # (kh, kw, C, F)
    dxp = empty(c.padded_shape, dy2d.dtype)                                # (N, Hp, Wp, C)
    dx = dxp if c.padded_shape == c.x_shape else empty(c.x_shape, dy2d.dtype)  # (N, H, W, C)
    g = empty((dy2d.shape[0], C), dy2d.dtype)                              # (M, C)

    def dx_slice(sl):
        rows = slice(sl.start * P, sl.stop * P)
        dys, gs, dxs = dy2d[rows], g[rows], dxp[sl]
        gs4 = gs.reshape(-1, out_h, out_w, C)                              # (n, out_h, out_w, C)
        dxs.fill(0)
        for i in range(kh):
            for j in range(kw):
                gemm(dys, W4[i, j].T, gs)                                  # (n * P, C)
                offset_view(dxs, i, j, out_h, out_w, c.strides, c.dilation)[...] += gs4
        if dx is not dxp:
            dx[sl] = dxs[:, pt:pt + in_h, pl:pl + in_w]

    parallel_samples(dx_slice, N, g.size * kh * kw * dy2d.shape[1] // 16, blas=True)
    return dx
