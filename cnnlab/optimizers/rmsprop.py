"""RMSprop, Keras's form: epsilon inside the square root."""
import numpy as np

from .base import Optimizer


class RMSprop(Optimizer):
    """``v <- rho v + (1 - rho) g^2``; ``step = lr g / sqrt(v + eps)`` (centered: ``v - a^2 + eps`` with
    ``a`` the running mean of ``g``); with momentum, ``m <- momentum m + step; w <- w - m``."""

    default_name = "rmsprop"
    elementwise_update = True

    def __init__(self, learning_rate=0.001, rho=0.9, momentum=0.0, epsilon=1e-7, centered=False, **kwargs):
        super().__init__(learning_rate, **kwargs)
        self.rho, self.momentum, self.epsilon, self.centered = float(rho), float(momentum), float(epsilon), \
            bool(centered)

    def slot_names(self):
        return ("velocity",) + (("momentum",) if self.momentum > 0 else ()) + \
            (("average_gradient",) if self.centered else ())

    def update(self, w, g, slots, lr):
        rho, eps, centered = self.rho, self.epsilon, self.centered
        momentum = self.momentum
        extra = (slots["average_gradient"] if centered else None, slots["momentum"] if momentum > 0 else None)

        def step_(w, g, v, t, *rest):
            rest = iter(rest)
            a = next(rest) if centered else None
            m = next(rest) if momentum > 0 else None
            np.multiply(g, g, out=t)
            t *= 1.0 - rho
            v *= rho
            v += t
            if centered:
                a *= rho
                a += np.multiply(g, 1.0 - rho, out=t)
                np.multiply(a, a, out=t)
                np.subtract(v, t, out=t)
            else:
                t[...] = v
            t += eps
            np.sqrt(t, out=t)
            np.divide(g, t, out=t)
            t *= lr  # t = lr * g / sqrt(denominator)
            if m is not None:
                m *= momentum
                m += t
                w -= m
            else:
                w -= t

        self.elementwise(step_, w, g, slots["velocity"], self.tmp(w), *(a for a in extra if a is not None))

    def get_config(self):
        return {**super().get_config(), "rho": self.rho, "momentum": self.momentum, "epsilon": self.epsilon,
                "centered": self.centered}
