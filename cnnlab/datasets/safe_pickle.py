"""A pickle reader that cannot run code, for the CIFAR "python version" batches.

Unpickling executes whatever callables a file names, so a plain ``pickle.load`` of a downloaded
file is arbitrary code execution. ``find_class`` is the only way a pickle reaches a callable;
ours refuses every global except the three that a pickled numpy array needs, and those are
wrapped so that they can only build plain ``ndarray`` objects of non-object dtypes:

* ``numpy.core.multiarray._reconstruct`` (``numpy._core`` in numpy 2): makes an empty array;
* ``numpy.ndarray``: the class passed to ``_reconstruct``;
* ``numpy.dtype``: the element type (object dtypes are refused).

Dicts, lists, ints and (byte) strings need no globals at all.
"""
import io
import pickle

import numpy as np

try:
    from numpy._core.multiarray import _reconstruct as _np_reconstruct
except ImportError:  # numpy < 2
    from numpy.core.multiarray import _reconstruct as _np_reconstruct


def _reconstruct(subtype, shape, dtype):
    if subtype is not np.ndarray:
        raise pickle.UnpicklingError(f"refusing to build an array of type {subtype!r}")
    return _np_reconstruct(np.ndarray, shape, _dtype(dtype))


def _dtype(obj, align=False, copy=False):
    dt = np.dtype(obj, align, copy)
    if dt.hasobject:
        raise pickle.UnpicklingError(f"refusing object dtype {dt}")
    return dt


_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): _dtype,
}


class SafeUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"refusing global {module}.{name}: only numpy arrays are allowed") from None


def loads(data, source="<bytes>"):
    """Unpickle ``data`` (Python 2 strings come back as ``bytes``); ``ValueError`` naming ``source`` if refused."""
    try:
        return SafeUnpickler(io.BytesIO(data), encoding="bytes").load()
    except Exception as e:  # a corrupt pickle can raise nearly anything; report it uniformly
        raise ValueError(f"{source}: not a valid CIFAR batch pickle ({type(e).__name__}: {e})") from None
