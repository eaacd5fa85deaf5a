"""The one GEMM every op calls: ``gemm(a, b, out)`` writes ``a @ b`` into ``out``.

By default this is ``numpy.matmul`` (OpenBLAS in NumPy's wheels). With Intel's oneMKL
runtime installed (``pip install cnnlab[mkl]``) on an Intel CPU, float32 and float64
products big enough to repay a ctypes call, of operands that BLAS can read in place, go
to MKL's ``cblas_sgemm`` / ``cblas_dgemm`` instead, on MKL's sequential layer: cnnlab's
own threads already give each core its share of every GEMM (``threads.parallel_slices``),
so MKL must not start threads of its own.

Measured on one core of this project's 2-core AVX-512 Xeon, im2col-shaped products
(rows x K x F), MKL against NumPy's OpenBLAS: 12544 x 288 x 64 at 154 vs 125-140 GFLOP/s,
12544 x 576 x 32 at 152 vs 97, 50176 x 9 x 32 at 83 vs 49. A whole training step at batch
128 (bench/step.py's models, 2 threads): seed000 -9%, seed002 -9%, seed001 unchanged.
MKL was not measured on other vendors' CPUs, so ``auto`` leaves them on NumPy.

``CNNLAB_GEMM`` = ``auto`` (default), ``mkl`` or ``numpy`` picks the backend at import,
``set_backend`` later; ``CNNLAB_MKL`` may name the ``libmkl_rt`` file to load.
"""
import ctypes
import glob
import os
import sys

import numpy as np

_ROW_MAJOR, _NO_TRANS, _TRANS = 101, 111, 112
_MKL_THREADING_SEQUENTIAL = 1
_MKL_INTERFACE_LP64 = 0
_INT_MAX = 2**31 - 1

_kernels = None      # {np.dtype: cblas_?gemm}, once MKL is loaded
# Smaller products stay with NumPy: a ctypes call costs about 7 us more than np.matmul, and below
# about 2^22 multiply-adds MKL was no faster (128 x 256 x 100: 53 us NumPy, 61 us MKL; 10 x 2978 x 12:
# 11 vs 26 us); above it, it was, on one thread each (50176 x 10 x 12: 347 vs 230 us; 10 x 50176 x 12:
# 571 vs 257 us; 3549 x 144 x 12: 211 vs 177 us; 128 x 576 x 128: 138 vs 128 us).
MKL_MIN_MACS = 1 << 22
_backend = "numpy"


def _mkl_candidates():
    env = os.environ.get("CNNLAB_MKL")
    if env:
        return [env]
    found = []
    for prefix in dict.fromkeys([sys.prefix, sys.base_prefix, "/usr", "/usr/local"]):
        found += sorted(glob.glob(os.path.join(prefix, "lib", "libmkl_rt.so*")))
    return found


def _load_mkl():
    """``{dtype: kernel}`` from the first libmkl_rt that loads, or None."""
    for path in _mkl_candidates():
        try:
            lib = ctypes.CDLL(path)
            # both must come before any other MKL call to take effect
            lib.MKL_Set_Interface_Layer(_MKL_INTERFACE_LP64)
            lib.MKL_Set_Threading_Layer(_MKL_THREADING_SEQUENTIAL)
            kernels = {}
            for dtype, name, scalar in ((np.float32, "cblas_sgemm", ctypes.c_float),
                                        (np.float64, "cblas_dgemm", ctypes.c_double)):
                fn = getattr(lib, name)
                i, p = ctypes.c_int, ctypes.c_void_p
                fn.argtypes = [i, i, i, i, i, i, scalar, p, i, p, i, scalar, p, i]
                fn.restype = None
                kernels[np.dtype(dtype)] = fn
            return kernels
        except (OSError, AttributeError):
            continue
    return None


