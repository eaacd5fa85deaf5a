"""2-D max / average / L2 pooling and global pooling, NHWC.

Every mode loops over window offsets only; each offset's strided view covers all
output pixels. Max pooling over windows that tile the input keeps the winning
offset as a uint8 index, the smallest cache that lets backward scatter without
touching ``x``. Overlapping (or gapped) max pooling is separable: a max along W,
then along H, ``pw + ph`` taps instead of ``pw * ph`` (3x3 windows: 6 instead of 9,
about half the time), each stage keeping one bool per later tap ("this tap beat
the running max"); its backward rebuilds each window's winner from those masks and
scatter-adds the gradient there.
"""
from ..backend import xp
from .im2col import crop2d, empty, from_phase, offset_view, pad2d, to_phase
from .shape import normalize_tuple, window_output_shape
from .threads import parallel_samples

MODES = ("max", "avg", "l2")


class Pool2DCache:
    __slots__ = ("mode", "x_shape", "padded_shape", "pads", "pool", "strides", "out", "tiles",
                 "arg", "count", "xp_", "y", "beats_w", "beats_h", "phase_in")

    def __init__(self, **kw):
        for k in self.__slots__:
            setattr(self, k, kw.get(k))


def _window_count(n, k, s, before, out):
    """Real (unpadded) pixels in each window along one axis: (out,)."""
    start = xp.arange(out) * s - before
    return xp.minimum(start + k, n) - xp.maximum(start, 0)


def phase_supported(in_h, in_w, pool_size, strides, padding, mode="max"):
    """Whether pooling an (in_h, in_w) input with these settings runs on its phase layout
    (``im2col.to_phase``): max pooling over 2x2 windows at stride 2, even sizes (where
    ``padding`` makes no difference: 'same' pads nothing).

    (3x3 windows at stride 2 ran their forward faster there too, 1.10 vs 1.28 ms within
    seed001's step, but their backward 0.14 ms slower, and the convolution before them lost
    0.1 ms gathering its columns in phase order for a single input channel: not kept.)"""
    pool = normalize_tuple(pool_size, 2, "pool_size")
    strides = normalize_tuple(pool_size if strides is None else strides, 2, "strides")
    return mode == "max" and pool == strides == (2, 2) and in_h % 2 == 0 and in_w % 2 == 0


def forward(x, pool_size=(2, 2), strides=None, padding="valid", mode="max", where="pool2d"):
    """Pool each ``pool_size`` window of every channel; strides default to ``pool_size``.

    ``x`` may also come in phase layout (N, 2, 2, H/2, W/2, C) (``im2col.to_phase``, as a
    convolution makes it for a pooling that alone reads its output); y is (N, out_h, out_w, C)
    either way, and backward returns dx in the layout of ``x``.
    """
    if mode not in MODES:
        raise ValueError(f"{where}: unknown pooling mode {mode!r}; expected one of {', '.join(MODES)}")
    if x.ndim == 6 and x.shape[1:3] == (2, 2):
        H2, W2 = x.shape[3:5]
        if phase_supported(2 * H2, 2 * W2, pool_size, strides, padding, mode):
            return _phase_max_forward(x)
        y, c = forward(from_phase(x), pool_size, strides, padding, mode, where)
        c.phase_in = True
        return y, c
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
    y = empty((N, out_h, out_w, C), x.dtype)
    work = y.size * len(offsets)

    def views(sl):  # each tap's view of the samples in sl: (n, out_h, out_w, C)
        return (offset_view(xp_[sl], i, j, out_h, out_w, strides) for i, j in offsets)

    if mode == "max" and not tiles:
        _separable_max_forward(xp_, y, c)
        return y, c

    if mode == "max":
        c.arg = _max_with_arg(views, y, x.dtype, ph * pw, copy_taps=True)
        return y, c

    if mode == "avg":
        if any(pads):  # TensorFlow: padding is not part of the mean
            count = (_window_count(in_h, ph, sh, pads[0], out_h)[:, None] *
                     _window_count(in_w, pw, sw, pads[2], out_w)[None, :])
            c.count = count.astype(x.dtype)[None, :, :, None]             # (1, out_h, out_w, 1)
        else:
            c.count = x.dtype.type(ph * pw)

        def avg_slice(sl):
            ys = y[sl]
            vs = views(sl)
            ys[...] = next(vs)
            for v in vs:
                ys += v
            ys /= c.count

        parallel_samples(avg_slice, N, work)
        return y, c

    # l2: sqrt of the sum of squares; zero padding adds nothing
    sq = empty((N, out_h, out_w, C), x.dtype)

    def l2_slice(sl):
        ys, sqs = y[sl], sq[sl]
        vs = views(sl)
        xp.square(next(vs), out=ys)
        for v in vs:
            xp.square(v, out=sqs)
            ys += sqs
        xp.sqrt(ys, out=ys)

    parallel_samples(l2_slice, N, work)
    c.xp_, c.y = xp_, y
    return y, c


