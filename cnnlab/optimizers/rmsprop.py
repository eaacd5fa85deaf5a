"""RMSprop, Keras's form: epsilon inside the square root."""
import numpy as np

from .base import Optimizer


class RMSprop(Optimizer):
    """``v <- rho v + (1 - rho) g^2``; ``step = lr g / sqrt(v + eps)`` (centered: ``v - a^2 + eps`` with
    ``a`` the running mean of ``g``); with momentum, ``m <- momentum m + step; w <- w - m``."""

    default_name = "rmsprop"

    def __init__(self, learning_rate=0.001, rho=0.9, momentum=0.0, epsilon=1e-7, centered=False, **kwargs):
        super().__init__(learning_rate, **kwargs)
        self.rho, self.momentum, self.epsilon, self.centered = float(rho), float(momentum), float(epsilon), \
            bool(centered)

    def slot_names(self):
        return ("velocity",) + (("momentum",) if self.momentum > 0 else ()) + \
            (("average_gradient",) if self.centered else ())

    def update(self, w, g, slots, lr):
        rho, v, t = self.rho, slots["velocity"], self.tmp(w)
        np.multiply(g, g, out=t)
        t *= 1.0 - rho
        v *= rho
        v += t
        if self.centered:
            a = slots["average_gradient"]
            a *= rho
            a += np.multiply(g, 1.0 - rho, out=t)
            np.multiply(a, a, out=t)
            np.subtract(v, t, out=t)
        else:
            t[...] = v
        t += self.epsilon
        np.sqrt(t, out=t)
        np.divide(g, t, out=t)
        t *= lr  # t = lr * g / sqrt(denominator)
        if self.momentum > 0:
            m = slots["momentum"]
            m *= self.momentum
            m += t
            w -= m
        else:
            w -= t

    def get_config(self):
        return {**super().get_config(), "rho": self.rho, "momentum": self.momentum, "epsilon": self.epsilon,
                "centered": self.centered}
