"""Weight initializers with Keras 3's names, defaults and formulas.

Each is a callable ``init(shape, dtype=float32) -> ndarray`` with ``get_config``.
Randomness: a ``seed`` gives a fixed generator, so a seeded instance returns the
same values on every call (as Keras 3); without one, each call draws a child
generator from ``cnnlab.random``, so ``set_random_seed`` fixes a whole model.
"""
import inspect
import math

import numpy as np

from . import random as cl_random
from .backend import floatx
from .utils import Serializable, serialize, unknown_name_error  # noqa: F401  (serialize is public here)
from .utils import deserialize as _deserialize

# std of a unit normal truncated to [-2, 2]; dividing by it keeps the variance Keras promises.
TRUNCATED_STD = 0.87962566103423978


def compute_fans(shape):
    """(fan_in, fan_out) as Keras: conv kernels ``(kh, kw, c_in, c_out)`` multiply by the receptive field."""
    shape = tuple(shape)
    if len(shape) < 1:
        return 1, 1
    if len(shape) == 1:
        return int(shape[0]), int(shape[0])
    if len(shape) == 2:
        return int(shape[0]), int(shape[1])
    receptive = int(np.prod(shape[:-2]))
    return int(shape[-2] * receptive), int(shape[-1] * receptive)


def _float_dtype(dtype):
    dtype = np.dtype(dtype or floatx)
    if dtype.kind != "f":
        raise ValueError(f"Initializers produce floating-point arrays; received dtype={dtype}.")
    return dtype


def _draw_dtype(dtype):
    """NumPy's generators draw float32 or float64 natively; anything else is drawn in float64."""
    return dtype if dtype in (np.float32, np.float64) else np.dtype(np.float64)


class Initializer(Serializable):
    def __call__(self, shape, dtype=None):
        raise NotImplementedError


class Constant(Initializer):
    def __init__(self, value=0.0):
        self.value = value

    def __call__(self, shape, dtype=None):
        dtype = _float_dtype(dtype)
        return np.array(np.broadcast_to(np.asarray(self.value, dtype=dtype), tuple(shape)))

    def get_config(self):
        v = self.value
        return {"value": v.tolist() if isinstance(v, np.ndarray) else v}


class Zeros(Initializer):
    def __call__(self, shape, dtype=None):
        return np.zeros(tuple(shape), dtype=_float_dtype(dtype))


class Ones(Initializer):
    def __call__(self, shape, dtype=None):
        return np.ones(tuple(shape), dtype=_float_dtype(dtype))


class Identity(Initializer):
    """``gain * eye`` for 2-D shapes (Keras's IdentityInitializer)."""

    def __init__(self, gain=1.0):
        self.gain = gain

    def __call__(self, shape, dtype=None):
        if len(shape) != 2:
            raise ValueError(f"Identity initializer needs a 2-D shape; received shape={tuple(shape)}.")
        return (np.eye(*shape) * self.gain).astype(_float_dtype(dtype))

    def get_config(self):
        return {"gain": self.gain}


class RandomInitializer(Initializer):
    def __init__(self, seed=None):
        if seed is not None and not isinstance(seed, (int, np.integer)):
            raise ValueError(f"`seed` must be an int or None; received seed={seed!r}.")
        self.seed = None if seed is None else int(seed)

    def rng(self):
        return cl_random.make_rng(self.seed)

    def get_config(self):
        return {"seed": self.seed}


def _normal(rng, shape, dtype):
    return rng.standard_normal(shape, dtype=_draw_dtype(dtype))


def _truncated_normal(rng, shape, dtype):
    """Unit normal with every value beyond 2 std re-drawn (only the rejected ones, vectorised)."""
    x = _normal(rng, shape, dtype)
    flat = x.reshape(-1)
    bad = np.flatnonzero(np.abs(flat) > 2)
    while bad.size:
        flat[bad] = _normal(rng, bad.size, dtype)
        bad = bad[np.abs(flat[bad]) > 2]
    return x


def _uniform(rng, shape, dtype, minval, maxval):
    u = rng.random(shape, dtype=_draw_dtype(dtype))
    u *= maxval - minval
    u += minval
    return u


class RandomNormal(RandomInitializer):
    def __init__(self, mean=0.0, stddev=0.05, seed=None):
        super().__init__(seed)
        self.mean, self.stddev = mean, stddev

    def __call__(self, shape, dtype=None):
        dtype = _float_dtype(dtype)
        x = _normal(self.rng(), tuple(shape), dtype)
        return (x * self.stddev + self.mean).astype(dtype, copy=False)

    def get_config(self):
        return {"mean": self.mean, "stddev": self.stddev, "seed": self.seed}


class TruncatedNormal(RandomNormal):
    """Normal with values beyond 2 ``stddev`` from ``mean`` re-drawn."""

    def __call__(self, shape, dtype=None):
        dtype = _float_dtype(dtype)
        x = _truncated_normal(self.rng(), tuple(shape), dtype)
        return (x * self.stddev + self.mean).astype(dtype, copy=False)


class RandomUniform(RandomInitializer):
    def __init__(self, minval=-0.05, maxval=0.05, seed=None):
        super().__init__(seed)
        self.minval, self.maxval = minval, maxval

    def __call__(self, shape, dtype=None):
        dtype = _float_dtype(dtype)
        return _uniform(self.rng(), tuple(shape), dtype, self.minval, self.maxval).astype(dtype, copy=False)

    def get_config(self):
        return {"minval": self.minval, "maxval": self.maxval, "seed": self.seed}


