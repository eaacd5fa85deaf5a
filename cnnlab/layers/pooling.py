"""Max, average and L2 pooling; global average and max pooling."""
from ..ops import pool2d as pool_ops
from ..ops.shape import normalize_tuple, window_output_shape
from .base import Layer


class _Pooling2D(Layer):
    mode = None
    per_sample = True

    def __init__(self, pool_size=2, strides=None, padding="valid", **kwargs):
        super().__init__(**kwargs)
        self.pool_size = normalize_tuple(pool_size, 2, "pool_size")
        self.strides = self.pool_size if strides is None else normalize_tuple(strides, 2, "strides")
        if not isinstance(padding, str) or padding.lower() not in ("valid", "same"):
            raise ValueError(f"{type(self).__name__} {self.name!r}: `padding` must be 'valid' or 'same'. "
                             f"Received: padding={padding!r}")
        self.padding = padding.lower()
        self.input_spec = {"ndim": 4}

    def compute_output_shape(self, input_shape):
        n, h, w, c = input_shape
        out_h, out_w, _ = window_output_shape(h, w, self.pool_size, self.strides, (1, 1), self.padding,
                                              where=f"{type(self).__name__} {self.name!r}")
        return (n, out_h, out_w, c)

    def build(self, input_shape):
        self.compute_output_shape(input_shape)
        self.input_spec = {"ndim": 4, "axes": {-1: input_shape[-1]}}

    def forward(self, x, training=False):
        y, self._cache = pool_ops.forward(x, self.pool_size, self.strides, self.padding, mode=self.mode)
        return y

    def backward(self, dy):
        return pool_ops.backward(dy, self._cache)

    @property
    def scatters(self):
        """True when the next backward scatter-adds (``pool2d.scatters``)."""
        return getattr(self, "_cache", None) is not None and pool_ops.scatters(self._cache)

    def get_config(self):
        return {**super().get_config(), "pool_size": list(self.pool_size), "strides": list(self.strides),
                "padding": self.padding}


class MaxPooling2D(_Pooling2D):
    mode = "max"


class AveragePooling2D(_Pooling2D):
    mode = "avg"


class L2Pooling2D(_Pooling2D):
    """Square root of the sum of squares over each window."""
    mode = "l2"


class _GlobalPooling2D(Layer):
    mode = None

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.input_spec = {"ndim": 4}

    def build(self, input_shape):
        self.input_spec = {"ndim": 4, "axes": {-1: input_shape[-1]}}

    def compute_output_shape(self, input_shape):
        return (input_shape[0], input_shape[-1])

    def forward(self, x, training=False):
        y, self._cache = pool_ops.global_forward(x, mode=self.mode)
        return y

    def backward(self, dy):
        return pool_ops.global_backward(dy, self._cache)


class GlobalAveragePooling2D(_GlobalPooling2D):
    mode = "avg"


class GlobalMaxPooling2D(_GlobalPooling2D):
    mode = "max"


MaxPool2D = MaxPooling2D
AvgPool2D = AveragePooling2D
