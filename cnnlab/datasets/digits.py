"""scikit-learn's bundled 8x8 digits (1,797 images): the data set that works offline everywhere.

Pixel values 0..16 are scaled to 0..255 uint8; the train/test split is a fixed stratified 80/20
split with seed 0, so every run and machine sees the same test set.
"""
import numpy as np

CLASS_NAMES = [str(i) for i in range(10)]
TEST_FRACTION = 0.2
SEED = 0


def load_data(path=None, download=True):
    """``(x_train, y_train), (x_test, y_test)``: uint8 images ``(N, 8, 8, 1)`` and uint8 labels.

    ``path`` and ``download`` are accepted for a uniform signature and ignored.
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()
    x = np.round(d.images * (255.0 / 16.0)).astype(np.uint8)[..., None]
    y = d.target.astype(np.uint8)
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=TEST_FRACTION, random_state=SEED, stratify=y)
    return (x_train, y_train), (x_test, y_test)


def source():
    import sklearn.datasets
    from pathlib import Path
    return str(Path(sklearn.datasets.__file__).parent / "data" / "digits.csv.gz")