class VarianceScaling(RandomInitializer):
    """Variance ``scale / fan``; the parent of the Glorot, He and LeCun families."""

    def __init__(self, scale=1.0, mode="fan_in", distribution="truncated_normal", seed=None):
        super().__init__(seed)
        if scale <= 0.0:
            raise ValueError(f"`scale` must be positive; received scale={scale}.")
        if mode not in ("fan_in", "fan_out", "fan_avg"):
            raise ValueError(f"`mode` must be one of 'fan_in', 'fan_out', 'fan_avg'; received mode={mode!r}.")
        distribution = distribution.lower()
        if distribution == "normal":  # Keras's alias
            distribution = "truncated_normal"
        if distribution not in ("uniform", "truncated_normal", "untruncated_normal"):
            raise ValueError("`distribution` must be one of 'uniform', 'truncated_normal', 'untruncated_normal'; "
                             f"received distribution={distribution!r}.")
        self.scale, self.mode, self.distribution = scale, mode, distribution

    def __call__(self, shape, dtype=None):
        dtype = _float_dtype(dtype)
        shape = tuple(shape)
        fan_in, fan_out = compute_fans(shape)
        fan = {"fan_in": fan_in, "fan_out": fan_out, "fan_avg": (fan_in + fan_out) / 2.0}[self.mode]
        scale = self.scale / max(1.0, fan)
        rng = self.rng()
        if self.distribution == "uniform":
            limit = math.sqrt(3.0 * scale)
            x = _uniform(rng, shape, dtype, -limit, limit)
        elif self.distribution == "truncated_normal":
            x = _truncated_normal(rng, shape, dtype)
            x *= math.sqrt(scale) / TRUNCATED_STD
        else:
            x = _normal(rng, shape, dtype)
            x *= math.sqrt(scale)
        return x.astype(dtype, copy=False)

    def get_config(self):
        return {"scale": self.scale, "mode": self.mode, "distribution": self.distribution, "seed": self.seed}


def _variance_family(name, scale, mode, distribution, doc):
    def __init__(self, seed=None):
        VarianceScaling.__init__(self, scale=scale, mode=mode, distribution=distribution, seed=seed)

    def get_config(self):
        return {"seed": self.seed}

    return type(name, (VarianceScaling,), {"__init__": __init__, "get_config": get_config, "__doc__": doc})


GlorotUniform = _variance_family("GlorotUniform", 1.0, "fan_avg", "uniform",
                                 "Uniform in ±sqrt(6 / (fan_in + fan_out)).")
GlorotNormal = _variance_family("GlorotNormal", 1.0, "fan_avg", "truncated_normal",
                                "Truncated normal, std sqrt(2 / (fan_in + fan_out)) / 0.8796.")
HeNormal = _variance_family("HeNormal", 2.0, "fan_in", "truncated_normal",
                            "Truncated normal, std sqrt(2 / fan_in) / 0.8796.")
HeUniform = _variance_family("HeUniform", 2.0, "fan_in", "uniform", "Uniform in ±sqrt(6 / fan_in).")
LecunNormal = _variance_family("LecunNormal", 1.0, "fan_in", "truncated_normal",
                               "Truncated normal, std sqrt(1 / fan_in) / 0.8796.")
LecunUniform = _variance_family("LecunUniform", 1.0, "fan_in", "uniform", "Uniform in ±sqrt(3 / fan_in).")


class Orthogonal(RandomInitializer):
    """An orthogonal matrix (QR of a normal draw) reshaped to ``shape``, times ``gain``."""

    def __init__(self, gain=1.0, seed=None):
        super().__init__(seed)
        self.gain = gain

    def __call__(self, shape, dtype=None):
        dtype = _float_dtype(dtype)
        shape = tuple(shape)
        if len(shape) < 2:
            raise ValueError(f"Orthogonal initializer needs at least a 2-D shape; received shape={shape}.")
        rows, cols = int(np.prod(shape[:-1])), shape[-1]
        a = self.rng().standard_normal((max(rows, cols), min(rows, cols)))
        q, r = np.linalg.qr(a)
        q *= np.sign(np.diag(r))  # makes the decomposition unique, so the draw is uniform
        if rows < cols:
            q = q.T
        return (self.gain * q.reshape(shape)).astype(dtype)

    def get_config(self):
        return {"gain": self.gain, "seed": self.seed}


ALL = {cls.__name__: cls for cls in (
    Zeros, Ones, Constant, Identity, RandomNormal, TruncatedNormal, RandomUniform, VarianceScaling,
    GlorotUniform, GlorotNormal, HeNormal, HeUniform, LecunNormal, LecunUniform, Orthogonal)}
ALIASES = {
    "zeros": Zeros, "zero": Zeros, "ones": Ones, "one": Ones, "constant": Constant, "identity": Identity,
    "random_normal": RandomNormal, "normal": RandomNormal, "truncated_normal": TruncatedNormal,
    "random_uniform": RandomUniform, "uniform": RandomUniform, "variance_scaling": VarianceScaling,
    "glorot_uniform": GlorotUniform, "glorot_normal": GlorotNormal, "he_normal": HeNormal,
    "he_uniform": HeUniform, "lecun_normal": LecunNormal, "lecun_uniform": LecunUniform,
    "orthogonal": Orthogonal,
}
_LOOKUP = {**ALL, **ALIASES}


def deserialize(config):
    return _deserialize(config, _LOOKUP, "initializer", ALIASES)


def get(identifier):
    """An initializer from a name, a ``{"class_name", "config"}`` dict, a class, an instance or a callable."""
    if isinstance(identifier, str):
        if identifier not in _LOOKUP:
            raise unknown_name_error("initializer", identifier, ALIASES)
        return _LOOKUP[identifier]()
    if isinstance(identifier, dict):
        return deserialize(identifier)
    if inspect.isclass(identifier) and issubclass(identifier, Initializer):
        return identifier()
    if callable(identifier):
        return identifier
    raise ValueError(f"Could not interpret initializer identifier: {identifier!r}")
