"""Batch normalisation over every axis but the last (channels-last).

Keras semantics: ``epsilon=1e-3``, ``momentum=0.99`` with
``moving = moving * momentum + batch * (1 - momentum)``, and the biased batch
variance used both to normalise and to update the moving variance.
"""
from dataclasses import dataclass

import numpy as np


@dataclass
class BatchNormCache:
    xhat: np.ndarray      # normalised input, x's shape
    gamma: np.ndarray     # (C,)
    inv_std: np.ndarray   # (C,) 1 / sqrt(var + eps)
    mean: np.ndarray      # (C,) batch mean (training) or moving mean (inference)
    var: np.ndarray       # (C,) biased batch variance (training) or moving variance
    training: bool


def _check(x, gamma, beta):
    C = x.shape[-1]
    if gamma.shape != (C,) or beta.shape != (C,):
        raise ValueError(f"batchnorm: gamma {gamma.shape} and beta {beta.shape} must have shape ({C},) "
                         f"for input of shape {x.shape} (normalised over all axes but the last)")
    return tuple(range(x.ndim - 1))


def forward_train(x, gamma, beta, epsilon=1e-3):
    """Normalise with the batch statistics -> (y, cache); ``cache.mean``/``cache.var`` feed update_moving."""
    axes = _check(x, gamma, beta)
    mean = x.mean(axis=axes)  # (C,)
    xc = x - mean
    var = np.mean(xc * xc, axis=axes)  # (C,) biased, as Keras
    inv_std = 1.0 / np.sqrt(var + epsilon)  # (C,)
    xhat = xc * inv_std
    y = gamma * xhat + beta
    return y, BatchNormCache(xhat, gamma, inv_std, mean, var, True)


def forward_inference(x, gamma, beta, moving_mean, moving_var, epsilon=1e-3):
    """Normalise with the moving statistics -> (y, cache)."""
    _check(x, gamma, beta)
    inv_std = 1.0 / np.sqrt(moving_var + epsilon)  # (C,)
    xhat = (x - moving_mean) * inv_std
    y = gamma * xhat + beta
    return y, BatchNormCache(xhat, gamma, inv_std, moving_mean, moving_var, False)


def backward(dy, cache):
    """-> (dx, dgamma, dbeta)."""
    c = cache
    axes = tuple(range(dy.ndim - 1))
    dbeta = dy.sum(axis=axes)  # (C,)
    dgamma = np.sum(dy * c.xhat, axis=axes)  # (C,)
    if not c.training:  # the statistics are constants
        return dy * (c.gamma * c.inv_std), dgamma, dbeta
    M = dy.size // dy.shape[-1]  # values per channel
    # Closed form of the chain through mean and var: dbeta = sum(dy), dgamma = sum(dy * xhat).
    dx = (c.gamma * c.inv_std / M) * (M * dy - dbeta - c.xhat * dgamma)
    return dx, dgamma, dbeta


def update_moving(moving, batch_value, momentum=0.99):
    """In place: ``moving = moving * momentum + batch * (1 - momentum)``; returns ``moving``."""
    moving *= momentum
    moving += (1.0 - momentum) * batch_value
    return moving
