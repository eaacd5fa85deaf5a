"""Adam and AdamW, Keras's form: bias corrections folded into the step size, so ``epsilon`` is
PyTorch's epsilon times ``sqrt(1 - beta_2^t)`` (the paper's 'epsilon hat')."""
import math

import numpy as np

from .base import Optimizer


class Adam(Optimizer):
    """``m <- m + (1 - beta_1)(g - m)``; ``v <- v + (1 - beta_2)(g^2 - v)``;
    ``w <- w - lr sqrt(1 - beta_2^t) / (1 - beta_1^t) * m / (sqrt(v) + eps)`` (amsgrad: ``v`` -> running max)."""

    default_name = "adam"
    elementwise_update = True

    def __init__(self, learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7, amsgrad=False, **kwargs):
        super().__init__(learning_rate, **kwargs)
        self.beta_1, self.beta_2, self.epsilon, self.amsgrad = float(beta_1), float(beta_2), float(epsilon), \
            bool(amsgrad)

    def slot_names(self):
        return ("momentum", "velocity") + (("velocity_hat",) if self.amsgrad else ())

    def update(self, w, g, slots, lr):
        b1, b2, t = self.beta_1, self.beta_2, self.tmp(w)
        step = self.iterations + 1
        alpha = lr * math.sqrt(1.0 - b2 ** step) / (1.0 - b1 ** step)
        eps, amsgrad = self.epsilon, self.amsgrad

        def step_(w, g, m, v, t, *vhat):
            m *= b1
            m += np.multiply(g, 1.0 - b1, out=t)
            v *= b2
            np.multiply(g, g, out=t)
            t *= 1.0 - b2
            v += t
            if amsgrad:
                v = np.maximum(vhat[0], v, out=vhat[0])
            np.sqrt(v, out=t)
            t += eps
            np.divide(m, t, out=t)
            t *= alpha
            w -= t

        self.elementwise(step_, w, g, slots["momentum"], slots["velocity"], t,
                         *((slots["velocity_hat"],) if amsgrad else ()))

    def get_config(self):
        return {**super().get_config(), "beta_1": self.beta_1, "beta_2": self.beta_2, "epsilon": self.epsilon,
                "amsgrad": self.amsgrad}


class AdamW(Adam):
    """Adam with decoupled weight decay ``w <- w - lr * weight_decay * w`` before each step (as PyTorch's AdamW)."""

    default_name = "adamw"

    def __init__(self, learning_rate=0.001, weight_decay=0.004, beta_1=0.9, beta_2=0.999, epsilon=1e-7,
                 amsgrad=False, **kwargs):
        if weight_decay is None:
            raise ValueError("Argument `weight_decay` must be a float. Received: weight_decay=None")
        super().__init__(learning_rate, beta_1=beta_1, beta_2=beta_2, epsilon=epsilon, amsgrad=amsgrad,
                         weight_decay=weight_decay, **kwargs)
