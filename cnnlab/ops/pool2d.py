"""2-D max / average / L2 pooling and global pooling, NHWC.

Every mode loops over the ``ph * pw`` window offsets only; each offset's strided
view covers all output pixels. Max pooling keeps the winning offset as a uint8
index, the smallest cache that lets backward scatter without touching ``x``.
"""
from ..backend import xp
from .im2col import crop2d, empty, offset_view, pad2d, zeros
from .shape import normalize_tuple, window_output_shape

MODES = ("max", "avg", "l2")


class Pool2DCache:
    __slots__ = ("mode", "x_shape", "padded_shape", "pads", "pool", "strides", "out", "tiles",
                 "arg", "count", "xp_", "y")

    def __init__(self, **kw):
        for k in self.__slots__:
            setattr(self, k, kw.get(k))


def _window_count(n, k, s, before, out):
    """Real (unpadded) pixels in each window along one axis: (out,)."""
    start = xp.arange(out) * s - before
    return xp.minimum(start + k, n) - xp.maximum(start, 0)


def forward(x, pool_size=(2, 2), strides=None, padding="valid", mode="max", where="pool2d"):
    """Pool each ``pool_size`` window of every channel; strides default to ``pool_size``."""
    if mode not in MODES:
        raise ValueError(f"{where}: unknown pooling mode {mode!r}; expected one of {', '.join(MODES)}")
    if x.ndim != 4:
        raise ValueError(f"{where}: expected x of shape (N, H, W, C), got x.shape={x.shape}")
    ph, pw = normalize_tuple(pool_size, 2, "pool_size")
    sh, sw = strides = normalize_tuple(pool_size if strides is None else strides, 2, "strides")
    N, in_h, in_w, C = x.shape
    out_h, out_w, pads = window_output_shape(in_h, in_w, (ph, pw), strides, (1, 1), padding, where=where)
    # windows tile the (padded) input exactly: backward can assign instead of accumulate
    tiles = (sh, sw) == (ph, pw) and out_h * ph == in_h + pads[0] + pads[1] and out_w * pw == in_w + pads[2] + pads[3]
    xp_ = pad2d(x, pads, value=-xp.inf if mode == "max" else 0.0)        # (N, Hp, Wp, C)
    c = Pool2DCache(mode=mode, x_shape=x.shape, padded_shape=xp_.shape, pads=pads, pool=(ph, pw),
                    strides=strides, out=(out_h, out_w), tiles=tiles)
    offsets = [(i, j) for i in range(ph) for j in range(pw)]
    views = (offset_view(xp_, i, j, out_h, out_w, strides) for i, j in offsets)  # each (N, out_h, out_w, C)

    if mode == "max":
        y = empty((N, out_h, out_w, C), x.dtype)
        y[...] = next(views)
        idx = xp.min_scalar_type(ph * pw - 1)                             # uint8 unless the window is huge
        arg = xp.zeros(y.shape, dtype=idx)                                # (N, out_h, out_w, C)
        better = xp.empty(y.shape, dtype=bool)
        kb = xp.empty(y.shape, dtype=idx)
        for k, v in enumerate(views, start=1):
            xp.greater(v, y, out=better)                                  # strict: ties keep the first offset
            xp.maximum(y, v, out=y)
            # k exceeds every earlier index, so max(arg, better * k) is "k where better" without a
            # masked copy (copyto(where=) is several times slower)
            xp.multiply(better, idx.type(k), out=kb)
            xp.maximum(arg, kb, out=arg)
        c.arg = arg
        return y, c

    if mode == "avg":
        y = empty((N, out_h, out_w, C), x.dtype)
        y[...] = next(views)
        for v in views:
            y += v
        if any(pads):  # TensorFlow: padding is not part of the mean
            count = (_window_count(in_h, ph, sh, pads[0], out_h)[:, None] *
                     _window_count(in_w, pw, sw, pads[2], out_w)[None, :])
            c.count = count.astype(x.dtype)[None, :, :, None]             # (1, out_h, out_w, 1)
        else:
            c.count = x.dtype.type(ph * pw)
        y /= c.count
        return y, c

    # l2: sqrt of the sum of squares; zero padding adds nothing
    y = empty((N, out_h, out_w, C), x.dtype)
    sq = empty((N, out_h, out_w, C), x.dtype)
    xp.square(next(views), out=y)
    for v in views:
        xp.square(v, out=sq)
        y += sq
    xp.sqrt(y, out=y)
    c.xp_, c.y = xp_, y
    return y, c


