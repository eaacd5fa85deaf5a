"""Fully connected layer, flatten and reshape: ``y = x @ W + b``.

Flatten keeps the row-major NHWC order (H, then W, then C), as Keras does,
so weights move between the two frameworks without permuting rows.
"""
import numpy as np

from . import threads
from .gemm import gemm
from .threads import matmul

# A weight gradient of this many multiply-adds goes to a pool thread in the background (within a
# training step, see threads.background), while the caller goes on down the backward pass: long
# enough to repay the handoff, short enough to be done before the next threaded op needs that
# thread. seed001's 576 x 256 dense layer (18.9M): step -0.9% to -1.8% in three same-process
# A/Bs (its dW beside the next pooling's backward, which runs on one thread).
BACKGROUND_DW_MACS = (1 << 22, 1 << 25)


def forward(x, W, b=None):
    """x (N, in), W (in, out), b (out,) or None -> y (N, out)."""
    if x.ndim != 2 or W.ndim != 2 or x.shape[1] != W.shape[0]:
        raise ValueError(f"dense: input of shape {x.shape} does not match kernel of shape {W.shape}: "
                         f"expected input (N, {W.shape[0] if W.ndim == 2 else '?'}) for W (in, out)")
    if b is not None and b.shape != (W.shape[1],):
        raise ValueError(f"dense: bias of shape {b.shape} does not match kernel of shape {W.shape}: "
                         f"expected ({W.shape[1]},)")
    y = matmul(x, W)  # (N, out)
    if b is not None:
        y += b
    return y, (x, W, b is not None)


def backward(dy, cache, need_dx=True, dW_out=None):
    """dy (N, out) -> (dx (N, in) or None, dW (in, out), db (out,) or None); ``dW_out``, when
    given, is where dW is written (and returned)."""
    x, W, has_bias = cache
    macs = x.shape[0] * x.shape[1] * dy.shape[1]
    db = dy.sum(axis=0) if has_bias else None  # (out,)
    if need_dx and dW_out is not None and BACKGROUND_DW_MACS[0] <= macs < BACKGROUND_DW_MACS[1] \
            and threads.can_background():
        dx = matmul(dy, W.T)  # (N, in)
        threads.background(lambda: gemm(x.T, dy, dW_out), writes=[dW_out])  # (in, out)
        return dx, dW_out, db
    dW = matmul(x.T, dy, out=dW_out)  # (in, out): threads split the rows, each sums over the whole batch
    dx = matmul(dy, W.T) if need_dx else None  # (N, in)
    return dx, dW, db


def flatten_forward(x):
    """(N, H, W, C) -> (N, H*W*C), row-major: C varies fastest."""
    return x.reshape(x.shape[0], -1), x.shape  # (N, H*W*C)


def flatten_backward(dy, cache):
    return dy.reshape(cache)  # (N, H, W, C)


def reshape_forward(x, target_shape):
    """(N, ...) -> (N, *target_shape); one entry of ``target_shape`` may be -1."""
    target_shape = tuple(int(d) for d in target_shape)
    try:
        y = x.reshape((x.shape[0],) + target_shape)  # (N, *target_shape)
    except ValueError:
        raise ValueError(f"reshape: cannot reshape input of shape {x.shape} (batch axis first) "
                         f"to target shape {target_shape}: {int(np.prod(x.shape[1:]))} values per sample") from None
    return y, x.shape


def reshape_backward(dy, cache):
    return dy.reshape(cache)  # (N, ...) as the input
