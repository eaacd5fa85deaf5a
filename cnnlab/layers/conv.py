"""Conv2D and ZeroPadding2D."""
import numpy as np

from ..ops import activations as act_ops
from ..ops import conv2d as conv_ops
from ..ops import threads
from ..ops.shape import normalize_tuple, window_output_shape
from .base import Layer
from .core import ActivationMixin, KernelBiasMixin


def _normalize_padding(padding, name):
    if isinstance(padding, str):
        if padding.lower() not in ("valid", "same"):
            raise ValueError(f"{name}: `padding` must be 'valid', 'same' or ints. Received: padding={padding!r}")
        return padding.lower()
    if isinstance(padding, int):
        return padding
    return tuple(tuple(p) if isinstance(p, (list, tuple)) else int(p) for p in padding)


class Conv2D(KernelBiasMixin, ActivationMixin, Layer):
    def __init__(self, filters, kernel_size, strides=1, padding="valid", dilation_rate=1, activation=None,
                 use_bias=True, kernel_initializer="glorot_uniform", bias_initializer="zeros",
                 kernel_regularizer=None, bias_regularizer=None, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(filters, (int, np.integer)) or filters < 1:
            raise ValueError(f"Conv2D {self.name!r}: `filters` must be a positive int. Received: filters={filters!r}")
        self.filters = int(filters)
        self.kernel_size = normalize_tuple(kernel_size, 2, "kernel_size")
        self.strides = normalize_tuple(strides, 2, "strides")
        self.dilation_rate = normalize_tuple(dilation_rate, 2, "dilation_rate")
        self.padding = _normalize_padding(padding, f"Conv2D {self.name!r}")
        self._init_activation(activation)
        self._init_kernel_bias(use_bias, kernel_initializer, bias_initializer, kernel_regularizer, bias_regularizer)
        self.input_spec = {"ndim": 4}

    def build(self, input_shape):
        c_in = input_shape[-1]
        if c_in is None:
            raise ValueError(f"Conv2D {self.name!r}: the channel axis of the input must be known. "
                             f"Received input shape {input_shape}")
        self.compute_output_shape(input_shape)  # fail early when the kernel does not fit
        self._build_kernel_bias(self.kernel_size + (c_in, self.filters))
        self.input_spec = {"ndim": 4, "axes": {-1: c_in}}

    def compute_output_shape(self, input_shape):
        n, h, w, _ = input_shape
        out_h, out_w, _ = window_output_shape(h, w, self.kernel_size, self.strides, self.dilation_rate,
                                              self.padding, where=f"Conv2D {self.name!r}")
        return (n, out_h, out_w, self.filters)

    @property
    def per_sample(self):
        return self.activation in act_ops.PER_SAMPLE

    # Set by a model for the length of one forward when the output feeds only a max pooling that
    # runs on the phase layout (see Model.phase_pooling): z then comes in that layout.
    _phase_out = False

    def forward(self, x, training=False):
        z, self._cache = conv_ops.forward(x, self.params["kernel"], self.params.get("bias"), strides=self.strides,
                                          padding=self.padding, dilation=self.dilation_rate, phase=self._phase_out)
        return self._activate(z)

    # A first layer's weight gradient of this many multiply-adds is computed on a pool thread in
    # the background (see threads.background), beside the optimizer's updates of the other
    # layers, which wait for it only if they need the pool thread: seed001's first convolution
    # (12M), step -1.9% and -2.1% in two same-process A/Bs; seed000's (29M), +1.1%, its dense
    # layer's update waiting for it.
    BACKGROUND_DW_MACS = (1 << 22, 1 << 24)

    # Set by a model for the length of one backward when the layer below is a pooling whose
    # backward runs on the caller alone (threads.beside): the weight gradient then goes to the
    # pool thread beside it.
    _dW_beside = False

    def backward_from_logits(self, dz):
        c = self._cache
        macs = dz.size * c.cols2d.shape[1]
        if (not self.need_dx and self.BACKGROUND_DW_MACS[0] <= macs < self.BACKGROUND_DW_MACS[1]
                and threads.can_background()):
            threads.background(self._weight_grad_task(dz), writes=[self.grads[k] for k in self.params])
            return None
        dx = conv_ops.input_grad(dz, c) if self.need_dx else None
        # the weight gradient sums over every sample: inside a pipeline it waits for them while
        # dx goes on to the layer below (threads.defer), or runs on the pool thread beside it
        (threads.beside if self._dW_beside else threads.defer)(self._weight_grad_task(dz))
        return dx

    def _weight_grad_task(self, dz):
        """A function that computes the weight gradients and writes or adds them to ``grads``.
        Which buffers it overwrites is settled here, on the caller's thread."""
        c, outs = self._cache, {k: self.grad_out(k) for k in self.params}

        def task():
            dW, db = conv_ops.weight_grads(dz, c)
            for k, v in (("kernel", dW), ("bias", db)):
                if v is not None:
                    self.write_grad(k, v, outs[k])
        return task

    def get_config(self):
        padding = self.padding if isinstance(self.padding, (str, int)) else [list(p) if isinstance(p, tuple) else p
                                                                             for p in self.padding]
        return {**super().get_config(), "filters": self.filters, "kernel_size": list(self.kernel_size),
                "strides": list(self.strides), "padding": padding, "dilation_rate": list(self.dilation_rate),
                **self._kernel_bias_config()}


class ZeroPadding2D(Layer):
    """Pads height and width with zeros: an int, ``(ph, pw)`` or ``((top, bottom), (left, right))``."""

    def __init__(self, padding=1, **kwargs):
        super().__init__(**kwargs)
        if isinstance(padding, int):
            padding = ((padding, padding), (padding, padding))
        elif all(isinstance(p, int) for p in padding):
            padding = ((padding[0], padding[0]), (padding[1], padding[1]))
        self.padding = tuple(tuple(int(v) for v in p) for p in padding)
        self.input_spec = {"ndim": 4}

    def compute_output_shape(self, input_shape):
        n, h, w, c = input_shape
        (t, b), (l, r) = self.padding
        return (n, None if h is None else h + t + b, None if w is None else w + l + r, c)

    def forward(self, x, training=False):
        (t, b), (l, r) = self.padding
        self._hw = x.shape[1:3]
        return np.pad(x, ((0, 0), (t, b), (l, r), (0, 0)))  # (N, H+t+b, W+l+r, C)

    def backward(self, dy):
        (t, _), (l, _) = self.padding
        h, w = self._hw
        return dy[:, t:t + h, l:l + w, :]  # (N, H, W, C)

    def get_config(self):
        return {**super().get_config(), "padding": [list(p) for p in self.padding]}
