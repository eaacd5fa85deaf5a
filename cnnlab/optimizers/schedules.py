"""Learning-rate schedules: callables ``schedule(step) -> float`` (Keras's names and formulas).

``step`` is the optimizer's ``iterations`` before the update, so the first update uses ``schedule(0)``.
"""
import math

from ..utils import Serializable, serialize  # noqa: F401  (serialize is public here)
from ..utils import deserialize as _deserialize


class LearningRateSchedule(Serializable):
    def __call__(self, step):
        raise NotImplementedError


class ExponentialDecay(LearningRateSchedule):
    """``initial_learning_rate * decay_rate ** (step / decay_steps)`` (integer division when ``staircase``)."""

    def __init__(self, initial_learning_rate, decay_steps, decay_rate, staircase=False, name="ExponentialDecay"):
        if decay_steps <= 0:
            raise ValueError(f"`decay_steps` must be > 0; received decay_steps={decay_steps}.")
        self.initial_learning_rate, self.decay_steps = initial_learning_rate, decay_steps
        self.decay_rate, self.staircase, self.name = decay_rate, staircase, name

    def __call__(self, step):
        p = step / self.decay_steps
        if self.staircase:
            p = math.floor(p)
        return float(self.initial_learning_rate * self.decay_rate ** p)

    def get_config(self):
        return {"initial_learning_rate": self.initial_learning_rate, "decay_steps": self.decay_steps,
                "decay_rate": self.decay_rate, "staircase": self.staircase, "name": self.name}


class PiecewiseConstantDecay(LearningRateSchedule):
    """``values[0]`` while ``step <= boundaries[0]``, ``values[1]`` while ``step <= boundaries[1]``, ..."""

    def __init__(self, boundaries, values, name="PiecewiseConstant"):
        if len(values) != len(boundaries) + 1:
            raise ValueError("The length of `values` must be one more than the length of `boundaries`; received "
                             f"{len(boundaries)} boundaries and {len(values)} values.")
        if list(boundaries) != sorted(boundaries):
            raise ValueError(f"`boundaries` must be increasing; received {list(boundaries)}.")
        self.boundaries, self.values, self.name = list(boundaries), list(values), name

    def __call__(self, step):
        for b, v in zip(self.boundaries, self.values):
            if step <= b:
                return float(v)
        return float(self.values[-1])

    def get_config(self):
        return {"boundaries": self.boundaries, "values": self.values, "name": self.name}


class StepDecay(LearningRateSchedule):
    """``initial_learning_rate * factor ** (step // step_size)`` (PyTorch's StepLR)."""

    def __init__(self, initial_learning_rate, step_size, factor=0.1, name="StepDecay"):
        if step_size <= 0:
            raise ValueError(f"`step_size` must be > 0; received step_size={step_size}.")
        self.initial_learning_rate, self.step_size, self.factor, self.name = \
            initial_learning_rate, step_size, factor, name

    def __call__(self, step):
        return float(self.initial_learning_rate * self.factor ** (int(step) // self.step_size))

    def get_config(self):
        return {"initial_learning_rate": self.initial_learning_rate, "step_size": self.step_size,
                "factor": self.factor, "name": self.name}


class CosineDecay(LearningRateSchedule):
    """Optional linear warmup to ``warmup_target``, then half a cosine down to ``alpha`` times the peak."""

    def __init__(self, initial_learning_rate, decay_steps, alpha=0.0, name="CosineDecay", warmup_target=None,
                 warmup_steps=0):
        if decay_steps <= 0:
            raise ValueError(f"`decay_steps` must be > 0; received decay_steps={decay_steps}.")
        self.initial_learning_rate, self.decay_steps, self.alpha, self.name = \
            initial_learning_rate, decay_steps, alpha, name
        self.warmup_target, self.warmup_steps = warmup_target, warmup_steps

    def _decay(self, step, peak):
        cosine = 0.5 * (1.0 + math.cos(math.pi * step / self.decay_steps))
        return peak * ((1.0 - self.alpha) * cosine + self.alpha)

    def __call__(self, step):
        if self.warmup_target is None:
            return float(self._decay(min(step, self.decay_steps), self.initial_learning_rate))
        step = min(step, self.decay_steps + self.warmup_steps)
        if step < self.warmup_steps:
            delta = self.warmup_target - self.initial_learning_rate
            return float(self.initial_learning_rate + delta * step / self.warmup_steps)
        return float(self._decay(step - self.warmup_steps, self.warmup_target))

    def get_config(self):
        return {"initial_learning_rate": self.initial_learning_rate, "decay_steps": self.decay_steps,
                "alpha": self.alpha, "name": self.name, "warmup_target": self.warmup_target,
                "warmup_steps": self.warmup_steps}


class OneCycle(LearningRateSchedule):
    """PyTorch's OneCycleLR learning rate (cosine, two phases): up from ``max/div_factor`` to ``max`` over
    ``pct_start`` of the steps, then down to ``max/div_factor/final_div_factor`` at ``total_steps - 1``."""

    def __init__(self, max_learning_rate, total_steps, pct_start=0.3, div_factor=25.0, final_div_factor=1e4,
                 name="OneCycle"):
        if total_steps <= 0:
            raise ValueError(f"`total_steps` must be > 0; received total_steps={total_steps}.")
        if not 0.0 <= pct_start <= 1.0:
            raise ValueError(f"`pct_start` must be in [0, 1]; received pct_start={pct_start}.")
        self.max_learning_rate, self.total_steps, self.pct_start = max_learning_rate, total_steps, pct_start
        self.div_factor, self.final_div_factor, self.name = div_factor, final_div_factor, name

    @staticmethod
    def _cos(start, end, pct):
        return end + (start - end) / 2.0 * (math.cos(math.pi * pct) + 1)

    def __call__(self, step):
        initial = self.max_learning_rate / self.div_factor
        final = initial / self.final_div_factor
        step = min(max(step, 0), self.total_steps - 1)  # torch raises past the end; we stay at the floor
        up_end = float(self.pct_start * self.total_steps) - 1  # torch's phase boundaries
        down_end = float(self.total_steps - 1)
        if step <= up_end:
            return float(self._cos(initial, self.max_learning_rate, step / up_end if up_end > 0 else 1.0))
        return float(self._cos(self.max_learning_rate, final, (step - up_end) / (down_end - up_end)))

    def get_config(self):
        return {"max_learning_rate": self.max_learning_rate, "total_steps": self.total_steps,
                "pct_start": self.pct_start, "div_factor": self.div_factor,
                "final_div_factor": self.final_div_factor, "name": self.name}


ALL = {cls.__name__: cls for cls in (ExponentialDecay, PiecewiseConstantDecay, StepDecay, CosineDecay, OneCycle)}


def deserialize(config):
    return _deserialize(config, ALL, "learning-rate schedule")


def get(identifier):
    if isinstance(identifier, dict):
        return deserialize(identifier)
    if isinstance(identifier, LearningRateSchedule):
        return identifier
    raise ValueError(f"Could not interpret learning-rate schedule: {identifier!r}")
