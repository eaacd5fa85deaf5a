"""Weight penalties added to the loss, as in Keras: ``L2(l2)(W) = l2 * sum(W**2)``.

Each regularizer returns its penalty (a float) and its gradient wrt ``W``;
``get``/``serialize`` speak Keras's ``{"class_name", "config"}`` format.
"""
import math

import numpy as np

from .utils import Serializable, unknown_name_error
from .utils import deserialize as _deserialize
from .utils import serialize as _serialize


def _factor(value, name):
    value = float(value)
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"`{name}` must be a finite non-negative float. Received: {name}={value!r}")
    return value


class Regularizer(Serializable):
    def __call__(self, W):
        raise NotImplementedError

    def gradient(self, W):
        raise NotImplementedError


class L1(Regularizer):
    """l1 * sum(|W|); gradient l1 * sign(W) (0 at 0, the subgradient TensorFlow uses)."""

    def __init__(self, l1=0.01):
        self.l1 = _factor(l1, "l1")

    def __call__(self, W):
        return self.l1 * float(np.sum(np.abs(W)))

    def gradient(self, W):
        return self.l1 * np.sign(W)

    def get_config(self):
        return {"l1": self.l1}


class L2(Regularizer):
    """l2 * sum(W**2) (no 1/2, as Keras); gradient 2 * l2 * W."""

    def __init__(self, l2=0.01):
        self.l2 = _factor(l2, "l2")

    def __call__(self, W):
        return self.l2 * float(np.sum(np.square(W)))

    def gradient(self, W):
        return (2 * self.l2) * W

    def get_config(self):
        return {"l2": self.l2}


class L1L2(Regularizer):
    """l1 * sum(|W|) + l2 * sum(W**2); class defaults 0, the string 'l1_l2' gives 0.01 each (Keras)."""

    def __init__(self, l1=0.0, l2=0.0):
        self.l1 = _factor(l1, "l1")
        self.l2 = _factor(l2, "l2")

    def __call__(self, W):
        return self.l1 * float(np.sum(np.abs(W))) + self.l2 * float(np.sum(np.square(W)))

    def gradient(self, W):
        return self.l1 * np.sign(W) + (2 * self.l2) * W

    def get_config(self):
        return {"l1": self.l1, "l2": self.l2}


CLASSES = {"L1": L1, "L2": L2, "L1L2": L1L2}
_STRINGS = {"l1": lambda: L1(), "l2": lambda: L2(), "l1_l2": lambda: L1L2(l1=0.01, l2=0.01),
            "l1l2": lambda: L1L2(l1=0.01, l2=0.01)}


def get(identifier):
    """None, a Regularizer, 'l1' / 'l2' / 'l1_l2', or ``{"class_name": "L2", "config": {...}}``."""
    if identifier is None or isinstance(identifier, Regularizer):
        return identifier
    if isinstance(identifier, str):
        key = identifier.lower()
        if key in _STRINGS:
            return _STRINGS[key]()
        raise unknown_name_error("regularizer", identifier, ["l1", "l2", "l1_l2"])
    if isinstance(identifier, dict):
        if "class_name" not in identifier:
            raise ValueError(f"A regularizer dict needs a 'class_name' key. Received: {identifier!r}")
        return _deserialize(identifier, CLASSES, "regularizer class")
    raise ValueError(f"Could not interpret regularizer identifier: {identifier!r} "
                     f"(expected None, a string, a dict or a Regularizer)")


def serialize(reg):
    """``{"class_name": "L2", "config": {"l2": 0.01}}``; None for None."""
    return None if reg is None else _serialize(reg)
