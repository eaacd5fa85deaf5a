"""Exact resume: 2 epochs + resume to 4 equals 4 uninterrupted epochs, bit for bit."""
import csv
import json
import os

import numpy as np

from cnnlab.datasets import augment
from cnnlab.training import EarlyStopping, ReduceLROnPlateau, load_checkpoint, resume

from .conftest import make_model


def _fit(model, x, y, epochs, run_dir=None, resume_=False, callbacks=None):
    return model.fit(x, y, batch_size=16, epochs=epochs, verbose=0, seed=3, validation_split=0.25,
                     augment=augment.parse("shift:1,flip:horizontal"), run_dir=run_dir, resume=resume_,
                     callbacks=callbacks)


def _weights_equal(a, b):
    wa, wb = a.get_weights(), b.get_weights()
    return len(wa) == len(wb) and all(np.array_equal(u, v) for u, v in zip(wa, wb))


def test_exact_resume_bit_for_bit(tmp_path, data):
    x, y = data
    ref = make_model()
    ref_hist = _fit(ref, x, y, 4, run_dir=str(tmp_path / "ref"))

    d = str(tmp_path / "run")
    _fit(make_model(), x, y, 2, run_dir=d)
    # a fresh model object (other automatic layer names, other initial weights)
    fresh = make_model(seed=99)
    assert fresh.layers[0].name != ref.layers[0].name
    hist = _fit(fresh, x, y, 4, run_dir=d, resume_=True)

    assert _weights_equal(ref, fresh)
    assert ref.optimizer.iterations == fresh.optimizer.iterations
    assert len(hist.history["loss"]) == 4
    assert hist.history["loss"] == ref_hist.history["loss"]
    assert hist.history["val_accuracy"] == ref_hist.history["val_accuracy"]
    with open(os.path.join(d, "log.csv")) as f:
        rows = list(csv.DictReader(f))
    assert [int(r["epoch"]) for r in rows] == [0, 1, 2, 3]
    loaded, state = load_checkpoint(d)
    assert state["epoch"] == 4
    assert _weights_equal(loaded, ref)


def test_resume_without_clear_session_names_differ(tmp_path, data):
    """Layer names are auto-generated per process; a second model gets dense_1 etc. and still resumes."""
    from cnnlab.random import set_random_seed
    x, y = data
    d = str(tmp_path / "run")
    _fit(make_model(), x, y, 1, run_dir=d)
    set_random_seed(0)
    from cnnlab import layers as L
    from cnnlab.models import Sequential
    m = Sequential([L.Input((6, 6, 1)), L.Conv2D(4, 3, padding="same", activation="relu"),
                    L.BatchNormalization(), L.Flatten(), L.Dropout(0.3), L.Dense(3, activation="softmax")])
    m.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    assert m.layers[0].name.endswith("_1")
    hist = _fit(m, x, y, 2, run_dir=d, resume_=True)
    assert len(hist.history["loss"]) == 2


def test_resume_restores_callback_state_and_learning_rate(tmp_path, data):
    x, y = data

    def cbs():
        return [EarlyStopping(monitor="loss", patience=50, mode="max"),
                ReduceLROnPlateau(monitor="loss", factor=0.5, patience=0, mode="max")]

    ref = make_model()
    ref_cbs = cbs()
    _fit(ref, x, y, 4, callbacks=ref_cbs)
    d = str(tmp_path / "run")
    _fit(make_model(), x, y, 2, run_dir=d, callbacks=cbs())
    m, new_cbs = make_model(), cbs()
    _fit(m, x, y, 4, run_dir=d, resume_=True, callbacks=new_cbs)
    assert m.optimizer.learning_rate == ref.optimizer.learning_rate < 0.01
    assert new_cbs[0].get_state() == ref_cbs[0].get_state()
    assert new_cbs[1].get_state() == ref_cbs[1].get_state()
    assert _weights_equal(m, ref)


def test_run_json_and_resume_helper(tmp_path, data):
    x, y = data
    ref = make_model()
    _fit(ref, x, y, 3)
    d = str(tmp_path / "run")
    _fit(make_model(), x, y, 1, run_dir=d)
    with open(os.path.join(d, "run.json")) as f:
        run = json.load(f)
    assert run["fit"]["batch_size"] == 16 and run["fit"]["seed"] == 3 and run["fit"]["epochs"] == 1
    assert run["fit"]["augment"]["name"] == "compose"
    assert run["fit"]["validation_split"] == 0.25
    model, hist = resume(d, x, y, epochs=3, verbose=0)
    assert len(hist.history["loss"]) == 3
    assert _weights_equal(model, ref)


def test_resume_of_finished_run_trains_nothing(tmp_path, data):
    x, y = data
    d = str(tmp_path / "run")
    m = make_model()
    _fit(m, x, y, 2, run_dir=d)
    m2 = make_model(seed=5)
    hist = _fit(m2, x, y, 2, run_dir=d, resume_=True)
    assert _weights_equal(m, m2)
    assert len(hist.history["loss"]) == 2
