"""Fashion-MNIST (Zalando): 60,000 training and 10,000 test images of clothes, 28x28 grayscale."""
from . import _idxsets, _store

CLASS_NAMES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
               "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
SPEC = _idxsets.make_spec("fashion_mnist", "Fashion-MNIST", _store.FASHION_MNIST_FILES,
                          _store.FASHION_MNIST_MIRRORS,
                          system_dirs=("/usr/share/datasets/fashion-mnist",))  # Debian: dataset-fashion-mnist


def load_data(path=None, download=True):
    """``(x_train, y_train), (x_test, y_test)``: uint8 images ``(N, 28, 28, 1)`` and uint8 labels."""
    folder, _ = _store.fetch("fashion_mnist", path, download)
    return _idxsets.load_folder(folder)
