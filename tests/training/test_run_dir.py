"""Run directories: layout, pruning, crash safety, corruption detection, architecture checks, SIGKILL."""
import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

import cnnlab.io as cio
from cnnlab.io import CorruptFileError
from cnnlab.models import load_model
from cnnlab.training import Callback, latest_checkpoint, load_checkpoint
from cnnlab.training import checkpoint as ckpt

from .conftest import make_model

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _fit(model, x, y, epochs, d, **kw):
    return model.fit(x, y, batch_size=16, epochs=epochs, verbose=0, seed=0, validation_split=0.25,
                     run_dir=d, **kw)


def _pointer(d):
    with open(os.path.join(d, "latest.json")) as f:
        return json.load(f)


def _tree_digest(path):
    h = hashlib.sha256()
    for root, dirs, files in sorted(os.walk(path)):
        dirs.sort()
        for name in sorted(files):
            with open(os.path.join(root, name), "rb") as f:
                h.update(name.encode() + f.read())
    return h.hexdigest()


def _same(a, b):
    return all(np.array_equal(u, v) for u, v in zip(a.get_weights(), b.get_weights()))


def test_layout_and_keep_last_three(tmp_path, data):
    x, y = data
    d = str(tmp_path / "run")
    _fit(make_model(), x, y, 5, d)
    assert {"run.json", "log.csv", "latest.json", "checkpoints", "best"} <= set(os.listdir(d))
    assert sorted(os.listdir(os.path.join(d, "checkpoints"))) == ["epoch-0003", "epoch-0004", "epoch-0005"]
    assert _pointer(d) == {"checkpoint": os.path.join("checkpoints", "epoch-0005"), "epoch": 5}
    for c in os.listdir(os.path.join(d, "checkpoints")):
        assert set(os.listdir(os.path.join(d, "checkpoints", c))) == {
            "config.json", "model.safetensors", "optimizer.safetensors", "training_state.json", "manifest.json"}
    best_epoch = int(np.argmin(json.load(open(os.path.join(d, "checkpoints", "epoch-0005", "training_state.json")))
                               ["callbacks"]["0:History"]["history"]["val_loss"])) + 1
    best = load_model(os.path.join(d, "best"))
    assert json.loads(open(os.path.join(d, "best", "training_state.json")).read())["epoch"] == best_epoch
    assert best.count_params() > 0
    with open(os.path.join(d, "run.json")) as f:
        assert json.load(f)["fit"]["epochs"] == 5
    assert latest_checkpoint(d).endswith("epoch-0005")


def _interrupt_on_nth_hash(monkeypatch, at_epoch, n, exc=KeyboardInterrupt):
    """From the start of epoch ``at_epoch`` (0-based), raise on the ``n``-th file hashed by a write."""
    real = cio.sha256_bytes
    count = {"armed": False, "n": 0}

    def hashed(data):
        if count["armed"]:
            count["n"] += 1
            if count["n"] == n:
                raise exc()
        return real(data)

    monkeypatch.setattr(cio, "sha256_bytes", hashed)

    class Arm(Callback):
        def on_epoch_begin(self, epoch, logs=None):
            count["armed"] = epoch == at_epoch

    return Arm()


@pytest.mark.parametrize("n", [1, 3])
def test_crash_inside_write_checked_dir_keeps_previous(tmp_path, data, monkeypatch, n):
    x, y = data
    d = str(tmp_path / "run")
    _fit(make_model(), x, y, 2, d)
    before = _tree_digest(os.path.join(d, "checkpoints", "epoch-0002"))
    arm = _interrupt_on_nth_hash(monkeypatch, at_epoch=2, n=n)
    with pytest.raises(KeyboardInterrupt):
        _fit(make_model(), x, y, 4, d, resume=True, callbacks=[arm])
    monkeypatch.undo()
    assert _pointer(d)["epoch"] == 2
    assert sorted(os.listdir(os.path.join(d, "checkpoints"))) == ["epoch-0001", "epoch-0002"]  # no temp dirs
    assert _tree_digest(os.path.join(d, "checkpoints", "epoch-0002")) == before
    model, state = load_checkpoint(d)
    assert state["epoch"] == 2
    # and resuming after the crash still matches an uninterrupted run exactly
    ref = make_model()
    _fit(ref, x, y, 4, str(tmp_path / "ref"))
    m = make_model()
    h = _fit(m, x, y, 4, d, resume=True)
    assert _same(m, ref) and len(h.history["loss"]) == 4
    with open(os.path.join(d, "log.csv")) as f:
        assert len(f.read().strip().splitlines()) == 1 + 4


def test_stale_temp_dirs_are_cleaned(tmp_path, data):
    x, y = data
    d = str(tmp_path / "run")
    _fit(make_model(), x, y, 1, d)
    stale = os.path.join(d, "checkpoints", ".epoch-0002.tmp-abc123")
    os.makedirs(stale)
    open(os.path.join(stale, "model.safetensors"), "wb").close()
    _fit(make_model(), x, y, 2, d, resume=True)
    assert sorted(os.listdir(os.path.join(d, "checkpoints"))) == ["epoch-0001", "epoch-0002"]


def test_interrupt_before_pointer_moves(tmp_path, data, monkeypatch):
    x, y = data
    d = str(tmp_path / "run")
    _fit(make_model(), x, y, 1, d)

    def boom(path, obj):
        raise KeyboardInterrupt

    class Arm(Callback):
        def on_epoch_begin(self, epoch, logs=None):
            if epoch == 1:
                monkeypatch.setattr(ckpt, "atomic_write_json", boom)

    with pytest.raises(KeyboardInterrupt):
        _fit(make_model(), x, y, 3, d, resume=True, callbacks=[Arm()])
    monkeypatch.undo()
    assert _pointer(d)["epoch"] == 1
    assert load_checkpoint(d)[1]["epoch"] == 1


