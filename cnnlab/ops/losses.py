"""Losses: each ``*_forward -> (loss, cache)`` with ``loss`` a scalar of the input's
dtype, and ``*_backward(dloss, cache)`` giving the gradient wrt the first input.

Classification labels are either integers ``(N,)`` (sparse) or one-hot /
probabilities ``(N, K)``; every loss is a mean over the batch.
"""
import numpy as np

from .activations import softmax  # noqa: F401  (re-exported helper)


def log_softmax(logits):
    """log softmax over the last axis via log-sum-exp (no overflow, no log(0))."""
    z = logits - logits.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


def _targets(labels, scores, where):
    """-> (sparse int labels or None, dense (N, K) targets or None), validated against scores (N, K)."""
    labels = np.asarray(labels)
    if scores.ndim != 2:
        raise ValueError(f"{where}: expected scores of shape (N, K), got {scores.shape}")
    N, K = scores.shape
    if labels.shape == (N,):
        if not np.issubdtype(labels.dtype, np.integer):
            if np.any(labels != np.round(labels)):
                raise ValueError(f"{where}: sparse labels must be integers, got dtype {labels.dtype}")
        y = labels.astype(np.int64)
        bad = (y < 0) | (y >= K)
        if bad.any():
            i = int(np.argmax(bad))
            raise ValueError(f"{where}: label {y[i]} (sample {i}) is out of range [0, {K}) for K={K} classes")
        return y, None
    if labels.shape == (N, K):
        return None, labels.astype(scores.dtype, copy=False)
    raise ValueError(f"{where}: labels of shape {labels.shape} do not match scores of shape {scores.shape}: "
                     f"expected integer labels ({N},) or one-hot ({N}, {K})")


def _onehot(y, K, dtype):
    t = np.zeros((y.shape[0], K), dtype=dtype)  # (N, K)
    t[np.arange(y.shape[0]), y] = 1
    return t


# --- softmax cross-entropy on logits (fused) ---------------------------------------------

def softmax_cross_entropy_forward(logits, labels):
    """mean_n -sum_k t_nk log softmax(z_n)_k."""
    y, t = _targets(labels, logits, "softmax_cross_entropy")
    N = logits.shape[0]
    logp = log_softmax(logits)
    if y is not None:
        loss = -logp[np.arange(N), y].sum() / N
    else:
        loss = -np.sum(t * logp) / N
    return logits.dtype.type(loss), (np.exp(logp), y, t)


def softmax_cross_entropy_backward(dloss, cache):
    """dlogits = (softmax * sum_k t_k - t) / N * dloss; with one-hot targets, (p - t) / N."""
    p, y, t = cache
    N = p.shape[0]
    if y is not None:
        dz = p.copy()
        dz[np.arange(N), y] -= 1
    else:
        dz = p * t.sum(axis=1, keepdims=True) - t
    return dz * dz.dtype.type(dloss / N)


# --- categorical cross-entropy on probabilities (non-fused) ------------------------------

def categorical_crossentropy_forward(probs, labels, epsilon=1e-7):
    """Keras's ``categorical_crossentropy(from_logits=False)``: renormalise rows, clip to
    [eps, 1 - eps], then mean_n -sum_k t_nk log p_nk."""
    y, t = _targets(labels, probs, "categorical_crossentropy")
    if t is None:
        t = _onehot(y, probs.shape[1], probs.dtype)
    s = probs.sum(axis=1, keepdims=True)  # (N, 1)
    q = probs / s
    qc = np.clip(q, epsilon, 1 - epsilon)
    loss = -np.sum(t * np.log(qc)) / probs.shape[0]
    return probs.dtype.type(loss), (t, q, s, epsilon)


def categorical_crossentropy_backward(dloss, cache):
    """dprobs through the log, the clip (no gradient where it clips) and q = p / sum(p)."""
    t, q, s, epsilon = cache
    N = t.shape[0]
    inside = (q > epsilon) & (q < 1 - epsilon)
    dq = np.where(inside, -t / np.clip(q, epsilon, 1 - epsilon), 0) * q.dtype.type(dloss / N)  # (N, K)
    return (dq - np.sum(dq * q, axis=1, keepdims=True)) / s  # (N, K)


# --- multiclass hinge (Weston-Watkins, cs231n) -------------------------------------------

def hinge_forward(scores, labels, margin=1.0):
    """mean_n sum_{j != y_n} max(0, s_nj - s_ny + margin); one-hot labels are argmax-ed."""
    y, t = _targets(labels, scores, "hinge")
    if y is None:
        y = t.argmax(axis=1)
    N = scores.shape[0]
    rows = np.arange(N)
    margins = np.maximum(0, scores - scores[rows, y][:, None] + margin)  # (N, K)
    margins[rows, y] = 0
    return scores.dtype.type(margins.sum() / N), (margins > 0, y, scores.dtype)


def hinge_backward(dloss, cache):
    active, y, dtype = cache
    N = active.shape[0]
    ds = active.astype(dtype)  # (N, K)
    ds[np.arange(N), y] = -active.sum(axis=1)  # s_y appears in every active margin
    return ds * dtype.type(dloss / N)


# --- mean squared error --------------------------------------------------------------------

def mse_forward(y_pred, y_true):
    """mean over every element of (y_pred - y_true)^2."""
    y_true = np.asarray(y_true)
    if y_pred.shape != y_true.shape:
        raise ValueError(f"mse: y_pred of shape {y_pred.shape} does not match y_true of shape {y_true.shape}")
    diff = y_pred - y_true.astype(y_pred.dtype, copy=False)
    return y_pred.dtype.type(np.mean(diff * diff)), diff


def mse_backward(dloss, cache):
    diff = cache
    return diff * diff.dtype.type(2 * dloss / diff.size)
