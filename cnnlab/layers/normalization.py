"""Batch normalization over the last (channel or feature) axis."""
from .. import initializers
from ..ops import batchnorm as bn_ops
from .base import Layer


class BatchNormalization(Layer):
    def __init__(self, axis=-1, momentum=0.99, epsilon=1e-3, center=True, scale=True,
                 beta_initializer="zeros", gamma_initializer="ones", moving_mean_initializer="zeros",
                 moving_variance_initializer="ones", **kwargs):
        super().__init__(**kwargs)
        if axis != -1:
            raise ValueError(f"BatchNormalization {self.name!r}: only axis=-1 (channels last) is supported. "
                             f"Received: axis={axis!r}")
        if not 0 <= momentum < 1:
            raise ValueError(f"BatchNormalization {self.name!r}: `momentum` must be in [0, 1). "
                             f"Received: momentum={momentum!r}")
        self.axis = axis
        self.momentum = float(momentum)
        self.epsilon = float(epsilon)
        self.center, self.scale = center, scale
        self.beta_initializer = initializers.get(beta_initializer)
        self.gamma_initializer = initializers.get(gamma_initializer)
        self.moving_mean_initializer = initializers.get(moving_mean_initializer)
        self.moving_variance_initializer = initializers.get(moving_variance_initializer)
        self.input_spec = {"min_ndim": 2}

    def build(self, input_shape):
        c = input_shape[-1]
        # Keras's order: gamma, beta, moving_mean, moving_variance. Without scale/center,
        # gamma/beta stay constant arrays outside the trainable set.
        if self.scale:
            self.add_weight("gamma", (c,), self.gamma_initializer)
        else:
            self._gamma = initializers.get("ones")((c,))
        if self.center:
            self.add_weight("beta", (c,), self.beta_initializer)
        else:
            self._beta = initializers.get("zeros")((c,))
        self.add_weight("moving_mean", (c,), self.moving_mean_initializer, trainable=False)
        self.add_weight("moving_variance", (c,), self.moving_variance_initializer, trainable=False)
        self.input_spec = {"ndim": len(input_shape), "axes": {-1: c}}

    def _gamma_beta(self):
        return self.params.get("gamma", getattr(self, "_gamma", None)), self.params.get("beta", getattr(self, "_beta", None))

    # Set by cnnlab.training.processes for a step whose batch is split over processes: the
    # ``reduce`` of ops.batchnorm.forward_train that sums the statistics over the whole batch.
    _reduce = staticmethod(bn_ops.local)

    def forward(self, x, training=False):
        gamma, beta = self._gamma_beta()
        if training and self.trainable:
            y, self._cache = bn_ops.forward_train(x, gamma, beta, self.epsilon, reduce=self._reduce)
            bn_ops.update_moving(self.state["moving_mean"], self._cache.mean, self.momentum)
            bn_ops.update_moving(self.state["moving_variance"], self._cache.var, self.momentum)
        else:
            y, self._cache = bn_ops.forward_inference(x, gamma, beta, self.state["moving_mean"],
                                                      self.state["moving_variance"], self.epsilon)
        return y

    def backward(self, dy):
        dx, dgamma, dbeta = bn_ops.backward(dy, self._cache)
        if self.scale:
            self.add_grad("gamma", dgamma)
        if self.center:
            self.add_grad("beta", dbeta)
        return dx

    def get_config(self):
        return {**super().get_config(), "axis": self.axis, "momentum": self.momentum, "epsilon": self.epsilon,
                "center": self.center, "scale": self.scale,
                "beta_initializer": initializers.serialize(self.beta_initializer),
                "gamma_initializer": initializers.serialize(self.gamma_initializer),
                "moving_mean_initializer": initializers.serialize(self.moving_mean_initializer),
                "moving_variance_initializer": initializers.serialize(self.moving_variance_initializer)}
