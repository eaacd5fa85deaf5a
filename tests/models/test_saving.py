"""save/load_model, save_weights/load_weights, architecture mismatches, checksums, and no pickle."""
import json
import os
import pathlib
import re

import numpy as np
import pytest

import cnnlab
from cnnlab import layers as L
from cnnlab import optimizers
from cnnlab.io import CorruptFileError
from cnnlab.models import Model, Sequential, load_model
from tests.helpers import assert_close, rand


def seq_model(seed=0, units=3):
    from cnnlab.random import set_random_seed
    set_random_seed(seed)
    return Sequential([L.Input((6, 6, 2)), L.Conv2D(4, 3, padding="same", activation="relu"),
                       L.BatchNormalization(), L.MaxPooling2D(), L.Flatten(), L.Dense(units, activation="softmax")])


def func_model(seed=0):
    from cnnlab.random import set_random_seed
    set_random_seed(seed)
    inp = L.Input((6, 6, 2))
    a = L.Conv2D(2, 3, padding="same", activation="relu")(inp)
    s = L.Add()([a, inp])
    c = L.Concatenate()([s, L.Conv2D(3, 1)(inp)])
    return Model(inp, L.Dense(3, activation="softmax")(L.GlobalAveragePooling2D()(c)), name="func")


def data(n=8):
    return rand((n, 6, 6, 2), 1), np.arange(n) % 3


def trained(model, opt=None, steps=2, metrics=("accuracy",)):
    model.compile(opt or optimizers.Adam(0.01), "sparse_categorical_crossentropy", metrics=list(metrics))
    x, y = data()
    for _ in range(steps):
        model.train_on_batch(x, y)
    return model


@pytest.mark.parametrize("make", [seq_model, func_model])
def test_save_load_round_trip(tmp_path, make):
    m = trained(make(), optimizers.SGD(0.05, momentum=0.9))
    path = tmp_path / "saved"
    m.save(path)
    assert sorted(os.listdir(path)) == ["config.json", "manifest.json", "model.safetensors", "optimizer.safetensors"]
    m2 = load_model(path)
    assert type(m2) is type(m) and m2.name == m.name
    assert m2.get_config() == m.get_config()
    assert [l.name for l in m2.layers] == [l.name for l in m.layers]
    for (k, a), b in zip(m.named_weights().items(), m2.named_weights().values()):
        np.testing.assert_array_equal(a, b, err_msg=k)
    x, y = data()
    np.testing.assert_array_equal(m2.predict(x), m.predict(x))
    # compile config and optimizer state
    assert type(m2.optimizer) is optimizers.SGD and m2.optimizer.get_config() == m.optimizer.get_config()
    assert m2.loss.get_config() == m.loss.get_config() and [x.name for x in m2.metrics] == ["accuracy"]
    s1, s2 = m.optimizer.get_state(), m2.optimizer.get_state()
    assert set(s1) == set(s2) and int(s2["iterations"]) == 2
    for k in s1:
        np.testing.assert_array_equal(s1[k], s2[k], err_msg=k)
    # training goes on identically (momentum included)
    r1, r2 = m.train_on_batch(x, y), m2.train_on_batch(x, y)
    assert r1 == r2
    for a, b in zip(m.get_weights(), m2.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_config_json_content(tmp_path):
    m = trained(seq_model(), optimizers.Adam(0.003))
    m.save(tmp_path / "m")
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    assert config["cnnlab_version"] == cnnlab.__version__
    assert config["model"]["class_name"] == "Sequential"
    assert config["compile"]["loss"]["name"] == "sparse_categorical_crossentropy"
    assert config["compile"]["optimizer"]["config"]["learning_rate"] == pytest.approx(0.003)


def test_save_without_optimizer_and_uncompiled(tmp_path):
    m = trained(seq_model())
    m.save(tmp_path / "a", include_optimizer=False)
    assert "optimizer.safetensors" not in os.listdir(tmp_path / "a")
    m2 = load_model(tmp_path / "a")
    assert m2.compiled and m2.optimizer.iterations == 0
    m3 = load_model(tmp_path / "a", compile=False)
    assert not m3.compiled
    u = seq_model()
    u.save(tmp_path / "u")
    u2 = load_model(tmp_path / "u")
    assert not u2.compiled
    x, _ = data()
    np.testing.assert_array_equal(u2.predict(x), u.predict(x))


def test_save_overwrites(tmp_path):
    m = trained(seq_model())
    m.save(tmp_path / "m")
    m.train_on_batch(*data())
    m.save(tmp_path / "m")
    x, _ = data()
    np.testing.assert_array_equal(load_model(tmp_path / "m").predict(x), m.predict(x))
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".")]  # no temporary leftovers