def scatters(cache):
    """True when backward on ``cache`` scatter-adds with ``add.at`` (max over windows that overlap
    or leave pixels out). Its passes are short and ``add.at`` holds the GIL, so a second thread
    gains it nothing: inside a pipeline it runs whole on the caller when a task is queued on
    the pool thread beside it (``threads.beside``), as a model arranges for the weight gradient
    of the convolution above."""
    return cache.beats_w is not None


def backward(dy, cache):
    """dx (N, H, W, C) from dy (N, out_h, out_w, C), in the layout of the forward's ``x``."""
    if cache.mode == "phase":
        return _phase_max_backward(dy, cache)
    dx = _nhwc_backward(dy, cache)
    return to_phase(dx) if cache.phase_in else dx


def _nhwc_backward(dy, c):
    ph, pw = c.pool
    out_h, out_w = c.out
    N, in_h, in_w, C = c.x_shape
    offsets = [(i, j) for i in range(ph) for j in range(pw)]
    dtype = dy.dtype
    if c.beats_w is not None:
        return crop2d(_separable_max_backward(dy, c), c.pads, in_h, in_w)  # (N, H, W, C)
    dxp = empty(c.padded_shape, dtype)                                    # (N, Hp, Wp, C)
    if c.mode == "max":
        hit = empty(dy.shape, bool)
        g = empty(dy.shape, dtype)
    elif c.mode == "avg":
        g = None
    else:
        # d sqrt(s) = ds / (2 sqrt(s)), ds/dx = 2x; an all-zero window has no gradient
        scale = empty(dy.shape, dtype)                                    # (N, out_h, out_w, C)
        g = empty(dy.shape, dtype)

    def slice_backward(sl):
        dxs, dys = dxp[sl], dy[sl]
        if not c.tiles:  # tiled windows write each input pixel exactly once: no zero fill and no +=
            dxs.fill(0)

        def scatter(k, gs):
            v = offset_view(dxs, *offsets[k], out_h, out_w, c.strides)    # (n, out_h, out_w, C)
            if c.tiles:
                v[...] = gs
            else:
                v += gs

        if c.mode == "max":
            hits, gs = hit[sl], g[sl]
            for k in range(len(offsets)):
                xp.equal(c.arg[sl], k, out=hits)
                if c.tiles:
                    xp.multiply(dys, hits, out=offset_view(dxs, *offsets[k], out_h, out_w, c.strides))
                else:
                    xp.multiply(dys, hits, out=gs)
                    scatter(k, gs)
        elif c.mode == "avg":
            gs = dys / c.count                                            # (n, out_h, out_w, C)
            for k in range(len(offsets)):
                scatter(k, gs)
        else:
            ss, gs, ys = scale[sl], g[sl], c.y[sl]
            ss.fill(0)
            xp.divide(dys, ys, out=ss, where=ys > 0)
            for k, (i, j) in enumerate(offsets):
                xp.multiply(ss, offset_view(c.xp_[sl], i, j, out_h, out_w, c.strides), out=gs)
                scatter(k, gs)

    parallel_samples(slice_backward, N, dy.size * len(offsets))
    return crop2d(dxp, c.pads, in_h, in_w)                                # (N, H, W, C)


def _taps(a, axis, k, s, n):
    """The k views of ``a`` along ``axis`` (1 = H, 2 = W) under each window offset, n windows."""
    sl = [slice(t, t + (n - 1) * s + 1, s) for t in range(k)]
    return [a[:, t] for t in sl] if axis == 1 else [a[:, :, t] for t in sl]


# Below this many channels a W tap's view runs NumPy's inner loop over only C floats; one
# strided copy then two ufuncs on the contiguous copy beat two ufuncs on the view (12
# channels: 0.31 vs 0.43 ms; measured even at 32 and above, so the copy is skipped there).
_COPY_TAPS_BELOW_C = 32


def _max_stage(src, axis, k, s, m, beats, v):
    """Max over k taps of ``src`` along ``axis`` into ``m``; ``beats[t - 1]`` = tap t beat taps < t.

    Strict ``>``: a tie keeps the earlier tap. ``v`` is a scratch of m's shape for copied
    taps, or None to work on the views.
    """
    taps = _taps(src, axis, k, s, m.shape[axis])
    if k == 1:
        m[...] = taps[0]
        return
    if v is None:
        xp.greater(taps[1], taps[0], out=beats[0])
        xp.maximum(taps[0], taps[1], out=m)
        rest = range(2, k)
    else:
        xp.copyto(m, taps[0])
        rest = range(1, k)
    for t in rest:
        if v is not None:
            xp.copyto(v, taps[t])
        tap = taps[t] if v is None else v
        xp.greater(tap, m, out=beats[t - 1])
        xp.maximum(m, tap, out=m)


