"""CIFAR-10: 50,000 training and 10,000 test colour images, 32x32, in 10 classes."""
import numpy as np

from . import _cifar, _store

CLASS_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
MEMBER_DIR = "cifar-10-batches-py"
TRAIN_BATCHES = [f"data_batch_{i}" for i in range(1, 6)]
SPEC = _store.register(_store.Spec(
    name="cifar10", title="CIFAR-10", files=_store.CIFAR10_FILES, mirrors=_store.CIFAR_MIRRORS,
    locate=_cifar.make_locate(MEMBER_DIR, "cifar-10-python.tar.gz", TRAIN_BATCHES + ["test_batch"]),
    layout_help=f"cifar-10-python.tar.gz or its extracted {MEMBER_DIR}/ folder"))


def load_source(source):
    try:
        parts = [_cifar.read_batch(source, b, "labels") for b in TRAIN_BATCHES]
        train = (np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]))
        test = _cifar.read_batch(source, "test_batch", "labels")
        names = _cifar.read_names(source, "batches.meta", "label_names") or CLASS_NAMES
    finally:
        source.close()
    return train, test, names


def load_data(path=None, download=True):
    """``(x_train, y_train), (x_test, y_test)``: uint8 images ``(N, 32, 32, 3)`` and uint8 labels."""
    _, source = _store.fetch("cifar10", path, download)
    train, test, _ = load_source(source)
    return train, test