def _intel_cpu():
    try:
        with open("/proc/cpuinfo") as f:
            return any(line.startswith("vendor_id") and "GenuineIntel" in line for line in f)
    except OSError:
        return False


def _numpy_has_mkl():
    """True when MKL is in the process before cnnlab loads it: NumPy built on MKL (as conda's),
    whose matmul is MKL already, threaded by MKL itself."""
    try:
        with open("/proc/self/maps") as f:
            return any("libmkl" in line for line in f)
    except OSError:
        return False


def set_backend(name):
    """``"mkl"`` (raises if MKL cannot be loaded), ``"numpy"``, or ``"auto"`` (MKL when it is
    installed, the CPU is Intel's and NumPy is not on MKL already); returns the backend now in use."""
    global _kernels, _backend
    if name not in ("auto", "mkl", "numpy"):
        raise ValueError(f"gemm backend must be 'auto', 'mkl' or 'numpy', received {name!r}")
    if name == "numpy" or (name == "auto" and (not _intel_cpu() or (_kernels is None and _numpy_has_mkl()))):
        _backend = "numpy"
        return _backend
    if _kernels is None:
        _kernels = _load_mkl()
    if _kernels is None:
        if name == "mkl":
            raise RuntimeError("gemm backend 'mkl': no libmkl_rt could be loaded (looked for "
                               f"{_mkl_candidates() or 'lib/libmkl_rt.so* under the Python prefixes'}); "
                               "install it with `pip install mkl` or set CNNLAB_MKL to its path")
        _backend = "numpy"
    else:
        _backend = "mkl"
    return _backend


def backend():
    """The backend in use: ``"mkl"`` or ``"numpy"``."""
    return _backend


def mkl_takes(macs, dtype):
    """True when ``gemm`` sends a product of ``macs`` multiply-adds in ``dtype`` to MKL, given
    operands that BLAS can read in place (``gemm`` checks those itself)."""
    return _backend == "mkl" and macs >= MKL_MIN_MACS and np.dtype(dtype) in _kernels


def _operand(m):
    """``(trans, ld)`` for reading 2-D ``m`` in place as a row-major BLAS operand, or None."""
    item = m.itemsize
    s0, s1 = m.strides
    rows, cols = m.shape
    if s1 == item and s0 % item == 0 and s0 // item >= max(1, cols):
        return _NO_TRANS, s0 // item
    if s0 == item and s1 % item == 0 and s1 // item >= max(1, rows):
        return _TRANS, s1 // item
    return None


def gemm(a, b, out):
    """``out[...] = a @ b`` for 2-D ``a`` (M, K), ``b`` (K, N) and ``out`` (M, N); returns ``out``."""
    if mkl_takes(a.shape[0] * a.shape[1] * b.shape[1], out.dtype):
        fn = _kernels[out.dtype]
        M, K = a.shape
        if (a.dtype == b.dtype == out.dtype and b.shape[0] == K and out.shape == (M, b.shape[1])
                and 0 < min(M, K, b.shape[1]) and max(out.shape + a.shape) < _INT_MAX and out.flags.writeable
                and a.flags.aligned and b.flags.aligned and out.flags.aligned):
            opa, opb, opc = _operand(a), _operand(b), _operand(out)
            if (opa and opb and opc and opc[0] == _NO_TRANS
                    and not (np.may_share_memory(out, a) or np.may_share_memory(out, b))):
                fn(_ROW_MAJOR, opa[0], opb[0], M, b.shape[1], K, 1.0, a.ctypes.data, opa[1], b.ctypes.data,
                   opb[1], 0.0, out.ctypes.data, opc[1])
                return out
    return np.matmul(a, b, out=out)


_env = os.environ.get("CNNLAB_GEMM", "auto").strip().lower() or "auto"
if _env not in ("auto", "mkl", "numpy"):
    raise ValueError(f"CNNLAB_GEMM must be 'auto', 'mkl' or 'numpy', received {_env!r}")
set_backend(_env)
