"""fit(): history, validation, determinism, initial_epoch, progress output, augmentation."""
import re

import numpy as np
import pytest

from cnnlab.datasets import augment

from .conftest import make_model


def test_history_keys_and_lengths(data):
    x, y = data
    m = make_model()
    h = m.fit(x, y, batch_size=16, epochs=3, validation_split=0.25, verbose=0, seed=0)
    assert set(h.history) == {"loss", "accuracy", "val_loss", "val_accuracy", "learning_rate"}
    assert all(len(v) == 3 for v in h.history.values())
    assert h.epoch == [0, 1, 2]
    assert m.history is h
    assert h.history["learning_rate"] == [pytest.approx(0.01)] * 3
    assert h.history["loss"][-1] < h.history["loss"][0]


def test_no_validation_no_val_keys(data):
    x, y = data
    h = make_model().fit(x, y, epochs=1, verbose=0, seed=0)
    assert set(h.history) == {"loss", "accuracy", "learning_rate"}


def test_validation_split_takes_the_last_fraction(data):
    x, y = data
    a = make_model().fit(x, y, batch_size=16, epochs=2, validation_split=0.25, verbose=0, seed=1)
    n = int(len(x) * 0.25)
    b = make_model().fit(x[:-n], y[:-n], batch_size=16, epochs=2, validation_data=(x[-n:], y[-n:]),
                         verbose=0, seed=1)
    assert a.history == b.history


def test_validation_data_is_evaluated_like_evaluate(data):
    x, y = data
    m = make_model(dropout=False)
    h = m.fit(x[:64], y[:64], epochs=1, validation_data=(x[64:], y[64:]), verbose=0, seed=0)
    loss, acc = m.evaluate(x[64:], y[64:])
    assert h.history["val_loss"][0] == pytest.approx(loss, rel=1e-6)
    assert h.history["val_accuracy"][0] == pytest.approx(acc)


@pytest.mark.parametrize("bad", [1.0, -0.1, 0.001])
def test_validation_split_out_of_range(data, bad):
    x, y = data
    with pytest.raises(ValueError, match="validation_split"):
        make_model().fit(x, y, validation_split=bad, verbose=0)


def test_shuffle_determinism_under_seed(data):
    x, y = data
    w = []
    for seed in (7, 7, 8):
        m = make_model()
        m.fit(x, y, batch_size=16, epochs=2, verbose=0, seed=seed)
        w.append(m.get_weights())
    assert all(np.array_equal(a, b) for a, b in zip(w[0], w[1]))
    assert not all(np.array_equal(a, b) for a, b in zip(w[0], w[2]))


def test_no_shuffle_ignores_seed(data):
    x, y = data
    w = []
    for seed in (1, 2):
        m = make_model(dropout=False)
        m.fit(x, y, batch_size=16, epochs=1, verbose=0, shuffle=False, seed=seed)
        w.append(m.get_weights())
    assert all(np.array_equal(a, b) for a, b in zip(*w))


def test_initial_epoch(data, capsys):
    x, y = data
    h = make_model().fit(x, y, epochs=3, initial_epoch=1, verbose=2, seed=0)
    assert h.epoch == [1, 2]
    out = capsys.readouterr().out
    assert "Epoch 2/3" in out and "Epoch 3/3" in out and "Epoch 1/3" not in out


def test_verbose_1_progress_bar(data, capsys):
    x, y = data
    make_model().fit(x, y, batch_size=16, epochs=2, verbose=1, seed=0)
    out = capsys.readouterr().out
    assert "Epoch 1/2" in out and "Epoch 2/2" in out
    assert "samples/s" in out
    assert "ETA" in out
    assert re.search(r"6/6 \[=+\]", out)
    assert "loss:" in out and "accuracy:" in out


def test_verbose_2_one_line_per_epoch(data, capsys):
    x, y = data
    make_model().fit(x, y, batch_size=16, epochs=3, verbose=2, seed=0, validation_split=0.25)
    lines = [l for l in capsys.readouterr().out.splitlines() if l.strip()]
    assert len(lines) == 3
    for i, line in enumerate(lines):
        assert line.startswith(f"Epoch {i + 1}/3")
        assert "samples/s" in line and "val_loss" in line and "\r" not in line


def test_verbose_0_silent(data, capsys):
    x, y = data
    make_model().fit(x, y, epochs=2, verbose=0, seed=0)
    assert capsys.readouterr().out == ""


class Recorder:
    def __init__(self, inner):
        self.inner, self.calls, self.sizes = inner, 0, []

    def __call__(self, x, rng):
        self.calls += 1
        self.sizes.append(len(x))
        return self.inner(x, rng)

    def get_config(self):
        return self.inner.get_config()


