"""MNIST-like data sets: four IDX files (gzip-compressed or not) in one folder."""
from pathlib import Path

from . import _store
from .idx import load_pair

TRAIN_IMAGES, TRAIN_LABELS = "train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"
TEST_IMAGES, TEST_LABELS = "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"
FILES = (TRAIN_IMAGES, TRAIN_LABELS, TEST_IMAGES, TEST_LABELS)


def resolve(folder, fname):
    """``folder/fname``, or its uncompressed twin (``fname`` without ``.gz``), if either exists."""
    for candidate in (Path(folder) / fname, Path(folder) / fname[:-3]):
        if candidate.is_file():
            return candidate
    return None


def locate(folder):
    files = [resolve(folder, f) for f in FILES]
    return folder if all(files) else None


def load_folder(folder):
    """``((x_train, y_train), (x_test, y_test))`` from the four IDX files in ``folder``."""
    p = {f: resolve(folder, f) for f in FILES}
    missing = [f for f, v in p.items() if v is None]
    if missing:
        raise FileNotFoundError(f"{folder}: missing {', '.join(missing)}")
    return (load_pair(p[TRAIN_IMAGES], p[TRAIN_LABELS]), load_pair(p[TEST_IMAGES], p[TEST_LABELS]))


def make_spec(name, title, files, mirrors, system_dirs=()):
    return _store.register(_store.Spec(
        name=name, title=title, files=files, mirrors=mirrors, locate=locate, system_dirs=system_dirs,
        layout_help=", ".join(FILES) + " (gzip-compressed or not)"))