def _separable_max_forward(xp_, y, c):
    """Max pooling as a max along W into (N, Hp, out_w, C), then along H into ``y``.

    W first keeps PyTorch's and TensorFlow's tie rule: the first maximum in row-major order
    (the topmost row holding the maximum, then its leftmost column in that row).
    """
    (ph, pw), (sh, sw) = c.pool, c.strides
    N, Hp, Wp, C = xp_.shape
    mid = empty((N, Hp, c.out[1], C), xp_.dtype)                          # (N, Hp, out_w, C)
    c.beats_w = empty((pw - 1,) + mid.shape, bool)                        # (pw - 1, N, Hp, out_w, C)
    c.beats_h = empty((ph - 1,) + y.shape, bool)                          # (ph - 1, N, out_h, out_w, C)
    v = empty(mid.shape, xp_.dtype) if C < _COPY_TAPS_BELOW_C and pw > 1 else None

    def max_slice(sl):
        _max_stage(xp_[sl], 2, pw, sw, mid[sl], c.beats_w[:, sl], None if v is None else v[sl])
        _max_stage(mid[sl], 1, ph, sh, y[sl], c.beats_h[:, sl], None)

    parallel_samples(max_slice, N, mid.size * pw + y.size * ph)


_STARTS = {}  # (padded shape, out shape, strides) -> _window_starts


def _window_starts(padded_shape, out, strides):
    """Flat index in the padded input (N, Hp, Wp, C) of each output's window's top-left pixel:
    (N, out_h, out_w, C), computed once per shape."""
    key = (padded_shape, out, strides)
    if key not in _STARTS:
        N, Hp, Wp, C = padded_shape
        (out_h, out_w), (sh, sw) = out, strides
        rows = xp.arange(N).reshape(N, 1, 1, 1) * Hp + xp.arange(out_h).reshape(1, out_h, 1, 1) * sh
        starts = (rows * Wp + xp.arange(out_w).reshape(1, 1, out_w, 1) * sw) * C + xp.arange(C)
        if len(_STARTS) >= 8:
            _STARTS.clear()
        # int32 where it fits: its passes move half the bytes (add.at itself is as fast)
        _STARTS[key] = starts.astype(xp.int32 if N * Hp * Wp * C < 2**31 else xp.intp)
    return _STARTS[key]


def _winner(beats, out):
    """The winning tap of one stage into ``out``: the last tap that beat every earlier one, 0
    where none did, i.e. the max over t of ``t * beats[t - 1]``. The masks are read as uint8:
    a bool operand would make NumPy cast it through a buffer (about twice as slow)."""
    k, tap = len(beats) + 1, out.dtype.type
    if k == 1:
        out.fill(0)
        return out
    xp.multiply(beats[k - 2].view(xp.uint8), tap(k - 1), out=out)
    for t in range(k - 2, 0, -1):
        b = beats[t - 1].view(xp.uint8)
        if t > 1:
            b = xp.multiply(b, tap(t))  # windows of 4 taps or more only
        xp.maximum(out, b, out=out)
    return out


