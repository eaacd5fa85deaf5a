import numpy as np
import pytest

from cnnlab import layers as L
from cnnlab.layers import clear_session
from cnnlab.models import Sequential
from cnnlab.random import set_random_seed
from tests.helpers import one_blas_thread


def make_data(n=96, seed=0, shape=(6, 6, 1), classes=3):
    """Separable toy images: class k has a bright k-th row band."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, classes, n)
    x = rng.normal(0, 0.3, size=(n,) + shape).astype(np.float32)
    for k in range(classes):
        x[y == k, 2 * k:2 * k + 2] += 1.5
    return x, y


def make_model(dropout=True, bn=True, optimizer="adam", lr=0.01, seed=0, classes=3, shape=(6, 6, 1)):
    set_random_seed(seed)
    stack = [L.Input(shape), L.Conv2D(4, 3, padding="same", activation="relu")]
    if bn:
        stack.append(L.BatchNormalization())
    stack += [L.Flatten()]
    if dropout:
        stack.append(L.Dropout(0.3))
    stack.append(L.Dense(classes, activation="softmax"))
    m = Sequential(stack)
    from cnnlab import optimizers
    opt = optimizers.get({"class_name": optimizer, "config": {"learning_rate": lr}}) if isinstance(optimizer, str) else optimizer
    m.compile(optimizer=opt, loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return m


def make_dense(seed=0, classes=3, features=4, lr=0.1):
    set_random_seed(seed)
    m = Sequential([L.Input((features,)), L.Dense(classes, activation="softmax")])
    from cnnlab import optimizers
    m.compile(optimizer=optimizers.get({"class_name": "sgd", "config": {"learning_rate": lr}}),
              loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return m


@pytest.fixture
def data():
    return make_data()


@pytest.fixture(autouse=True)
def _fresh_names():
    clear_session()
    yield


@pytest.fixture(scope="session", autouse=True)
def _one_blas_thread():
    with one_blas_thread():
        yield
