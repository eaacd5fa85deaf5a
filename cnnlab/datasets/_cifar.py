"""CIFAR-10/100 "python version": pickled batches, read without unpickling (see safe_pickle).

The batches are found either extracted (``cifar-10-batches-py/``, ``cifar-100-python/``) or inside
the official archive, which is read in place rather than extracted.
"""
import tarfile
from pathlib import Path

import numpy as np

from . import safe_pickle


class Source:
    """Reads members of an extracted batch folder or of the official ``.tar.gz``."""

    def __init__(self, folder=None, archive=None, member_dir=None):
        self.folder, self.archive, self.member_dir = folder, archive, member_dir
        self._tar = None

    def __str__(self):
        return str(self.folder or self.archive)

    def read(self, member):
        if self.folder is not None:
            return (Path(self.folder) / member).read_bytes()
        if self._tar is None:
            self._tar = tarfile.open(self.archive, "r:gz")
        try:
            f = self._tar.extractfile(f"{self.member_dir}/{member}")
        except KeyError:
            raise FileNotFoundError(f"{self.archive}: no member {self.member_dir}/{member}") from None
        return f.read()

    def close(self):
        if self._tar is not None:
            self._tar.close()


def make_locate(member_dir, archive_name, members):
    def locate(folder):
        folder = Path(folder)
        for d in (folder / member_dir, folder):  # the extracted folder, or the batches themselves
            if all((d / m).is_file() for m in members):
                return Source(folder=d)
        if (folder / archive_name).is_file():
            return Source(archive=folder / archive_name, member_dir=member_dir)
        return None
    return locate


def read_batch(source, member, label_key):
    """``(x (N, 32, 32, 3) uint8, y (N,) uint8)`` from one batch; checks its structure."""
    where = f"{source}/{member}"
    d = safe_pickle.loads(source.read(member), where)
    if not isinstance(d, dict):
        raise ValueError(f"{where}: expected a dict, got {type(d).__name__}")
    d = {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in d.items()}
    if "data" not in d or label_key not in d:
        raise ValueError(f"{where}: expected keys 'data' and {label_key!r}, got {sorted(d)}")
    x, labels = d["data"], d[label_key]
    if not isinstance(x, np.ndarray) or x.dtype != np.uint8 or x.ndim != 2 or x.shape[1] != 3072:
        desc = f"{x.dtype} array of shape {x.shape}" if isinstance(x, np.ndarray) else type(x).__name__
        raise ValueError(f"{where}: 'data' must be a uint8 array of shape (N, 3072), got {desc}")
    y = np.asarray(labels)
    if y.ndim != 1 or len(y) != len(x) or not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"{where}: {label_key!r} must be {len(x)} integers (one per image), got "
                         f"{y.dtype} of shape {y.shape}")
    if len(y) and (y.min() < 0 or y.max() > 255):
        raise ValueError(f"{where}: labels out of range 0..255: {y.min()}..{y.max()}")
    # Rows hold the red, green, then blue 32x32 planes.
    return x.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1).copy(), y.astype(np.uint8)


def read_names(source, member, key):
    """Class names from a meta file, or None if it is absent."""
    try:
        d = safe_pickle.loads(source.read(member), f"{source}/{member}")
    except FileNotFoundError:
        return None
    names = {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in d.items()}.get(key)
    return [n.decode("utf-8") if isinstance(n, bytes) else str(n) for n in names] if names else None
