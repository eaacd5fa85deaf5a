"""Adagrad, Keras's form: epsilon inside the square root."""
import numpy as np

from .base import Optimizer


class Adagrad(Optimizer):
    """``acc <- acc + g^2`` (starting at ``initial_accumulator_value``); ``w <- w - lr g / sqrt(acc + eps)``."""

    default_name = "adagrad"
    elementwise_update = True

    def __init__(self, learning_rate=0.001, initial_accumulator_value=0.1, epsilon=1e-7, **kwargs):
        super().__init__(learning_rate, **kwargs)
        self.initial_accumulator_value, self.epsilon = float(initial_accumulator_value), float(epsilon)

    def slot_names(self):
        return ("accumulator",)

    def init_slot(self, name, w):
        return np.full_like(w, self.initial_accumulator_value)

    def update(self, w, g, slots, lr):
        acc, t = slots["accumulator"], self.tmp(w)
        acc += np.multiply(g, g, out=t)
        np.add(acc, self.epsilon, out=t)
        np.sqrt(t, out=t)
        np.divide(g, t, out=t)
        t *= lr
        w -= t

    def get_config(self):
        return {**super().get_config(), "initial_accumulator_value": self.initial_accumulator_value,
                "epsilon": self.epsilon}
