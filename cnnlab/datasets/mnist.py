"""MNIST handwritten digits: 60,000 training and 10,000 test images, 28x28 grayscale."""
from . import _idxsets, _store

CLASS_NAMES = [str(i) for i in range(10)]
SPEC = _idxsets.make_spec("mnist", "MNIST", _store.MNIST_FILES, _store.MNIST_MIRRORS)


def load_data(path=None, download=True):
    """``(x_train, y_train), (x_test, y_test)``: uint8 images ``(N, 28, 28, 1)`` and uint8 labels.

    ``path`` is a folder holding the official IDX files; see ``cnnlab.datasets`` for where else
    they are looked for.
    """
    folder, _ = _store.fetch("mnist", path, download)
    return _idxsets.load_folder(folder)
