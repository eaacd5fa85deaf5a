"""Sliding-window plumbing shared by conv2d and pool2d (NHWC).

Windows are visited one kernel offset ``(i, j)`` at a time: the offset's view of
the padded input is a strided slice covering every output pixel at once, so the
only Python loop is over ``kh * kw`` offsets.
"""
import os
import sys
import threading

from numpy.lib.stride_tricks import as_strided

from ..backend import xp
from .threads import parallel_samples

# Workspace pool. Large fresh arrays cost as much as the work done in them
# (the kernel maps and zeroes new pages on every call), so big temporaries are
# recycled: a pooled buffer is handed out again only when nothing but the pool
# refers to it (a live cache, output or view keeps it busy).
_POOL = []                  # flat arrays, least recently used first
POOL_MIN_BYTES = 1 << 20    # smaller arrays come cheaply from malloc's own free lists
POOL_MAX_IDLE_BYTES = 1 << 30
_LOCK = threading.Lock()     # a buffer must not be found idle by two threads at once


def _new_lock():
    global _LOCK
    _LOCK = threading.Lock()


# a forked child (cnnlab.training.processes) has none of the parent's other threads: a lock one
# of them held at the fork would stay taken there
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_new_lock)


def _idle(k):
    return sys.getrefcount(_POOL[k]) == 2  # the pool's list and getrefcount's argument: nobody else


def empty(shape, dtype):
    """``xp.empty(shape, dtype)`` that reuses an idle pooled buffer of the same size."""
    dtype = xp.dtype(dtype)
    size = 1
    for n in shape:
        size *= n
    if size * dtype.itemsize < POOL_MIN_BYTES:
        return xp.empty(shape, dtype)
    with _LOCK:
        for k in range(len(_POOL)):
            if _POOL[k].size == size and _POOL[k].dtype == dtype and _idle(k):
                _POOL.append(_POOL.pop(k))
                return _POOL[-1].reshape(shape)
        idle = [k for k in range(len(_POOL)) if _idle(k)]
        spare = sum(_POOL[k].nbytes for k in idle)
        drop = set()
        for k in idle:  # oldest first, down to the cap
            if spare <= POOL_MAX_IDLE_BYTES:
                break
            spare -= _POOL[k].nbytes
            drop.add(k)
        if drop:
            _POOL[:] = [b for k, b in enumerate(_POOL) if k not in drop]
        buf = xp.empty(size, dtype)
        _POOL.append(buf)
        return buf.reshape(shape)


def clear_workspace():
    """Forget every pooled buffer (those still in use live on with their owners)."""
    with _LOCK:
        _POOL.clear()
        _PADDED.clear()


def zeros(shape, dtype):
    out = empty(shape, dtype)
    out.fill(0)
    return out


_PADDED = {}                 # (shape, dtype, pads, value) -> padded buffers whose border is set
_PADDED_MAX_KEYS = 16
_PADDED_PER_KEY = 4


def _padded_buffer(shape, dtype, pads, value):
    """``(buffer, border_set)``: an idle padded buffer kept for this key (its border still holds
    ``value``: nothing but pad2d writes these), or a fresh one."""
    key = (shape, xp.dtype(dtype).str, pads, float(value))
    with _LOCK:
        bufs = _PADDED.get(key)
        if bufs is None:
            if len(_PADDED) >= _PADDED_MAX_KEYS:
                _PADDED.clear()
            bufs = _PADDED[key] = []
        for buf in bufs:
            if sys.getrefcount(buf) == 3:  # the list, the loop variable and getrefcount's argument
                return buf, True
        buf = xp.empty(shape, dtype)
        if len(bufs) < _PADDED_PER_KEY:  # beyond that, callers holding on get buffers of their own
            bufs.append(buf)
        return buf, False


def pad2d(x, pads, value=0.0):
    """Pad the spatial axes of ``x`` (N, H, W, C) by ``(top, bottom, left, right)``; no copy when all zero.

    The padded buffers are kept per shape and reused with their border already set, so that a
    call copies only the interior.
    """
    pt, pb, pl, pr = pads
    if not (pt or pb or pl or pr):
        return x
    N, H, W, C = x.shape
    xp_, border_set = _padded_buffer((N, H + pt + pb, W + pl + pr, C), x.dtype, tuple(pads), value)  # (N, Hp, Wp, C)

    def pad_slice(sl):
        xs = xp_[sl]
        if not border_set:  # the border only: the interior is overwritten right after
            xs[:, :pt] = value
            xs[:, pt + H:] = value
            xs[:, pt:pt + H, :pl] = value
            xs[:, pt:pt + H, pl + W:] = value
        xs[:, pt:pt + H, pl:pl + W] = x[sl]

    parallel_samples(pad_slice, N, xp_.size)
    return xp_


def crop2d(xp_, pads, h, w):
    """Inverse of ``pad2d`` (a view; contiguous copy only if something was cropped)."""
    pt, pb, pl, pr = pads
    if not (pt or pb or pl or pr) and xp_.shape[1] == h and xp_.shape[2] == w:
        return xp_
    out = empty((xp_.shape[0], h, w, xp_.shape[3]), xp_.dtype)  # (N, h, w, C)

    def crop_slice(sl):
        out[sl] = xp_[sl, pt:pt + h, pl:pl + w]

    parallel_samples(crop_slice, out.shape[0], out.size)
    return out


