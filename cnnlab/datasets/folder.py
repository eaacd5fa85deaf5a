"""Images in one sub-folder per class (PNG/JPEG), e.g. Fruits-360.

Layouts: ``Training/`` + ``Test/`` (Fruits-360), ``train/`` + ``test/``, or a flat root of class
folders that is split into train/test with a seeded stratified split.
"""
import warnings
from pathlib import Path

import numpy as np

from ._dataset import Dataset

EXTENSIONS = {".png", ".jpg", ".jpeg"}
TRAIN_DIRS = ("training", "train")
TEST_DIRS = ("test", "testing")


def _subdir(root, names):
    for d in sorted(p for p in root.iterdir() if p.is_dir()):
        if d.name.lower() in names:
            return d
    return None


def _class_dirs(root):
    return sorted((p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")), key=lambda p: p.name)


def _list(root, class_names):
    """``[(file, label)]`` of every image under ``root/<class>/``."""
    index = {c: i for i, c in enumerate(class_names)}
    items = []
    for d in _class_dirs(root):
        if d.name not in index:
            raise ValueError(f"{d}: class folder {d.name!r} does not exist in the training set "
                             f"(classes: {', '.join(class_names)})")
        items += [(f, index[d.name]) for f in sorted(d.iterdir())
                  if f.suffix.lower() in EXTENSIONS and not f.name.startswith(".")]
    return items


def _size(image_size):
    if image_size is None:
        return None
    if isinstance(image_size, int):
        return (image_size, image_size)
    h, w = image_size
    return (int(h), int(w))


def _read(items, size, mode, on_error):
    """Images of ``items`` as uint8 ``(N, h, w, c)``; unreadable ones are skipped or raise."""
    from PIL import Image

    channels = 3 if mode == "RGB" else 1
    x = None
    keep = []
    for i, (f, _) in enumerate(items):
        try:
            with Image.open(f) as img:
                img = img.convert(mode)
                if size is None:
                    size = (img.height, img.width)
                if (img.height, img.width) != size:
                    img = img.resize((size[1], size[0]), Image.BILINEAR)
                arr = np.asarray(img, dtype=np.uint8)
        except (OSError, ValueError) as e:  # missing, truncated or not an image
            if on_error == "raise":
                raise ValueError(f"cannot read image {f}: {e}") from e
            warnings.warn(f"skipping unreadable image {f}: {e}", stacklevel=3)
            continue
        if x is None:  # allocate once, then fill: no list of per-image arrays
            x = np.empty((len(items), *size, channels), dtype=np.uint8)
        x[len(keep)] = arr.reshape(*size, channels)
        keep.append(i)
    if x is None:
        x = np.empty((0, *(size or (0, 0)), channels), dtype=np.uint8)
    y = np.array([items[i][1] for i in keep], dtype=np.int64)
    return x[:len(keep)], y, size


def _split(labels, test_fraction, seed):
    """Indices ``(train, test)``: a seeded split that keeps each class's share in both parts."""
    rng = np.random.default_rng(seed)
    train, test = [], []
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        n_test = int(round(len(idx) * test_fraction))
        test.append(idx[:n_test])
        train.append(idx[n_test:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(test))


def image_folder(path, image_size=None, color_mode="rgb", on_error="warn", test_fraction=0.2, seed=0):
    """Load a folder of class sub-folders as a ``Dataset`` (which also unpacks as ``load_data`` does).

    ``image_size``: ``(height, width)`` or an int; None keeps the size of the first image.
    ``color_mode``: ``'rgb'`` (3 channels) or ``'grayscale'`` (1 channel).
    ``on_error``: ``'warn'`` skips unreadable images with a warning naming the file; ``'raise'`` raises.
    ``test_fraction`` and ``seed``: the split of a flat root (unused with train/test folders).
    Labels index ``class_names``, the training class folders sorted by name.
    """
    root = Path(path).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(f"image_folder: {root} is not a directory")
    modes = {"rgb": "RGB", "grayscale": "L"}
    if color_mode not in modes:
        raise ValueError(f"color_mode must be 'rgb' or 'grayscale', got {color_mode!r}")
    if on_error not in ("warn", "raise"):
        raise ValueError(f"on_error must be 'warn' or 'raise', got {on_error!r}")
    size = _size(image_size)
    train_dir, test_dir = _subdir(root, TRAIN_DIRS), _subdir(root, TEST_DIRS)
    if (train_dir is None) != (test_dir is None):
        raise ValueError(f"{root}: found {'a training' if train_dir else 'a test'} folder but no "
                         f"{'test' if train_dir else 'training'} folder (expected Training/+Test/ or train/+test/)")
    base = train_dir or root
    class_names = [d.name for d in _class_dirs(base)]
    if not class_names:
        raise ValueError(f"{base}: no class sub-folders found")
    train_items = _list(base, class_names)
    if not train_items:
        raise ValueError(f"{base}: no PNG or JPEG images found in the class folders")
    x, y, size = _read(train_items, size, modes[color_mode], on_error)
    if train_dir is not None:
        x_test, y_test, _ = _read(_list(test_dir, class_names), size, modes[color_mode], on_error)
        layout = "train/test folders"
    else:
        tr, te = _split(y, test_fraction, seed)
        x, y, x_test, y_test = x[tr], y[tr], x[te], y[te]
        layout = f"flat root, split {1 - test_fraction:.0%}/{test_fraction:.0%} with seed {seed}"
    dtype = np.uint8 if len(class_names) <= 256 else np.int64
    return Dataset(x, y.astype(dtype), x_test, y_test.astype(dtype), class_names,
                   name=root.name, source=str(root), extra={"layout": layout})