def test_augment_applied_to_every_batch(data):
    x, y = data
    rec = Recorder(augment.parse("shift:1"))
    m = make_model()
    m.fit(x, y, batch_size=32, epochs=2, verbose=0, seed=0, augment=rec)
    assert rec.calls == 6 and sum(rec.sizes) == 2 * len(x)
    plain = make_model()
    plain.fit(x, y, batch_size=32, epochs=2, verbose=0, seed=0)
    assert not all(np.array_equal(a, b) for a, b in zip(m.get_weights(), plain.get_weights()))


def test_augment_that_blanks_inputs_changes_training(data):
    """The model really trains on the augmented batch: on all-zero inputs every sample gets the same
    prediction, so training accuracy cannot beat the most frequent class."""
    x, y = data
    m = make_model(dropout=False, bn=False)
    h = m.fit(x, y, batch_size=16, epochs=5, verbose=0, seed=0, augment=lambda b, rng: np.zeros_like(b))
    assert max(h.history["accuracy"]) <= np.bincount(y).max() / len(y) + 1e-9
    h = make_model(dropout=False, bn=False).fit(x, y, batch_size=16, epochs=5, verbose=0, seed=0)
    assert h.history["accuracy"][-1] > 0.9


def test_steps_per_epoch(data):
    x, y = data
    rec = Recorder(augment.parse("none"))
    make_model().fit(x, y, batch_size=16, epochs=2, steps_per_epoch=2, verbose=0, seed=0, augment=rec)
    assert rec.calls == 4


def test_empty_and_mismatched_data():
    m = make_model()
    with pytest.raises(ValueError, match="empty"):
        m.fit(np.zeros((0, 6, 6, 1)), np.zeros(0), verbose=0)
    with pytest.raises(ValueError, match="samples"):
        m.fit(np.zeros((4, 6, 6, 1)), np.zeros(3), verbose=0)


def test_predict_tta_is_the_mean_over_shifted_and_mirrored_views():
    from cnnlab.layers import Conv2D, Dense, Flatten, Input
    from cnnlab.models import Sequential
    from cnnlab.training import predict_tta, tta_views
    model = Sequential([Input((5, 6, 2)), Conv2D(3, (2, 3)), Flatten(), Dense(4, activation="softmax")])
    x = np.random.default_rng(0).random((7, 5, 6, 2), dtype=np.float32)

    def moved(a, dy, dx):  # pad with zeros, then crop the window that the move brings into view
        p = np.pad(a, ((0, 0), (1, 1), (1, 1), (0, 0)))
        return p[:, 1 - dy:1 - dy + a.shape[1], 1 - dx:1 - dx + a.shape[2]]

    views = [moved(x, dy, dx) for dy, dx in [(0, 0), (-1, 0), (1, 0), (0, -1), (0, 1)]]
    views += [v[:, :, ::-1] for v in views]
    expected = np.mean([model.predict(v) for v in views], axis=0)
    out = predict_tta(model, x, flip=True, shift=1, batch_size=3)
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-7)
    assert len(tta_views(True, 1)) == 10 and len(tta_views(False, 2)) == 5 and tta_views(False, 0) == [(0, 0, False)]
    assert np.array_equal(predict_tta(model, x, flip=False), model.predict(x))  # one view: the plain prediction
    shifted_only = np.mean([model.predict(v) for v in views[:5]], axis=0)
    np.testing.assert_allclose(predict_tta(model, x, flip=False, shift=1), shifted_only, rtol=1e-5, atol=1e-7)
    assert not np.allclose(out, model.predict(x), atol=1e-4)  # the views do change the answer
    with pytest.raises(ValueError, match="shift.*-1"):
        predict_tta(model, x, shift=-1)


def test_predict_flip_averaged_is_the_mean_over_the_mirror_image():
    from cnnlab.layers import Conv2D, Dense, Flatten, Input
    from cnnlab.models import Sequential
    from cnnlab.training import predict_flip_averaged
    model = Sequential([Input((4, 5, 2)), Conv2D(3, (2, 3)), Flatten(), Dense(4, activation="softmax")])
    x = np.random.default_rng(0).random((6, 4, 5, 2), dtype=np.float32)
    out = predict_flip_averaged(model, x, batch_size=4)
    mirrored = x[:, :, ::-1]
    np.testing.assert_allclose(out, (model.predict(x) + model.predict(mirrored)) / 2, rtol=1e-6)
    assert not np.allclose(model.predict(x), model.predict(mirrored))  # the model itself is not mirror-symmetric
    assert np.array_equal(out, predict_flip_averaged(model, mirrored))  # a + b == b + a exactly
    with pytest.raises(ValueError, match=r"\(N, H, W, C\).*\(4, 5, 2\)"):
        predict_flip_averaged(model, x[0])
