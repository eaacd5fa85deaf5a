"""A tiny CNN trained on scikit-learn's digits for a few seconds, in a run directory."""
import numpy as np
import pytest

from cnnlab import layers as L
from cnnlab.datasets import load
from cnnlab.models import Sequential
from cnnlab.random import set_random_seed
from cnnlab.training.checkpoint import write_run_config


def png_array(path):
    from PIL import Image
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def assert_not_blank(path, min_colors=8):
    a = png_array(path)
    assert a.std() > 0, f"{path} is one flat colour"
    colors = len(np.unique(a.reshape(-1, 3), axis=0))
    assert colors >= min_colors, f"{path} has only {colors} distinct colours"
    return a


@pytest.fixture(scope="session")
def digits_run(tmp_path_factory):
    """(run_dir, model, dataset): conv(8, same) -> maxpool -> conv(16, valid) -> dense softmax, 6 epochs.

    Session-scoped: trained once for all viz test modules (none of them changes it).
    """
    set_random_seed(0)
    ds = load("digits")
    model = Sequential([L.Input((8, 8, 1)), L.Conv2D(8, 3, padding="same", activation="relu", name="conv_a"),
                        L.MaxPooling2D(2, name="pool"), L.Conv2D(16, 3, activation="relu", name="conv_b"),
                        L.Flatten(name="flat"), L.Dense(10, activation="softmax", name="out")])
    model.compile("adam", "sparse_categorical_crossentropy", ["accuracy"])
    run_dir = tmp_path_factory.mktemp("viz") / "run"
    model.fit(ds.x_train / 255.0, ds.y_train, epochs=6, batch_size=32, verbose=0,
              validation_data=(ds.x_test / 255.0, ds.y_test), run_dir=str(run_dir))
    write_run_config(str(run_dir), {"data": "digits", "class_names": ds.class_names,
                                    "preprocessing": {"mode": "scale", "scale": 1 / 255}})
    return run_dir, model, ds
