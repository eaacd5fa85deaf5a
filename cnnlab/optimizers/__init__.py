"""Optimizers with Keras 3's names, defaults and update formulas, on dicts of NumPy arrays.

``opt.apply(params, grads)`` updates every array of ``params`` in place; see ``base.Optimizer``.
"""
from ..utils import unknown_name_error
from . import schedules
from .adadelta import Adadelta
from .adagrad import Adagrad
from .adam import Adam, AdamW
from .base import Optimizer, clip_by_global_norm, clip_by_norm
from .rmsprop import RMSprop
from .sgd import SGD

ALL = {cls.__name__: cls for cls in (SGD, RMSprop, Adam, AdamW, Adagrad, Adadelta)}
_LOOKUP = {**ALL, **{name.lower(): cls for name, cls in ALL.items()}}

__all__ = ["Optimizer", "SGD", "RMSprop", "Adam", "AdamW", "Adagrad", "Adadelta", "schedules", "get",
           "serialize", "deserialize", "clip_by_global_norm", "clip_by_norm"]


def serialize(optimizer):
    return {"class_name": type(optimizer).__name__, "config": optimizer.get_config()}


def deserialize(config):
    name = config.get("class_name")
    cls = _LOOKUP.get(name) or _LOOKUP.get(str(name).lower())
    if cls is None:
        raise unknown_name_error("optimizer", name, ALL)
    return cls.from_config(dict(config.get("config") or {}))


def get(identifier):
    """An optimizer from a name ('adam', 'SGD', ...), a ``{"class_name", "config"}`` dict or an instance."""
    if isinstance(identifier, Optimizer):
        return identifier
    if isinstance(identifier, str):
        cls = _LOOKUP.get(identifier) or _LOOKUP.get(identifier.lower())
        if cls is None:
            raise unknown_name_error("optimizer", identifier, [n.lower() for n in ALL])
        return cls()
    if isinstance(identifier, dict):
        return deserialize(identifier)
    raise ValueError(f"Could not interpret optimizer identifier: {identifier!r}")
