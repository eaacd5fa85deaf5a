"""Stochastic gradient descent with (Nesterov) momentum, Keras's form."""
import numpy as np

from .base import Optimizer


class SGD(Optimizer):
    """``m <- momentum * m - lr * g``; ``w <- w + m`` (Nesterov: ``w <- w + momentum * m - lr * g``).

    For a constant ``lr`` this is PyTorch's ``buf <- momentum * buf + g; w <- w - lr * buf`` with ``m = -lr * buf``.
    """

    default_name = "SGD"
    elementwise_update = True

    def __init__(self, learning_rate=0.01, momentum=0.0, nesterov=False, **kwargs):
        super().__init__(learning_rate, **kwargs)
        if not 0.0 <= momentum <= 1.0:
            raise ValueError(f"`momentum` must be a float between [0, 1]. Received: momentum={momentum}")
        self.momentum, self.nesterov = float(momentum), bool(nesterov)

    def slot_names(self):
        return ("momentum",) if self.momentum != 0 else ()

    def update(self, w, g, slots, lr):
        momentum, nesterov = self.momentum, self.nesterov

        def step_(w, g, step, *m):
            np.multiply(g, lr, out=step)  # lr * g
            if not m:
                w -= step
                return
            m = m[0]
            m *= momentum
            m -= step
            if nesterov:
                w -= step
                np.multiply(m, momentum, out=step)
                w += step
            else:
                w += m

        self.elementwise(step_, w, g, self.tmp(w), *((slots["momentum"],) if slots else ()))

    def get_config(self):
        return {**super().get_config(), "momentum": self.momentum, "nesterov": self.nesterov}
