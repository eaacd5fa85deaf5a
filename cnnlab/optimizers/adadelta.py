"""Adadelta, Keras's form (the same as PyTorch's; ``learning_rate`` scales the step)."""
import numpy as np

from .base import Optimizer


class Adadelta(Optimizer):
    """``Eg <- rho Eg + (1 - rho) g^2``; ``d = -sqrt(Ed + eps) / sqrt(Eg + eps) * g``;
    ``Ed <- rho Ed + (1 - rho) d^2``; ``w <- w + lr d``."""

    default_name = "adadelta"
    elementwise_update = True

    def __init__(self, learning_rate=0.001, rho=0.95, epsilon=1e-7, **kwargs):
        super().__init__(learning_rate, **kwargs)
        self.rho, self.epsilon = float(rho), float(epsilon)

    def slot_names(self):
        return ("accumulated_grad", "accumulated_delta_var")

    def update(self, w, g, slots, lr):
        rho, eps = self.rho, self.epsilon
        eg, ed = slots["accumulated_grad"], slots["accumulated_delta_var"]
        d, t = self.tmp(w, 0), self.tmp(w, 1)
        np.multiply(g, g, out=t)
        t *= 1.0 - rho
        eg *= rho
        eg += t
        np.add(ed, eps, out=d)
        np.sqrt(d, out=d)
        d *= g
        np.add(eg, eps, out=t)
        np.sqrt(t, out=t)
        d /= t  # d = +sqrt(Ed + eps) / sqrt(Eg + eps) * g (sign folded into the update below)
        np.multiply(d, d, out=t)
        t *= 1.0 - rho
        ed *= rho
        ed += t
        d *= lr
        w -= d

    def get_config(self):
        return {**super().get_config(), "rho": self.rho, "epsilon": self.epsilon}