def test_save_load_weights(tmp_path):
    from cnnlab.layers import clear_session
    clear_session()
    a = trained(seq_model(0))
    a.save_weights(tmp_path / "w.safetensors")
    clear_session()
    b = seq_model(1)  # same names after clear_session; different values
    a_names = list(a.named_weights())
    assert list(b.named_weights()) == a_names
    assert not np.array_equal(a.get_weights()[0], b.get_weights()[0])
    b.load_weights(tmp_path / "w.safetensors")
    for x_, y_ in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_array_equal(x_, y_)


def test_load_into_different_architecture_fails_untouched(tmp_path):
    from cnnlab.layers import clear_session
    clear_session()
    a = trained(seq_model(0, units=3))
    a.save(tmp_path / "m")
    a.save_weights(tmp_path / "w.safetensors")
    clear_session()
    other = seq_model(1, units=5)  # same layer names, the head has a different shape
    before = other.get_weights()
    with pytest.raises(ValueError, match=r"weight 'dense/kernel' has shape \(36, 3\), the model expects \(36, 5\)"):
        other.load_weights(tmp_path / "w.safetensors")
    clear_session()
    f = func_model(2)  # different layers altogether
    f_before = f.get_weights()
    with pytest.raises(ValueError, match=r"do not match model 'func'.*missing.*unexpected.*different architecture"):
        f.load_weights(tmp_path / "w.safetensors")
    for x_, y_ in zip(before, other.get_weights()):
        np.testing.assert_array_equal(x_, y_)
    for x_, y_ in zip(f_before, f.get_weights()):
        np.testing.assert_array_equal(x_, y_)


def _files(path):
    return {p.name: p for p in pathlib.Path(path).iterdir()}


def test_truncated_or_edited_files_are_refused(tmp_path):
    m = trained(seq_model())
    m.save(tmp_path / "m")
    weights = tmp_path / "m" / "model.safetensors"
    data_ = weights.read_bytes()
    weights.write_bytes(data_[:-10])
    with pytest.raises(CorruptFileError, match="model.safetensors.*checksum mismatch"):
        load_model(tmp_path / "m")
    edited = bytearray(data_)
    edited[-5] ^= 0x01  # one bit of one weight
    weights.write_bytes(bytes(edited))
    with pytest.raises(CorruptFileError, match="checksum"):
        load_model(tmp_path / "m")
    weights.write_bytes(data_)
    load_model(tmp_path / "m")  # intact again
    (tmp_path / "m" / "config.json").write_text("{}")
    with pytest.raises(CorruptFileError, match="config.json"):
        load_model(tmp_path / "m")
    (tmp_path / "m" / "manifest.json").unlink()
    with pytest.raises(CorruptFileError, match="manifest"):
        load_model(tmp_path / "m")
    with pytest.raises(FileNotFoundError):
        load_model(tmp_path / "nope")


def test_load_weights_garbage(tmp_path):
    m = seq_model()
    (tmp_path / "junk").write_bytes(b"\x80\x04not safetensors")
    before = m.get_weights()
    with pytest.raises(CorruptFileError, match="not a readable safetensors"):
        m.load_weights(tmp_path / "junk")
    for x_, y_ in zip(before, m.get_weights()):
        np.testing.assert_array_equal(x_, y_)


def test_no_pickle_in_the_package():
    root = pathlib.Path(cnnlab.__file__).parent
    offenders = []
    for path in root.rglob("*.py"):
        rel = path.relative_to(root).as_posix()
        text = path.read_text()
        if re.search(r"(?<![\w.])pickle\.loads?\(|pickle\.Unpickler|import pickle|from pickle|np\.load\([^)]*allow_pickle=True", text) \
                and rel != "datasets/safe_pickle.py":
            offenders.append(rel)
    assert offenders == []
    # and the saved files are JSON + safetensors only
    assert cnnlab.models.saving.__doc__ and "Never pickle" in cnnlab.models.saving.__doc__


def test_load_weights_into_the_same_architecture_built_under_other_names(tmp_path):
    # A second model built in one process gets conv2d_1, dense_1...: weights still load, by position.
    a = seq_model(seed=0)
    b = seq_model(seed=1)
    assert [l.name for l in a.layers] != [l.name for l in b.layers]
    a.save_weights(tmp_path / "w.safetensors")
    b.load_weights(tmp_path / "w.safetensors")
    assert all(np.array_equal(u, v) for u, v in zip(a.get_weights(), b.get_weights()))
    x = data()[0]
    assert np.array_equal(a.predict(x), b.predict(x))


def test_load_weights_by_position_still_refuses_other_shapes(tmp_path):
    a = seq_model(seed=0, units=3)
    c = seq_model(seed=1, units=4)
    before = c.get_weights()
    a.save_weights(tmp_path / "w.safetensors")
    with pytest.raises(ValueError, match="shape"):
        c.load_weights(tmp_path / "w.safetensors")
    assert all(np.array_equal(u, v) for u, v in zip(before, c.get_weights()))
