"""Layers with Keras's names, arguments and defaults."""
from ..utils import deserialize as _deserialize
from ..utils import serialize
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


def deserialize(config):
    """A layer from ``{"class_name": ..., "config": {...}}``; unknown names get a suggestion."""
    return _deserialize(config, LAYERS, "layer")


__all__ = ["Layer", "SymbolicTensor", "clear_session", "serialize", "deserialize", "LAYERS"] + list(LAYERS) + ["Input"]