def _damage(path, how):
    with open(path, "rb") as f:
        data = bytearray(f.read())
    if how == "truncate":
        data = data[: len(data) // 2]
    else:
        data[len(data) - 3] ^= 0x01
    with open(path, "wb") as f:
        f.write(data)


@pytest.mark.parametrize("how", ["truncate", "flip"])
def test_corrupt_newest_checkpoint_falls_back(tmp_path, data, how):
    x, y = data
    d = str(tmp_path / "run")
    _fit(make_model(), x, y, 3, d)
    newest = os.path.join(d, "checkpoints", "epoch-0003")
    previous = os.path.join(d, "checkpoints", "epoch-0002")
    _damage(os.path.join(newest, "model.safetensors"), how)
    with pytest.warns(UserWarning, match="skipping a bad checkpoint.*checksum mismatch"):
        model = load_model(d)
    assert _same(model, load_model(previous))
    with pytest.warns(UserWarning):
        _, state = load_checkpoint(d)
    assert state["epoch"] == 2
    with pytest.raises(CorruptFileError, match="model.safetensors: checksum mismatch.*truncated or corrupted"):
        load_model(newest)
    with pytest.raises(CorruptFileError, match="checksum mismatch"):
        load_checkpoint(newest)
    # fit(resume=True) continues from epoch 2 with a warning
    with pytest.warns(UserWarning):
        h = _fit(make_model(), x, y, 3, d, resume=True)
    assert len(h.history["loss"]) == 3


def test_all_checkpoints_corrupt(tmp_path, data):
    x, y = data
    d = str(tmp_path / "run")
    _fit(make_model(), x, y, 1, d)
    _damage(os.path.join(d, "checkpoints", "epoch-0001", "model.safetensors"), "flip")
    with pytest.raises(CorruptFileError, match="no loadable checkpoint"):
        load_model(d)


def test_missing_manifest_is_refused(tmp_path, data):
    x, y = data
    d = str(tmp_path / "run")
    _fit(make_model(), x, y, 1, d)
    c = os.path.join(d, "checkpoints", "epoch-0001")
    os.remove(os.path.join(c, "manifest.json"))
    with pytest.raises(CorruptFileError, match="no manifest.json"):
        load_model(c)


def test_other_architecture_refused_model_unchanged(tmp_path, data):
    x, y = data
    d = str(tmp_path / "run")
    _fit(make_model(), x, y, 1, d)
    other = make_model(bn=False)
    before = [w.copy() for w in other.get_weights()]
    with pytest.raises(ValueError, match="different architecture"):
        _fit(other, x, y, 2, d, resume=True)
    assert all(np.array_equal(a, b) for a, b in zip(before, other.get_weights()))
    wider = make_model(classes=3)
    from cnnlab import layers as L
    from cnnlab.models import Sequential
    wider = Sequential([L.Input((6, 6, 1)), L.Conv2D(8, 3, padding="same", activation="relu"),
                        L.BatchNormalization(), L.Flatten(), L.Dropout(0.3), L.Dense(3, activation="softmax")])
    wider.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    before = [w.copy() for w in wider.get_weights()]
    with pytest.raises(ValueError, match="shape.*different architecture"):
        _fit(wider, x, y, 2, d, resume=True)
    assert all(np.array_equal(a, b) for a, b in zip(before, wider.get_weights()))


SCRIPT = textwrap.dedent("""
    import sys
    import numpy as np
    sys.path.insert(0, {root!r})
    from cnnlab import layers as L
    from cnnlab.models import Sequential
    rng = np.random.default_rng(0)
    x = rng.normal(size=(512, 8, 8, 1)).astype("float32")
    y = rng.integers(0, 4, 512)
    m = Sequential([L.Input((8, 8, 1)), L.Conv2D(8, 3, padding="same", activation="relu"),
                    L.BatchNormalization(), L.Flatten(), L.Dropout(0.2), L.Dense(4, activation="softmax")])
    m.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    m.fit(x, y, batch_size=32, epochs=10000, verbose=0, seed=0, run_dir=sys.argv[1])
""")


def test_sigkill_at_random_moments(tmp_path):
    script = tmp_path / "train.py"
    script.write_text(SCRIPT.format(root=ROOT))
    rnd = random.Random()
    for trial in range(3):
        d = str(tmp_path / f"run{trial}")
        p = subprocess.Popen([sys.executable, str(script), d], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            deadline = time.time() + 20
            while not os.path.exists(os.path.join(d, "latest.json")):
                assert p.poll() is None, p.stderr.read().decode()
                assert time.time() < deadline, "no checkpoint after 20 s"
                time.sleep(0.01)
            time.sleep(rnd.uniform(0, 0.4))
        finally:
            p.send_signal(signal.SIGKILL)
            p.wait()
        model, state = load_checkpoint(d)
        assert state["epoch"] >= 1
        assert _pointer(d)["epoch"] == state["epoch"]
        # 3 kept, plus at most one being pruned when the kill came
        assert len([n for n in os.listdir(os.path.join(d, "checkpoints")) if not n.startswith(".")]) <= 4
        assert all(np.all(np.isfinite(w)) for w in model.get_weights())
