"""Elementwise activations and softmax, with their backward passes.

Caches hold what the derivative needs and no more: a boolean mask for the
piecewise-linear ones, the output ``y`` where the derivative is a function of
``y`` (sigmoid, tanh, elu, selu, softmax).
"""
import numpy as np

from ..utils import unknown_name_error
from . import threads
from .im2col import empty
from .threads import parallel_slices

NAMES = ("relu", "leaky_relu", "elu", "selu", "sigmoid", "tanh", "softmax", "linear")
# those whose passes run per sample inside a pipeline (threads.pipeline); None: no activation
PER_SAMPLE = (None, "linear", "relu", "leaky_relu")

# Defaults of the Keras activation functions.
DEFAULT_ALPHA = {"leaky_relu": 0.2, "elu": 1.0}
SELU_ALPHA = 1.6732632423543772848170429916717
SELU_SCALE = 1.0507009873554804934193349852946


def _check(name, alpha):
    if name not in NAMES:
        raise unknown_name_error("activation", name, NAMES)
    return DEFAULT_ALPHA.get(name) if alpha is None else float(alpha)


def sigmoid(x):
    """1 / (1 + exp(-x)) without overflow: exp only of -|x|."""
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1 / (1 + e), e / (1 + e))


def softmax(x):
    """Softmax over the last axis, shifted by the max for stability."""
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def forward(x, name, alpha=None):
    """Apply activation ``name``; ``alpha`` is the negative slope (leaky_relu) or the ELU alpha."""
    alpha = _check(name, alpha)
    if name in ("relu", "leaky_relu"):
        return _piecewise_forward(x, name, alpha)
    if name == "elu":
        y = np.where(x > 0, x, alpha * np.expm1(np.minimum(x, 0)))
        return y, (name, alpha, (x > 0, y))
    if name == "selu":
        y = SELU_SCALE * np.where(x > 0, x, SELU_ALPHA * np.expm1(np.minimum(x, 0)))
        return y, (name, alpha, (x > 0, y))
    if name == "sigmoid":
        y = sigmoid(x)
    elif name == "tanh":
        y = np.tanh(x)
    elif name == "softmax":
        y = softmax(x)
    else:  # linear
        return x, (name, alpha, None)
    return y, (name, alpha, y)


def backward(dy, cache):
    name, alpha, c = cache
    if name in ("relu", "leaky_relu"):
        return _piecewise_backward(dy, name, alpha, c)
    if name == "elu":  # d/dx alpha*(e^x - 1) = y + alpha
        pos, y = c
        return dy * np.where(pos, 1, y + alpha)
    if name == "selu":  # d/dx scale*alpha*(e^x - 1) = y + scale*alpha
        pos, y = c
        return dy * np.where(pos, SELU_SCALE, y + SELU_SCALE * SELU_ALPHA)
    if name == "sigmoid":
        return dy * c * (1 - c)
    if name == "tanh":
        return dy * (1 - c * c)
    if name == "softmax":  # J^T dy = y * (dy - <dy, y>), per row
        return c * (dy - np.sum(dy * c, axis=-1, keepdims=True))
    return dy  # linear


def _split(fn, a):
    """Run ``fn(flat_slice)`` over ``a``'s elements: in whole samples where a pipeline takes them
    (see ``threads.pipeline``), else in flat chunks over threads."""
    if a.ndim > 1 and threads.pipelined(a.shape[0]):
        per = a.size // a.shape[0]
        threads.parallel_samples(lambda sl: fn(slice(sl.start * per, sl.stop * per)), a.shape[0], a.size)
    else:
        parallel_slices(fn, a.size)


def _chunked(a):
    """Whether an elementwise pass over ``a`` goes through ``_split``; else it runs inline, once a
    pipeline's queued chunks (which may be writing ``a``) are done."""
    if a.dtype.kind == "f" and a.flags.c_contiguous and a.size >= threads.MIN_WORK:
        return True
    threads.settle()
    return False


def _piecewise_forward(x, name, alpha):
    """relu: ``x * (x > 0)``; leaky_relu: ``where(x > 0, x, alpha * x)``; big arrays in chunks over threads."""
    if not _chunked(x):
        mask = x > 0
        y = x * mask if name == "relu" else np.where(mask, x, alpha * x)
        return y, (name, alpha, mask)
    # workspace buffers: fresh pages for each step's outputs cost as much as the pass itself
    y = empty(x.shape, x.dtype)
    mask = empty(x.shape, bool)
    xf, yf, mf = x.reshape(-1), y.reshape(-1), mask.reshape(-1)

    def chunk(sl):
        np.greater(xf[sl], 0, out=mf[sl])
        if name == "relu":
            np.multiply(xf[sl], mf[sl], out=yf[sl])
        else:
            yf[sl] = np.where(mf[sl], xf[sl], alpha * xf[sl])

    _split(chunk, x)
    return y, (name, alpha, mask)


def _piecewise_backward(dy, name, alpha, mask):
    """relu: ``dy * mask``; leaky_relu: ``where(mask, dy, alpha * dy)``; big arrays in chunks over threads."""
    if not _chunked(dy) or dy.shape != mask.shape:
        return dy * mask if name == "relu" else np.where(mask, dy, alpha * dy)
    dx = empty(dy.shape, dy.dtype)
    df, xf, mf = dy.reshape(-1), dx.reshape(-1), mask.reshape(-1)

    def chunk(sl):
        if name == "relu":
            np.multiply(df[sl], mf[sl], out=xf[sl])
        else:
            xf[sl] = np.where(mf[sl], df[sl], alpha * df[sl])

    _split(chunk, dy)
    return dx


def derivative(x, name, alpha=None):
    """Elementwise dy/dx at ``x`` (for plots); softmax has no elementwise derivative."""
    _check(name, alpha)
    if name == "softmax":
        raise ValueError("softmax has no elementwise derivative: each output depends on the whole row. "
                         "Use activations.backward(dy, cache) for its Jacobian-vector product.")
    _, cache = forward(x, name, alpha)
    return backward(np.ones_like(x), cache)