def _separable_max_backward(dy, c):
    """Scatter-add each output's gradient onto the input pixel that won its window.

    The winner is rebuilt from the forward's masks: its row ``i`` from the H stage's, its
    column ``j`` from the W stage's on that row, as the offset ``(i * Wp + j) * C`` from the
    window's top-left pixel; then one ``add.at`` over the outputs. The passes before it are
    uint8/uint16 arithmetic with the masks viewed as uint8: with bool operands NumPy cast
    them through buffers, and the whole backward took 1.3 ms over 128x28x28x12 on one thread
    (now 1.15; seed001's step -1.6% and -2.4% in two same-process A/Bs). Routing the gradient
    back through both stages with masks took 2.6 ms (strided passes whose inner loops ran
    only C floats long).
    """
    (ph, pw), (sh, sw) = c.pool, c.strides
    N, Hp, Wp, C = c.padded_shape
    out_h, out_w = c.out
    starts = _window_starts(c.padded_shape, c.out, c.strides)
    tap_t = xp.min_scalar_type(max(ph, pw) - 1)                           # uint8 below 256 taps
    off_t = xp.uint16 if ((ph - 1) * Wp + pw - 1) * C < 1 << 16 else xp.int64
    dxp = empty(c.padded_shape, dy.dtype)                                 # (N, Hp, Wp, C)
    idx = empty(dy.shape, starts.dtype)                                   # (N, out_h, out_w, C)

    def backward_slice(sl):
        n = sl.stop - sl.start
        small = (n, out_h, out_w, C)
        ah = _winner(c.beats_h[:, sl], xp.empty(small, tap_t))                 # winning row
        aw = _winner(c.beats_w[:, sl], xp.empty((n, Hp, out_w, C), tap_t))     # winning column, per row
        # the column that won on the winning row: exactly one row tap i has ah == i
        jw, hit, tmp = xp.empty(small, tap_t), xp.empty(small, bool), xp.empty(small, tap_t)
        for i, taps in enumerate(_taps(aw, 1, ph, sh, out_h)):
            xp.equal(ah, tap_t.type(i), out=hit)
            xp.multiply(taps, hit.view(xp.uint8), out=jw if i == 0 else tmp)
            if i:
                jw += tmp
        off = xp.multiply(ah, off_t(Wp * C), dtype=off_t)                  # (n, out_h, out_w, C): i * Wp * C
        off += xp.multiply(jw, off_t(C), dtype=off_t)                     # + j * C
        ids = idx[sl]
        xp.add(starts[:n], off, out=ids, casting="unsafe")
        dxs = dxp[sl]
        dxs.fill(0)
        xp.add.at(dxs.reshape(-1), ids.reshape(-1), dy[sl].reshape(-1))

    # add.at holds the GIL and the passes before it are short, so threads gain nothing (one
    # thread vs two, every call split: 0.30 vs 0.49 ms over 128x13x13x16, 1.06 vs 1.05 ms over
    # 128x28x28x12; the second is split from MIN_WORK, the first not); see ``scatters``
    parallel_samples(backward_slice, N, dy.size * 2)
    return dxp


# Max pooling over 2x2 windows at stride 2 on the phase layout X (N, 2, 2, H2, W2, C),
# X[n, a, b, r, c] = x[n, 2r + a, 2c + b]: the four taps are the four planes, whole and contiguous,
# where on the NHWC array each is a view whose inner loop runs only C values (one thread,
# 128x28x28x32: forward 2.37 vs 3.86 ms).


def _phase_max_forward(X):
    N, _, _, H2, W2, C = X.shape
    c = Pool2DCache(mode="phase", x_shape=X.shape, pool=(2, 2), strides=(2, 2), out=(H2, W2))
    y = empty((N, H2, W2, C), X.dtype)

    def planes(sl):  # the taps in row-major order, each (n, H2, W2, C)
        return (X[sl, a, b] for a in range(2) for b in range(2))

    c.arg = _max_with_arg(planes, y, X.dtype, 4, copy_taps=False)
    return y, c


def _max_with_arg(taps, y, dtype, k, copy_taps):
    """The max over the ``k`` tap views ``taps(sl)`` into ``y``, threaded over samples; returns
    the winning tap of each output (uint8 unless k > 256), the first of equals."""
    idx = xp.min_scalar_type(k - 1)
    arg = empty(y.shape, idx)                                             # (N, out_h, out_w, C)
    better = empty(y.shape, bool)
    kb = empty(y.shape, idx)
    tap = empty(y.shape, dtype) if copy_taps else None

    def max_slice(sl):
        ys, args, bs, kbs = y[sl], arg[sl], better[sl], kb[sl]
        vs = taps(sl)
        ys[...] = next(vs)
        args.fill(0)
        for t, v in enumerate(vs, start=1):
            if copy_taps:
                # one strided pass per tap: NumPy's inner loops over a window view run only C long,
                # so two ufuncs on a contiguous copy beat two on the view (measured 130 vs 196 us)
                xp.copyto(tap[sl], v)
                v = tap[sl]
            xp.greater(v, ys, out=bs)                                     # strict: ties keep the first tap
            xp.maximum(ys, v, out=ys)
            # t exceeds every earlier index, so max(arg, better * t) is "t where better" without a
            # masked copy (copyto(where=) is several times slower)
            xp.multiply(bs.view(xp.uint8), idx.type(t), out=kbs)  # uint8 view: no buffered bool cast
            xp.maximum(args, kbs, out=args)

    parallel_samples(max_slice, y.shape[0], y.size * k)
    return arg


def _phase_max_backward(dy, c):
    """Each pixel is in exactly one window: every plane is assigned, none accumulated."""
    N = dy.shape[0]
    dX = empty(c.x_shape, dy.dtype)                                       # (N, 2, 2, H2, W2, C)
    hit = empty(dy.shape, bool)

    def backward_slice(sl):
        for t in range(4):
            xp.equal(c.arg[sl], t, out=hit[sl])
            xp.multiply(dy[sl], hit[sl], out=dX[sl, t // 2, t % 2])

    parallel_samples(backward_slice, N, dy.size * 12)
    return dX


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
