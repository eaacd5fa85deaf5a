"""Input, Dense, Flatten, Reshape, activations and Dropout."""
import numpy as np

from .. import initializers, regularizers
from ..ops import activations as act_ops
from ..ops import dense as dense_ops
from ..ops import dropout as dropout_ops
from ..random import make_rng
from .base import Layer, SymbolicTensor


class InputLayer(Layer):
    def __init__(self, shape=None, batch_size=None, name=None, batch_input_shape=None, **kwargs):
        if batch_input_shape is None:
            if shape is None:
                raise ValueError("InputLayer needs `shape`, e.g. Input(shape=(28, 28, 1)).")
            batch_input_shape = (batch_size,) + tuple(shape)
        super().__init__(name=name, batch_input_shape=batch_input_shape, **kwargs)
        self.input_shape = self.output_shape = self.batch_input_shape
        self.built = True

    per_sample = True

    def forward(self, x, training=False):
        return x

    def backward(self, dy):
        return dy

    def get_config(self):
        return {"name": self.name, "batch_input_shape": list(self.batch_input_shape)}


def Input(shape, batch_size=None, name=None):
    """A symbolic input for the functional API: ``x = Input((28, 28, 1))``."""
    layer = InputLayer(shape=shape, batch_size=batch_size, name=name)
    return SymbolicTensor(layer.batch_input_shape, layer, ())


class ActivationMixin:
    """``y = act(z)`` after a layer's own linear part.

    The cross-entropy loss with a softmax output is computed from the logits
    ``z`` and backpropagated straight into ``backward_from_logits`` (fused),
    which is both stabler and cheaper than going through softmax's Jacobian.
    """

    def _init_activation(self, activation):
        if activation is not None and not isinstance(activation, str):
            raise ValueError(f"{type(self).__name__} {self.name!r}: `activation` must be a name such as 'relu'. "
                             f"Received: activation={activation!r}")
        if activation is not None and activation not in act_ops.NAMES:
            from ..utils import unknown_name_error
            raise unknown_name_error("activation", activation, act_ops.NAMES)
        self.activation = None if activation in (None, "linear") else activation
        self.logits = None

    # Set by a model for the length of one forward when it applies this layer's ReLU itself,
    # after the max pooling that the output feeds (see Model.reorder_relu_max_pool).
    _activation_deferred = False

    def _activate(self, z):
        if self.activation is None or self._activation_deferred:
            self._act_cache = None
            return z
        self.logits = z if self.activation == "softmax" else None
        y, self._act_cache = act_ops.forward(z, self.activation, alpha=getattr(self, "alpha", None))
        return y

    def _deactivate(self, dy):
        return dy if self._act_cache is None else act_ops.backward(dy, self._act_cache)

    def backward(self, dy):
        return self.backward_from_logits(self._deactivate(dy))


class KernelBiasMixin:
    """The kernel and optional bias that Conv2D and Dense share: weights, initializers, regularizers."""

    def _init_kernel_bias(self, use_bias, kernel_initializer, bias_initializer, kernel_regularizer,
                          bias_regularizer):
        self.use_bias = use_bias
        self.kernel_initializer = initializers.get(kernel_initializer)
        self.bias_initializer = initializers.get(bias_initializer)
        self.kernel_regularizer = regularizers.get(kernel_regularizer)
        self.bias_regularizer = regularizers.get(bias_regularizer)
        self.need_dx = True

    def _build_kernel_bias(self, kernel_shape):
        self.add_weight("kernel", kernel_shape, self.kernel_initializer, regularizer=self.kernel_regularizer)
        if self.use_bias:
            self.add_weight("bias", (kernel_shape[-1],), self.bias_initializer, regularizer=self.bias_regularizer)

    def _accumulate_grads(self, dW, db):
        if dW is not None:
            self.add_grad("kernel", dW)
        if db is not None:
            self.add_grad("bias", db)

    def _kernel_bias_config(self):
        return {"activation": self.activation, "use_bias": self.use_bias,
                "kernel_initializer": initializers.serialize(self.kernel_initializer),
                "bias_initializer": initializers.serialize(self.bias_initializer),
                "kernel_regularizer": regularizers.serialize(self.kernel_regularizer),
                "bias_regularizer": regularizers.serialize(self.bias_regularizer)}


