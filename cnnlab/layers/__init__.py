"""Layers with Keras's names, arguments and defaults."""
from .base import Layer, SymbolicTensor, clear_session
from .conv import Conv2D, ZeroPadding2D
from .core import (ELU, Activation, Dense, Dropout, Flatten, Input, InputLayer, LeakyReLU, ReLU, Reshape,
                   Softmax)
from .merge import Add, Concatenate
from .normalization import BatchNormalization
from .pooling import (AveragePooling2D, AvgPool2D, GlobalAveragePooling2D, GlobalMaxPooling2D, L2Pooling2D,
                      MaxPool2D, MaxPooling2D)

LAYERS = {cls.__name__: cls for cls in (
    InputLayer, Conv2D, ZeroPadding2D, Dense, Flatten, Reshape, Activation, ReLU, LeakyReLU, ELU, Softmax,
    Dropout, BatchNormalization, MaxPooling2D, AveragePooling2D, L2Pooling2D, GlobalAveragePooling2D,
    GlobalMaxPooling2D, Add, Concatenate)}
LAYERS.update(MaxPool2D=MaxPooling2D, AvgPool2D=AveragePooling2D)


def serialize(layer):
    return {"class_name": type(layer).__name__, "config": layer.get_config()}


def deserialize(config):
    """A layer from ``{"class_name": ..., "config": {...}}``; unknown names get a suggestion."""
    from ..utils import unknown_name_error
    name = config.get("class_name")
    if name not in LAYERS:
        raise unknown_name_error("layer", name, LAYERS)
    return LAYERS[name].from_config(config.get("config", {}))


__all__ = ["Layer", "SymbolicTensor", "clear_session", "serialize", "deserialize", "LAYERS"] + list(LAYERS) + ["Input"]
