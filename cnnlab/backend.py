"""The array module and default dtype used by the engine.

Everything goes through ``xp`` so that a CuPy backend can replace NumPy later
without touching the ops.
"""
import numpy as np

xp = np
floatx = np.float32


def as_float(x, dtype=None):
    """Return ``x`` as a contiguous float array (float32 unless told)."""
    return np.ascontiguousarray(x, dtype=dtype or floatx)
