"""Reader and writer for the IDX format of MNIST-like data sets (raw or gzip-compressed).

Header: two zero bytes, a type code, the number of dimensions, then one big-endian uint32 per
dimension; the payload follows. Images have magic 2051 (0x00000803), labels 2049 (0x00000801).
"""
import gzip
import struct
import zlib
from pathlib import Path

import numpy as np

IMAGES_MAGIC = 0x00000803
LABELS_MAGIC = 0x00000801
_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
_CODES = {np.dtype(v).newbyteorder(">").str: k for k, v in _DTYPES.items()}


def _read_bytes(path):
    with open(path, "rb") as f:
        data = f.read()
    if data[:2] == b"\x1f\x8b":  # gzip, whatever the extension says
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as e:
            raise ValueError(f"{Path(path).name}: corrupt or truncated gzip data ({e})") from None
    return data


def read_idx(path, expected_magic=None):
    """The array stored in the IDX file ``path``; checks the header against the payload size."""
    name = Path(path).name
    data = _read_bytes(path)
    if len(data) < 4:
        raise ValueError(f"{name}: {len(data)} bytes is too short for an IDX header")
    magic = struct.unpack(">I", data[:4])[0]
    what = {IMAGES_MAGIC: "images", LABELS_MAGIC: "labels"}.get(expected_magic)
    if expected_magic is not None and magic != expected_magic:
        raise ValueError(f"bad magic number 0x{magic:08x} in {name}: expected 0x{expected_magic:08x} for {what}")
    zero, code, ndim = data[0:2], data[2], data[3]
    if zero != b"\x00\x00" or code not in _DTYPES or ndim == 0:
        raise ValueError(f"bad magic number 0x{magic:08x} in {name}: not an IDX file")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise ValueError(f"{name}: truncated header: {ndim} dimensions need {header} bytes, file has {len(data)}")
    shape = struct.unpack(f">{ndim}I", data[4:header])
    dtype = np.dtype(_DTYPES[code])
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    got = len(data) - header
    if got != expected:
        kind = "truncated payload" if got < expected else "trailing bytes after the payload"
        raise ValueError(f"{name}: {kind}: header says shape {tuple(shape)} = {expected} bytes, file has {got}")
    arr = np.frombuffer(data, dtype=dtype, offset=header).reshape(shape)
    return arr if dtype == np.uint8 else arr.astype(dtype.newbyteorder("="))


def write_idx(path, array, compress=None):
    """Write ``array`` as IDX (gzip-compressed when ``compress`` or the name ends in ``.gz``)."""
    array = np.asarray(array)
    be = array.dtype.newbyteorder(">") if array.dtype.itemsize > 1 else array.dtype
    code = _CODES.get(np.dtype(be).str)
    if code is None:
        raise ValueError(f"write_idx: dtype {array.dtype} has no IDX type code")
    data = struct.pack(">BBBB", 0, 0, code, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    data += np.ascontiguousarray(array, dtype=be).tobytes()
    compress = str(path).endswith(".gz") if compress is None else compress
    with open(path, "wb") as f:
        f.write(gzip.compress(data, mtime=0) if compress else data)


def load_pair(images_path, labels_path):
    """``(images (N, H, W, 1) uint8, labels (N,) uint8)`` from an IDX images/labels pair."""
    x = read_idx(images_path, IMAGES_MAGIC)
    y = read_idx(labels_path, LABELS_MAGIC)
    if x.ndim != 3:
        raise ValueError(f"{Path(images_path).name}: expected 3 dimensions (N, rows, cols), got shape {x.shape}")
    if y.ndim != 1:
        raise ValueError(f"{Path(labels_path).name}: expected 1 dimension (N,), got shape {y.shape}")
    if len(x) != len(y):
        raise ValueError(f"count mismatch: {Path(images_path).name} has {len(x)} images, "
                         f"{Path(labels_path).name} has {len(y)} labels")
    return x.reshape(*x.shape, 1), y
