"""Layers that join branches: Add (residual blocks) and Concatenate."""
import numpy as np

from .base import Layer, shape_str


class _Merge(Layer):
    multi_input = True

    def _check(self, shapes):
        if not isinstance(shapes, (list, tuple)) or len(shapes) < 2:
            raise ValueError(f"{type(self).__name__} {self.name!r} needs a list of at least 2 inputs. "
                             f"Received: {shapes!r}")


class Add(_Merge):
    def compute_output_shape(self, input_shapes):
        self._check(input_shapes)
        first = tuple(input_shapes[0])
        for i, s in enumerate(input_shapes[1:], 1):
            if tuple(s)[1:] != first[1:]:
                raise ValueError(f"Add {self.name!r}: all inputs must have the same shape; input 0 is "
                                 f"{shape_str(first)}, input {i} is {shape_str(tuple(s))}")
        return first

    def forward(self, xs, training=False):
        self.compute_output_shape([x.shape for x in xs])
        y = xs[0].copy()
        for x in xs[1:]:
            y += x
        self._n = len(xs)
        return y

    def backward(self, dy):
        return [dy] * self._n


class Concatenate(_Merge):
    def __init__(self, axis=-1, **kwargs):
        super().__init__(**kwargs)
        self.axis = axis

    def compute_output_shape(self, input_shapes):
        self._check(input_shapes)
        shapes = [list(s) for s in input_shapes]
        ax = self.axis % len(shapes[0])
        for i, s in enumerate(shapes[1:], 1):
            if len(s) != len(shapes[0]) or any(a != b for k, (a, b) in enumerate(zip(s, shapes[0]))
                                               if k not in (0, ax)):
                raise ValueError(f"Concatenate {self.name!r}: inputs must match except on axis {self.axis}; "
                                 f"input 0 is {shape_str(tuple(shapes[0]))}, input {i} is {shape_str(tuple(s))}")
        out = list(shapes[0])
        out[ax] = None if any(s[ax] is None for s in shapes) else sum(s[ax] for s in shapes)
        return tuple(out)

    def forward(self, xs, training=False):
        self.compute_output_shape([x.shape for x in xs])
        self._sizes = [x.shape[self.axis] for x in xs]
        return np.concatenate(xs, axis=self.axis)

    def backward(self, dy):
        return np.split(dy, np.cumsum(self._sizes)[:-1], axis=self.axis)

    def get_config(self):
        return {**super().get_config(), "axis": self.axis}
