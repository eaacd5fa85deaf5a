"""EarlyStopping, ModelCheckpoint, LearningRateScheduler, ReduceLROnPlateau, CSVLogger, TerminateOnNaN."""
import csv
import json
import os

import numpy as np
import pytest

from cnnlab.layers import clear_session
from cnnlab.models import load_model
from cnnlab.training import (Callback, CSVLogger, EarlyStopping, LearningRateScheduler, ModelCheckpoint,
                             ReduceLROnPlateau, TerminateOnNaN, load_checkpoint)

from .conftest import make_dense, make_model


class WeightLog(Callback):
    def __init__(self):
        super().__init__()
        self.weights = []

    def on_epoch_end(self, epoch, logs=None):
        self.weights.append(self.model.get_weights())


def _same(a, b):
    return all(np.array_equal(u, v) for u, v in zip(a, b))


def test_early_stopping_patience(data):
    x, y = data
    # loss keeps falling, so with mode='max' epoch 1 is the best and nothing improves after it
    es = EarlyStopping(monitor="loss", mode="max", patience=2)
    h = make_model().fit(x, y, epochs=10, verbose=0, seed=0, callbacks=[es])
    assert len(h.history["loss"]) == 3
    assert es.stopped_epoch == 2 and es.best_epoch == 0


def test_early_stopping_never_triggers_while_improving(data):
    x, y = data
    es = EarlyStopping(monitor="loss", patience=0)
    h = make_model(dropout=False).fit(x, y, epochs=4, verbose=0, seed=0, callbacks=[es])
    assert len(h.history["loss"]) == 4 and es.stopped_epoch == 0


def test_early_stopping_restore_best_weights(data):
    x, y = data
    log = WeightLog()
    es = EarlyStopping(monitor="loss", mode="max", patience=2, restore_best_weights=True)
    m = make_model()
    m.fit(x, y, epochs=10, verbose=0, seed=0, callbacks=[log, es])
    assert len(log.weights) == 3
    assert _same(m.get_weights(), log.weights[0])
    assert not _same(m.get_weights(), log.weights[2])


def test_early_stopping_unknown_monitor(data):
    x, y = data
    with pytest.raises(ValueError, match="val_loss.*validation"):
        make_model().fit(x, y, epochs=2, verbose=0, callbacks=[EarlyStopping()])


def test_model_checkpoint_every_epoch(tmp_path, data):
    x, y = data
    log = WeightLog()
    m = make_model()
    m.fit(x, y, epochs=3, verbose=0, seed=0,
          callbacks=[log, ModelCheckpoint(str(tmp_path / "model-{epoch:02d}"))])
    assert sorted(os.listdir(tmp_path)) == ["model-01", "model-02", "model-03"]
    for i in range(3):
        loaded = load_model(tmp_path / f"model-{i + 1:02d}")
        assert _same(loaded.get_weights(), log.weights[i])


def test_model_checkpoint_metric_in_name_and_weights_only(tmp_path, data):
    x, y = data
    m = make_model()
    m.fit(x, y, epochs=1, verbose=0, seed=0, callbacks=[
        ModelCheckpoint(str(tmp_path / "w-{epoch}-{loss:.2f}.safetensors"), save_weights_only=True)])
    (name,) = os.listdir(tmp_path)
    assert name.startswith("w-1-") and name.endswith(".safetensors")
    clear_session()  # load_weights matches weights by layer name
    other = make_model(seed=4)
    other.load_weights(tmp_path / name)
    assert _same(other.get_weights(), m.get_weights())


def test_model_checkpoint_save_best_only(tmp_path, data):
    x, y = data
    m = make_model()
    # mode='max' on a falling loss: only the first epoch is ever "best"
    m.fit(x, y, epochs=3, verbose=0, seed=0,
          callbacks=[ModelCheckpoint(str(tmp_path / "best-{epoch:02d}"), monitor="loss", mode="max",
                                     save_best_only=True)])
    assert os.listdir(tmp_path) == ["best-01"]
    # and on the normal direction every improving epoch overwrites one fixed path
    log = WeightLog()
    m2 = make_model(dropout=False)
    m2.fit(x, y, epochs=3, verbose=0, seed=0, validation_split=0.25,
           callbacks=[log, ModelCheckpoint(str(tmp_path / "best"), save_best_only=True)])
    h = m2.history.history["val_loss"]
    best = int(np.argmin(h))
    assert _same(load_model(tmp_path / "best").get_weights(), log.weights[best])