def backward(dy, cache):
    """dx (N, H, W, C) from dy (N, out_h, out_w, C)."""
    c = cache
    ph, pw = c.pool
    out_h, out_w = c.out
    N, in_h, in_w, C = c.x_shape
    offsets = [(i, j) for i in range(ph) for j in range(pw)]
    dtype = dy.dtype
    # tiled windows write each input pixel exactly once, so no zero fill and no +=
    dxp = empty(c.padded_shape, dtype) if c.tiles else zeros(c.padded_shape, dtype)  # (N, Hp, Wp, C)

    def view(k):
        return offset_view(dxp, *offsets[k], out_h, out_w, c.strides)    # (N, out_h, out_w, C)

    def scatter(k, g):
        if c.tiles:
            view(k)[...] = g
        else:
            view(k)[...] += g

    if c.mode == "max":
        hit = xp.empty(dy.shape, dtype=bool)
        g = xp.empty(dy.shape, dtype=dtype)
        for k in range(len(offsets)):
            xp.equal(c.arg, k, out=hit)
            if c.tiles:
                xp.multiply(dy, hit, out=view(k))
            else:
                xp.multiply(dy, hit, out=g)
                view(k)[...] += g
    elif c.mode == "avg":
        g = dy / c.count                                                  # (N, out_h, out_w, C)
        for k in range(len(offsets)):
            scatter(k, g)
    else:
        # d sqrt(s) = ds / (2 sqrt(s)), ds/dx = 2x; an all-zero window has no gradient
        scale = xp.divide(dy, c.y, out=xp.zeros_like(dy), where=c.y > 0)  # (N, out_h, out_w, C)
        g = xp.empty(dy.shape, dtype=dtype)
        for k, (i, j) in enumerate(offsets):
            xp.multiply(scale, offset_view(c.xp_, i, j, out_h, out_w, c.strides), out=g)
            scatter(k, g)
    return crop2d(dxp, c.pads, in_h, in_w)                                # (N, H, W, C)


def global_forward(x, mode="avg"):
    """Pool over all of H and W: (N, H, W, C) -> (N, C)."""
    if mode not in ("avg", "max"):
        raise ValueError(f"global pooling: unknown mode {mode!r}; expected 'avg' or 'max'")
    N, H, W, C = x.shape
    if mode == "avg":
        return x.mean(axis=(1, 2)), ("avg", x.shape)                      # (N, C)
    xr = x.reshape(N, H * W, C)                                           # (N, H*W, C)
    arg = xr.argmax(axis=1)                                               # (N, C)
    y = xp.take_along_axis(xr, arg[:, None, :], axis=1)[:, 0, :]          # (N, C)
    return y, ("max", x.shape, arg)


def global_backward(dy, cache):
    mode, (N, H, W, C) = cache[0], cache[1]
    if mode == "avg":
        dx = xp.empty((N, H, W, C), dtype=dy.dtype)
        dx[...] = (dy / (H * W))[:, None, None, :]                        # (N, H, W, C)
        return dx
    dx = xp.zeros((N, H * W, C), dtype=dy.dtype)
    xp.put_along_axis(dx, cache[2][:, None, :], dy[:, None, :], axis=1)
    return dx.reshape(N, H, W, C)
