"""``load(name_or_path)`` and ``report()``: one entry point for every data set."""
import os
from pathlib import Path

from ..utils import unknown_name_error
from . import _cifar, _idxsets, _store, cifar10, cifar100, digits, fashion_mnist, mnist
from ._dataset import Dataset
from .folder import image_folder

NAMES = ("mnist", "fashion_mnist", "cifar10", "cifar100", "digits")
_MODULES = {"mnist": mnist, "fashion_mnist": fashion_mnist, "cifar10": cifar10, "cifar100": cifar100}
_ALIASES = {"fashion": "fashion_mnist", "fmnist": "fashion_mnist", "cifar": "cifar10", "sklearn_digits": "digits"}


def _normalize(name):
    key = name.strip().lower().replace("-", "_")
    return _ALIASES.get(key, key)


def load(name_or_path, path=None, download=True, label_mode="fine", **folder_kwargs):
    """A ``Dataset`` by name (one of ``NAMES``) or from a directory.

    A directory holding the four MNIST IDX files or CIFAR batches is read as such; any other
    directory is read with ``image_folder`` (``folder_kwargs``: image_size, color_mode, ...).
    """
    name_or_path = os.fspath(name_or_path)
    key = _normalize(name_or_path)
    if key in NAMES:
        return _load_named(key, path, download, label_mode)
    p = Path(name_or_path).expanduser()
    if p.is_dir():
        return load_directory(p, label_mode, **folder_kwargs)
    if os.sep in name_or_path or name_or_path.startswith(".") or p.suffix:
        raise FileNotFoundError(f"load: {name_or_path!r} is not a known data set or an existing directory")
    raise unknown_name_error("dataset", name_or_path, NAMES)


def _load_named(name, path, download, label_mode):
    if name == "digits":
        (xt, yt), (xv, yv) = digits.load_data()
        return Dataset(xt, yt, xv, yv, list(digits.CLASS_NAMES), "digits", digits.source())
    folder, source = _store.fetch(name, path, download)
    if name in ("mnist", "fashion_mnist"):
        (xt, yt), (xv, yv) = _idxsets.load_folder(folder)
        names = list(_MODULES[name].CLASS_NAMES)
    elif name == "cifar10":
        (xt, yt), (xv, yv), names = cifar10.load_source(source)
    else:
        (xt, yt), (xv, yv), names = cifar100.load_source(source, label_mode)
        name = f"cifar100_{label_mode}" if label_mode != "fine" else name
    return Dataset(xt, yt, xv, yv, names, name, str(source if name.startswith("cifar") else folder))


def load_directory(folder, label_mode="fine", **folder_kwargs):
    """IDX files, CIFAR batches or class folders, whichever ``folder`` holds."""
    folder = Path(folder)
    if _idxsets.locate(folder) is not None:
        (xt, yt), (xv, yv) = _idxsets.load_folder(folder)
        names = [str(i) for i in range(int(max(yt.max(), yv.max())) + 1)]
        return Dataset(xt, yt, xv, yv, names, folder.name, str(folder))
    source = cifar10.SPEC.locate(folder)
    if source is not None:
        (xt, yt), (xv, yv), names = cifar10.load_source(source)
        return Dataset(xt, yt, xv, yv, names, folder.name, str(source))
    source = cifar100.SPEC.locate(folder)
    if source is not None:
        (xt, yt), (xv, yv), names = cifar100.load_source(source, label_mode)
        return Dataset(xt, yt, xv, yv, names, folder.name, str(source))
    return image_folder(folder, **folder_kwargs)


def report(path=None):
    """One dict per data set: ``{name, found_at, files, checksum_ok}`` (never downloads).

    ``checksum_ok`` is True/False when every found file has a known checksum, else None.
    """
    rows = []
    for name in NAMES:
        if name == "digits":
            rows.append({"name": name, "found_at": digits.source(), "files": ["digits.csv.gz"], "checksum_ok": None})
            continue
        spec = _store.SPECS[name]
        folder, source = _store.find(name, path if path is None else Path(path) / name)
        if folder is None:
            rows.append({"name": name, "found_at": None, "files": [], "checksum_ok": None})
            continue
        files, oks = [], []
        if isinstance(source, _cifar.Source) and source.folder is not None:
            files = sorted(p.name for p in Path(source.folder).iterdir() if p.is_file())
            oks = [None]  # extracted batches: no official per-file checksums
        else:
            for fname, remote in spec.files.items():
                f = _idxsets.resolve(folder, fname) if name in ("mnist", "fashion_mnist") else folder / fname
                if f is not None and f.is_file():
                    files.append(f.name)
                    oks.append(_store.check_file(f, remote))
        ok = None if None in oks or not oks else all(oks)
        rows.append({"name": name, "found_at": str(folder), "files": files, "checksum_ok": ok})
    return rows