def test_learning_rate_scheduler(data):
    x, y = data
    m = make_dense(lr=0.1)
    xs, ys = x.reshape(len(x), -1)[:, :4], y
    h = m.fit(xs, ys, epochs=4, verbose=0, seed=0,
              callbacks=[LearningRateScheduler(lambda epoch, lr: 0.1 * 0.5 ** epoch)])
    assert h.history["learning_rate"] == pytest.approx([0.1, 0.05, 0.025, 0.0125])
    assert m.optimizer.learning_rate == pytest.approx(0.0125)


def test_learning_rate_scheduler_rejects_nan(data):
    x, y = data
    with pytest.raises(ValueError, match="schedule returned nan"):
        make_model().fit(x, y, epochs=1, verbose=0,
                         callbacks=[LearningRateScheduler(lambda e, lr: float("nan"))])


def test_reduce_lr_on_plateau(data):
    x, y = data
    m = make_model(lr=0.1)
    rlr = ReduceLROnPlateau(monitor="loss", mode="max", factor=0.5, patience=1)
    h = m.fit(x, y, epochs=4, verbose=0, seed=0, callbacks=[rlr])
    # epoch 1 sets the best; epochs 2, 3 and 4 are plateaus: each reduces (logged lr is the epoch's own)
    assert h.history["learning_rate"] == pytest.approx([0.1, 0.1, 0.05, 0.025])
    assert m.optimizer.learning_rate == pytest.approx(0.0125)


def test_reduce_lr_min_lr_and_cooldown(data):
    x, y = data
    m = make_model(lr=0.1)
    rlr = ReduceLROnPlateau(monitor="loss", mode="max", factor=0.1, patience=1, cooldown=2, min_lr=0.005)
    h = m.fit(x, y, epochs=5, verbose=0, seed=0, callbacks=[rlr])
    # Keras semantics: the cooldown counter is decremented before the check, so cooldown=2 skips one epoch
    assert h.history["learning_rate"] == pytest.approx([0.1, 0.1, 0.01, 0.01, 0.005])


def test_csv_logger_one_row_per_epoch(tmp_path, data):
    x, y = data
    path = tmp_path / "log.csv"
    make_model().fit(x, y, epochs=3, verbose=0, seed=0, validation_split=0.25, callbacks=[CSVLogger(path)])
    with open(path) as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 3
    assert [int(r["epoch"]) for r in rows] == [0, 1, 2]
    assert {"loss", "accuracy", "val_loss", "val_accuracy", "learning_rate"} <= set(rows[0])
    assert all(np.isfinite(float(r["loss"])) for r in rows)
    # append=True continues the same file
    make_model().fit(x, y, epochs=1, verbose=0, seed=0, validation_split=0.25,
                     callbacks=[CSVLogger(path, append=True)])
    with open(path) as f:
        assert len(list(csv.DictReader(f))) == 4


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_terminate_on_nan(tmp_path, data, capsys):
    x, y = data
    d = str(tmp_path / "run")
    m = make_dense(lr=0.1)
    xs = x.reshape(len(x), -1)[:, :4]
    blow_up = LearningRateScheduler(lambda epoch, lr: 0.1 if epoch == 0 else 1e38)
    h = m.fit(xs * 1e3, y, epochs=5, batch_size=16, verbose=0, seed=0, run_dir=d,
              callbacks=[blow_up, TerminateOnNaN()])
    err = capsys.readouterr().err
    assert "TerminateOnNaN" in err and "epoch 2, step" in err
    assert m.stop_reason and "epoch 2" in m.stop_reason
    assert len(h.history["loss"]) == 1  # the broken epoch is not recorded
    with open(os.path.join(d, "latest.json")) as f:
        assert json.load(f)["epoch"] == 1
    assert os.listdir(os.path.join(d, "checkpoints")) == ["epoch-0001"]
    good, state = load_checkpoint(d)
    assert state["epoch"] == 1
    assert all(np.all(np.isfinite(w)) for w in good.get_weights())
    with open(os.path.join(d, "log.csv")) as f:
        assert len(list(csv.DictReader(f))) == 1
