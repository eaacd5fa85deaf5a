"""CIFAR-100: 50,000 training and 10,000 test colour images, 32x32, in 100 fine / 20 coarse classes."""
from . import _cifar, _store

MEMBER_DIR = "cifar-100-python"
SPEC = _store.register(_store.Spec(
    name="cifar100", title="CIFAR-100", files=_store.CIFAR100_FILES, mirrors=_store.CIFAR_MIRRORS,
    locate=_cifar.make_locate(MEMBER_DIR, "cifar-100-python.tar.gz", ["train", "test"]),
    layout_help=f"cifar-100-python.tar.gz or its extracted {MEMBER_DIR}/ folder"))


def _key(label_mode):
    if label_mode not in ("fine", "coarse"):
        raise ValueError(f"label_mode must be 'fine' or 'coarse', got {label_mode!r}")
    return f"{label_mode}_labels"


def load_source(source, label_mode="fine"):
    key = _key(label_mode)
    try:
        train = _cifar.read_batch(source, "train", key)
        test = _cifar.read_batch(source, "test", key)
        names = _cifar.read_names(source, "meta", f"{label_mode}_label_names")
    finally:
        source.close()
    n = 100 if label_mode == "fine" else 20
    return train, test, names or [f"class_{i}" for i in range(n)]


def load_data(label_mode="fine", path=None, download=True):
    """``(x_train, y_train), (x_test, y_test)``: uint8 images ``(N, 32, 32, 3)``, uint8 labels
    of the 100 ``'fine'`` or 20 ``'coarse'`` classes."""
    _key(label_mode)
    _, source = _store.fetch("cifar100", path, download)
    train, test, _ = load_source(source, label_mode)
    return train, test