def offset_view(xp_, i, j, out_h, out_w, strides, dilation=(1, 1)):
    """The input pixels under kernel tap ``(i, j)`` for every output pixel: (N, out_h, out_w, C)."""
    sh, sw = strides
    dh, dw = dilation
    r0, c0 = i * dh, j * dw
    return xp_[:, r0:r0 + (out_h - 1) * sh + 1:sh, c0:c0 + (out_w - 1) * sw + 1:sw]


def _into(out, shape, dtype):
    """A fresh pooled array, or ``out`` checked to be a writable view of that shape."""
    if out is None:
        return empty(shape, dtype)
    if out.shape != shape:
        raise ValueError(f"im2col: out has shape {out.shape}, expected {shape}")
    return out


def to_phase(x):
    """(N, H, W, C) with even H and W -> its phase layout (N, 2, 2, H/2, W/2, C), a copy:
    ``x6[n, a, b, r, c] = x[n, 2r + a, 2c + b]``. Every tap of a stride-2 window is then a
    contiguous slice of one of the four planes (see pool2d)."""
    N, H, W, C = x.shape
    out = empty((N, 2, 2, H // 2, W // 2, C), x.dtype)
    src = x.reshape(N, H // 2, 2, W // 2, 2, C).transpose(0, 2, 4, 1, 3, 5)  # (N, 2, 2, H/2, W/2, C), a view

    def copy_slice(sl):
        out[sl] = src[sl]

    parallel_samples(copy_slice, N, out.size)
    return out


def from_phase(x6):
    """The inverse of ``to_phase``: (N, 2, 2, H2, W2, C) -> (N, 2 * H2, 2 * W2, C), a copy."""
    N, _, _, H2, W2, C = x6.shape
    out = empty((N, 2 * H2, 2 * W2, C), x6.dtype)
    dst = out.reshape(N, H2, 2, W2, 2, C)                                  # (N, H2, 2, W2, 2, C), a view
    src = x6.transpose(0, 3, 1, 4, 2, 5)                                   # the same axes order, a view

    def copy_slice(sl):
        dst[sl] = src[sl]

    parallel_samples(copy_slice, N, out.size)
    return out


def _windows(xp_, kh, kw, out_h, out_w, strides, dilation, k_major, phase):
    """The strided view of every patch: (N, out_h, out_w, kh, kw, C), or (kh, kw, C, N, out_h, out_w)
    with ``k_major``; with ``phase`` the output pixels (out_h, out_w) are in phase order, as
    (2, 2, out_h / 2, out_w / 2)."""
    N, C = xp_.shape[0], xp_.shape[3]
    sh, sw = strides
    dh, dw = dilation
    s0, s1, s2, s3 = xp_.strides
    if phase:
        pix, pix_st = (2, 2, out_h // 2, out_w // 2), (s1 * sh, s2 * sw, 2 * s1 * sh, 2 * s2 * sw)
    else:
        pix, pix_st = (out_h, out_w), (s1 * sh, s2 * sw)
    tap, tap_st = (kh, kw, C), (s1 * dh, s2 * dw, s3)
    if k_major:
        return as_strided(xp_, tap + (N,) + pix, tap_st + (s0,) + pix_st)
    return as_strided(xp_, (N,) + pix + tap, (s0,) + pix_st + tap_st)


def im2col(xp_, kh, kw, out_h, out_w, strides, dilation=(1, 1), out=None, phase=False):
    """Patches of the padded input: (N, out_h, out_w, kh, kw, C), rows ready for one GEMM
    (with ``phase``, (N, 2, 2, out_h / 2, out_w / 2, kh, kw, C): the rows in phase order)."""
    N = xp_.shape[0]
    # one copy of a 6-D strided view: with unit width stride/dilation the (kw, C)
    # run is contiguous in both arrays, so the copy moves kw*C floats per step
    windows = _windows(xp_, kh, kw, out_h, out_w, strides, dilation, False, phase)
    cols = _into(out, windows.shape, xp_.dtype)  # (N, out_h, out_w, kh, kw, C)

    def copy_slice(sl):
        xp.copyto(cols[sl], windows[sl])

    parallel_samples(copy_slice, N, cols.size)
    return cols


def im2col_kmajor(xp_, kh, kw, out_h, out_w, strides, dilation=(1, 1), out=None, phase=False):
    """Patches as (kh, kw, C, N, out_h, out_w): the transposed layout, for few channels.

    With C == 1 the row-major layout copies kw floats per step; here each tap
    copies whole output rows, and ``.reshape(K, M).T`` is still a GEMM operand.
    """
    N = xp_.shape[0]
    windows = _windows(xp_, kh, kw, out_h, out_w, strides, dilation, True, phase)
    colsT = _into(out, windows.shape, xp_.dtype)  # (kh, kw, C, N, out_h, out_w)

    def copy_slice(sl):
        xp.copyto(colsT[:, :, :, sl], windows[:, :, :, sl])

    parallel_samples(copy_slice, N, colsT.size)
    return colsT