class Dense(KernelBiasMixin, ActivationMixin, Layer):
    def __init__(self, units, activation=None, use_bias=True, kernel_initializer="glorot_uniform",
                 bias_initializer="zeros", kernel_regularizer=None, bias_regularizer=None, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(units, (int, np.integer)) or units < 1:
            raise ValueError(f"Dense {self.name!r}: `units` must be a positive int. Received: units={units!r}")
        self.units = int(units)
        self._init_activation(activation)
        self._init_kernel_bias(use_bias, kernel_initializer, bias_initializer, kernel_regularizer, bias_regularizer)
        self.input_spec = {"min_ndim": 2}

    def build(self, input_shape):
        n_in = input_shape[-1]
        self._build_kernel_bias((n_in, self.units))
        self.input_spec = {"min_ndim": 2, "axes": {-1: n_in}}

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.units,)

    def forward(self, x, training=False):
        self._lead = x.shape[:-1]
        x2 = x.reshape(-1, x.shape[-1])                                   # (M, in)
        z, self._cache = dense_ops.forward(x2, self.params["kernel"], self.params.get("bias"))  # (M, units)
        return self._activate(z.reshape(self._lead + (self.units,)))

    def backward_from_logits(self, dz):
        out = self.grad_out("kernel")  # a stale kernel gradient is computed in place
        dx, dW, db = dense_ops.backward(dz.reshape(-1, self.units), self._cache, need_dx=self.need_dx,
                                        dW_out=out)
        self._accumulate_grads(None if out is not None else dW, db)
        return None if dx is None else dx.reshape(self._lead + (dx.shape[-1],))

    def get_config(self):
        return {**super().get_config(), "units": self.units, **self._kernel_bias_config()}


class Activation(ActivationMixin, Layer):
    def __init__(self, activation, **kwargs):
        super().__init__(**kwargs)
        self._init_activation(activation)

    @property
    def per_sample(self):
        return self.activation in act_ops.PER_SAMPLE

    def forward(self, x, training=False):
        return self._activate(x)

    def backward_from_logits(self, dz):
        return dz

    def get_config(self):
        return {**super().get_config(), "activation": self.activation or "linear"}


class ReLU(Activation):
    def __init__(self, **kwargs):
        super().__init__("relu", **kwargs)

    def get_config(self):
        return Layer.get_config(self)


class LeakyReLU(Activation):
    def __init__(self, negative_slope=0.3, **kwargs):
        self.alpha = float(negative_slope)
        super().__init__("leaky_relu", **kwargs)

    def get_config(self):
        return {**Layer.get_config(self), "negative_slope": self.alpha}


class ELU(Activation):
    def __init__(self, alpha=1.0, **kwargs):
        self.alpha = float(alpha)
        super().__init__("elu", **kwargs)

    def get_config(self):
        return {**Layer.get_config(self), "alpha": self.alpha}


class Softmax(Activation):
    def __init__(self, **kwargs):
        super().__init__("softmax", **kwargs)

    def get_config(self):
        return Layer.get_config(self)


class Flatten(Layer):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.input_spec = {"min_ndim": 2}

    def build(self, input_shape):
        self.input_spec = {"ndim": len(input_shape), "axes": {i: d for i, d in enumerate(input_shape) if i > 0}}

    def compute_output_shape(self, input_shape):
        return (input_shape[0], int(np.prod(input_shape[1:])))

    def forward(self, x, training=False):
        y, self._cache = dense_ops.flatten_forward(x)
        return y

    def backward(self, dy):
        return dense_ops.flatten_backward(dy, self._cache)


class Reshape(Layer):
    def __init__(self, target_shape, **kwargs):
        super().__init__(**kwargs)
        self.target_shape = tuple(int(d) for d in target_shape)

    def compute_output_shape(self, input_shape):
        size = int(np.prod(input_shape[1:]))
        shape = list(self.target_shape)
        if -1 in shape:
            known = int(np.prod([d for d in shape if d != -1]))
            shape[shape.index(-1)] = size // known
        if int(np.prod(shape)) != size:
            raise ValueError(f"Reshape {self.name!r}: cannot reshape {input_shape[1:]} ({size} values) "
                             f"to {self.target_shape}.")
        return (input_shape[0],) + tuple(shape)

    def build(self, input_shape):
        self.compute_output_shape(input_shape)

    def forward(self, x, training=False):
        y, self._cache = dense_ops.reshape_forward(x, self.target_shape)
        return y

    def backward(self, dy):
        return dense_ops.reshape_backward(dy, self._cache)

    def get_config(self):
        return {**super().get_config(), "target_shape": list(self.target_shape)}


class Dropout(Layer):
    def __init__(self, rate, seed=None, **kwargs):
        super().__init__(**kwargs)
        if not 0 <= rate < 1:
            raise ValueError(f"Dropout {self.name!r}: `rate` is the fraction dropped and must be in [0, 1). "
                             f"Received: rate={rate!r}")
        self.rate = float(rate)
        self.seed = seed
        self.rng = make_rng(seed)

    # A mask drawn for this forward's input by cnnlab.training.processes, which splits one batch's
    # mask between processes; None: draw one from ``rng``.
    _given_mask = None

    def forward(self, x, training=False):
        y, self._cache = dropout_ops.forward(x, self.rate, self.rng, training=training, mask=self._given_mask)
        return y

    def backward(self, dy):
        return dropout_ops.backward(dy, self._cache)

    def get_config(self):
        return {**super().get_config(), "rate": self.rate, "seed": self.seed}
