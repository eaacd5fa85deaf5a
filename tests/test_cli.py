"""The ``cnnlab`` command line, mostly in-process through ``cnnlab.cli.main``."""
import io
import json
import os
import re
import shutil
import subprocess
import sys
from contextlib import redirect_stderr, redirect_stdout

import numpy as np
import pytest

from cnnlab import cli
from cnnlab.layers import clear_session
from tests.helpers import one_blas_thread


@pytest.fixture(scope="module", autouse=True)
def _one_blas_thread():
    with one_blas_thread():
        yield


def run(argv):
    """(exit status, stdout, stderr) of ``cnnlab argv``."""
    out, err = io.StringIO(), io.StringIO()
    clear_session()
    with redirect_stdout(out), redirect_stderr(err):
        status = cli.main(argv)
    return status, out.getvalue(), err.getvalue()


def last_json(stdout):
    return json.loads(stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    d = str(tmp_path_factory.mktemp("cli") / "run")
    status, out, err = run(["train", "--epochs", "2", "--out", d, "--verbose", "0", "--json"])
    assert status == 0, err
    return d, last_json(out)


def test_train_json_and_run_dir(trained):
    d, result = trained
    assert {"test_accuracy", "test_loss", "run_dir"} <= set(result)
    assert result["run_dir"] == d
    assert result["model"] == "digits_small" and result["epochs"] == 2
    assert result["test_accuracy"] > 0.8 and np.isfinite(result["test_loss"])
    assert {"run.json", "log.csv", "latest.json", "checkpoints", "best"} <= set(os.listdir(d))
    with open(os.path.join(d, "run.json")) as f:
        run_json = json.load(f)
    assert run_json["model"] == "digits_small" and run_json["data"] == "digits"
    assert run_json["preprocessing"]["mode"] == "scale"
    assert run_json["class_names"] == [str(i) for i in range(10)]
    assert run_json["input_shape"] == [8, 8, 1]
    assert run_json["train"]["epochs"] == 2 and run_json["fit"]["batch_size"] == run_json["train"]["batch_size"]


def test_resume_to_more_epochs(trained, tmp_path):
    d = str(tmp_path / "run")
    shutil.copytree(trained[0], d)
    status, out, err = run(["train", "--resume", d, "--epochs", "3", "--verbose", "0", "--json"])
    assert status == 0, err
    result = last_json(out)
    assert result["epochs"] == 3 and result["run_dir"] == d
    with open(os.path.join(d, "log.csv")) as f:
        assert len(f.read().strip().splitlines()) == 1 + 3
    with open(os.path.join(d, "latest.json")) as f:
        assert json.load(f)["epoch"] == 3


def test_resume_rejects_other_settings(trained):
    status, _, err = run(["train", "--resume", trained[0], "--lr", "0.1"])
    assert status == 2 and err.startswith("cnnlab: error:") and "--resume" in err


def test_evaluate(trained):
    d, result = trained
    status, out, err = run(["evaluate", d, "--json"])
    assert status == 0, err
    ev = last_json(out)
    assert ev["test_accuracy"] == pytest.approx(result["test_accuracy"])
    assert ev["test_loss"] == pytest.approx(result["test_loss"], rel=1e-5)
    assert ev["run_dir"] == d
    cm = np.array(ev["confusion_matrix"])
    assert cm.shape == (10, 10) and cm.sum() == 360
    assert np.trace(cm) / cm.sum() == pytest.approx(ev["test_accuracy"])
    assert "precision" in out and "recall" in out and "Confusion matrix" in out
    assert "macro avg" in out


def test_evaluate_with_test_time_views(trained):
    from cnnlab.datasets import load
    from cnnlab.models import load_model
    from cnnlab.training import predict_tta
    d, result = trained
    status, out, err = run(["evaluate", d, "--tta-flip", "--tta-shift", "1", "--json"])
    assert status == 0, err
    ev = last_json(out)
    assert ev["test_accuracy"] == pytest.approx(result["test_accuracy"])  # the single view is still reported
    ds = load("digits")
    probs = predict_tta(load_model(d), ds.x_test.astype(np.float32) / 255, flip=True, shift=1)
    assert ev["test_accuracy_tta"] == pytest.approx(float((probs.argmax(-1) == ds.y_test).mean()))
    assert "averaged over 10 test-time views" in out
    status, out, err = run(["evaluate", d, "--json"])
    assert last_json(out)["test_accuracy_tta"] is None
    status, out, err = run(["evaluate", d, "--tta-shift", "-1"])
    assert status == 2 and "--tta-shift" in err and "'-1'" in err


def test_predict_png_matches_model(trained, tmp_path):
    from PIL import Image
    from cnnlab.datasets import load
    from cnnlab.models import load_model
    d = trained[0]
    ds = load("digits")
    paths = []
    for i in range(3):
        p = str(tmp_path / f"digit{i}.png")
        Image.fromarray(ds.x_test[i][..., 0]).save(p)
        paths.append(p)
    status, out, err = run(["predict", d, *paths, "--top-k", "3", "--json"])
    assert status == 0, err
    preds = last_json(out)["predictions"]
    model = load_model(d)
    expected = model.predict(ds.x_test[:3].astype(np.float32) / 255).argmax(-1)
    assert len(preds) == 3
    for p, e, path in zip(preds, expected, paths):
        assert p["image"] == path and len(p["top_k"]) == 3
        assert p["top_k"][0]["class"] == str(e) and p["top_k"][0]["index"] == e
        probs = [t["probability"] for t in p["top_k"]]
        assert probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1 + 1e-6
    assert out.splitlines()[0].startswith(paths[0] + ": ")


def test_predict_converts_and_resizes(trained, tmp_path):
    from PIL import Image
    p = str(tmp_path / "big.jpg")
    Image.fromarray(np.full((32, 40, 3), 200, np.uint8)).save(p)
    status, out, err = run(["predict", trained[0], p, "--top-k", "1", "--json"])
    assert status == 0, err
    assert len(last_json(out)["predictions"][0]["top_k"]) == 1


def test_predict_missing_and_bad_image(trained, tmp_path):
    status, _, err = run(["predict", trained[0], str(tmp_path / "nope.png")])
    assert status == 2 and "no such image" in err and "Traceback" not in err
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image")
    status, _, err = run(["predict", trained[0], str(bad)])
    assert status == 2 and "not an image" in err


def test_summary_zoo_model():
    status, out, err = run(["summary", "--model", "digits_small"])
    assert status == 0, err
    assert 'Model: "digits_small"' in out and "Total params" in out


def test_summary_run_dir(trained):
    status, out, _ = run(["summary", trained[0]])
    assert status == 0 and "Total params" in out


TOML = """
name = "tiny"
input_shape = [8, 8, 1]

[[layers]]
class_name = "Conv2D"
filters = 4
kernel_size = 3
activation = "relu"

[[layers]]
type = "Flatten"

[[layers]]
type = "Dense"
units = 10
activation = "softmax"

[compile]
optimizer = "adam"
lr = 0.01

[train]
batch_size = 64
epochs = 1
"""

YAML = """
name: tiny
input_shape: [8, 8, 1]
layers:
  - {class_name: Conv2D, filters: 4, kernel_size: 3, activation: relu}
  - {type: Flatten}
  - {type: Dense, units: 10, activation: softmax}
train:
  batch_size: 64
"""


@pytest.mark.parametrize("ext,text", [("toml", TOML), ("yaml", YAML)])
def test_summary_config_files(tmp_path, ext, text):
    p = tmp_path / f"tiny.{ext}"
    p.write_text(text)
    status, out, err = run(["summary", "--config", str(p)])
    assert status == 0, err
    assert 'Model: "tiny"' in out and "(None, 6, 6, 4)" in out and "Total params: 1,490" in out.replace(" ,", ",")


def _summary(model):
    lines = []
    model.summary(print_fn=lines.append)
    return "\n".join(lines)


@pytest.mark.parametrize("ext", ["toml", "yaml", "yml"])
@pytest.mark.parametrize("name", ["digits_small", "resnet_small"])
def test_config_file_round_trip_same_summary(tmp_path, ext, name):
    from cnnlab import zoo
    from cnnlab.models.config_file import load_config_file, save_config_file
    clear_session()
    model = zoo.get(name).compiled()
    path = tmp_path / f"m.{ext}"
    save_config_file(model, path, train={"batch_size": 16, "epochs": 2})
    clear_session()
    again, over = load_config_file(path)
    assert _summary(again) == _summary(model)
    assert over["batch_size"] == 16 and over["epochs"] == 2
    assert over["optimizer"]["class_name"] == type(model.optimizer).__name__


def test_train_from_config(tmp_path):
    p = tmp_path / "tiny.toml"
    p.write_text(TOML)
    d = str(tmp_path / "run")
    status, out, err = run(["train", "--config", str(p), "--out", d, "--verbose", "0", "--json"])
    assert status == 0, err
    result = last_json(out)
    assert result["epochs"] == 1 and result["model"] == "tiny"
    with open(os.path.join(d, "run.json")) as f:
        run_json = json.load(f)
    assert run_json["train"]["batch_size"] == 64
    assert run_json["train"]["optimizer"]["config"]["learning_rate"] == 0.01
    assert run_json["config_file"] == str(p)
    status, out, _ = run(["evaluate", d, "--json"])
    assert status == 0 and last_json(out)["test_accuracy"] == pytest.approx(result["test_accuracy"])


def test_train_options_override_recipe(tmp_path):
    d = str(tmp_path / "run")
    status, out, err = run(["train", "--model", "digits_small", "--data", "digits", "--epochs", "1",
                            "--batch-size", "64", "--optimizer", "sgd", "--lr", "0.05", "--augment", "shift:1",
                            "--seed", "3", "--validation-split", "0.1", "--out", d, "--verbose", "2", "--json"])
    assert status == 0, err
    assert "Epoch 1/1" in out and "val_loss" in out
    with open(os.path.join(d, "run.json")) as f:
        r = json.load(f)
    assert r["train"]["optimizer"] == {"class_name": "sgd", "config": {"learning_rate": 0.05}}
    assert r["fit"]["batch_size"] == 64 and r["fit"]["seed"] == 3 and r["fit"]["validation_split"] == 0.1
    assert r["fit"]["augment"]["transforms"][0]["name"] == "shift"


def test_unknown_model_suggests(capsys):
    status, out, err = run(["train", "--model", "digits_smal", "--epochs", "1"])
    assert status == 2
    assert err.count("\n") == 1 and err.startswith("cnnlab: error:")
    assert "did you mean 'digits_small'" in err and "Traceback" not in err
    status, _, err = run(["summary", "--model", "lenet"])
    assert status == 2 and "did you mean" in err


@pytest.mark.parametrize("text,match", [
    (TOML.replace("filters = 4", "filtrs = 4"), "did you mean 'filters'"),
    (TOML.replace('type = "Flatten"', 'type = "Flaten"'), "did you mean 'Flatten'"),
    (TOML.replace("[train]", "[training]"), "did you mean 'train'"),
    (TOML.replace("batch_size = 64", "batchsize = 64"), "did you mean 'batch_size'"),
    ("input_shape = [8, 8, 1]\n[[layers]]\nunits = 3\n", "class_name"),
    ("this is = = not toml", "not valid TOML"),
])
def test_bad_config_exit_2(tmp_path, text, match):
    p = tmp_path / "bad.toml"
    p.write_text(text)
    for argv in (["summary", "--config", str(p)], ["train", "--config", str(p), "--epochs", "1"]):
        status, _, err = run(argv)
        assert status == 2, err
        assert match in err and err.count("\n") == 1 and "Traceback" not in err


def test_bad_arguments_exit_2(tmp_path):
    for argv in (["train", "--bogus"], ["train", "--epochs", "x"], ["train", "--verbose", "5"],
                 ["frobnicate"], ["evaluate", str(tmp_path / "missing")], ["summary"],
                 ["train", "--epochs", "1", "--batch-size", "0"],
                 ["train", "--data", str(tmp_path / "nowhere"), "--epochs", "1"],
                 ["train", "--optimizer", "adamm", "--epochs", "1"]):
        status, out, err = run(argv)
        assert status == 2, (argv, err)
        assert err.startswith("cnnlab: error:") and err.count("\n") == 1, (argv, err)


def test_other_failures_exit_1(monkeypatch):
    def boom(args):
        raise RuntimeError("disk on fire")
    monkeypatch.setattr(cli, "cmd_datasets", boom)
    status, _, err = run(["datasets"])
    assert status == 1 and err == "cnnlab: error: RuntimeError: disk on fire\n"


@pytest.mark.parametrize("command", [[], ["train"], ["evaluate"], ["predict"], ["summary"], ["datasets"],
                                     ["visualize"], ["report"]])
def test_help_everywhere(command):
    if command and command[0] in ("visualize", "report"):
        pytest.importorskip("cnnlab.viz.cli")
    status, out, _ = run(command + ["--help"])
    assert status == 0 and "usage: cnnlab" in out


def test_datasets_command():
    status, out, err = run(["datasets", "--json"])
    assert status == 0, err
    rows = last_json(out)["datasets"]
    assert {r["name"] for r in rows} >= {"mnist", "digits", "cifar10"}
    assert re.search(r"^digits\s+not verified\s+\S", out, re.M)


def test_ctrl_c_during_train(tmp_path, monkeypatch):
    import cnnlab.training as training
    from cnnlab.training import Callback
    real_fit = training.fit

    class Interrupt(Callback):
        def on_epoch_begin(self, epoch, logs=None):
            if epoch == 1:
                raise KeyboardInterrupt

    monkeypatch.setattr(training, "fit", lambda *a, **k: real_fit(*a, callbacks=[Interrupt()], **k))
    d = str(tmp_path / "run")
    status, _, err = run(["train", "--epochs", "3", "--out", d, "--verbose", "0"])
    assert status == 130
    assert "epoch-0001" in err and f"cnnlab train --resume {d}" in err
    monkeypatch.undo()
    status, out, err = run(["train", "--resume", d, "--verbose", "0", "--json"])
    assert status == 0, err and last_json(out)["epochs"] == 3


@pytest.mark.slow
def test_default_train_reaches_97_percent(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    status, out, err = run(["train"])
    assert status == 0, err
    acc = float(re.search(r"Test accuracy: ([0-9.]+)", out).group(1))
    assert acc >= 0.97
    (d,) = os.listdir(tmp_path / "runs")
    assert re.fullmatch(r"digits_small-digits-\d{8}-\d{6}", d)


def test_installed_entry_point(tmp_path):
    exe = shutil.which("cnnlab")
    if exe is None:
        pytest.skip("the cnnlab command is not installed (pip install -e .)")
    r = subprocess.run([exe, "summary", "--model", "digits_small"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "Total params" in r.stdout
    r = subprocess.run([exe, "train", "--model", "nope"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and r.stderr.startswith("cnnlab: error:") and "Traceback" not in r.stderr


def test_same_seed_same_weights(tmp_path):
    from cnnlab.models import load_model
    weights = []
    for i, seed in enumerate(("5", "5", "6")):
        d = str(tmp_path / f"run{i}")
        status, _, err = run(["train", "--epochs", "1", "--seed", seed, "--out", d, "--verbose", "0"])
        assert status == 0, err
        weights.append(load_model(d).get_weights())
    assert all(np.array_equal(a, b) for a, b in zip(weights[0], weights[1]))
    assert not all(np.array_equal(a, b) for a, b in zip(weights[0], weights[2]))


BN_TOML = TOML.replace('[[layers]]\ntype = "Flatten"',
                       '[[layers]]\ntype = "BatchNormalization"\nname = "bn"\n\n[[layers]]\ntype = "Flatten"')


@pytest.mark.skipif(not hasattr(os, "fork"), reason="the second process is forked")
@pytest.mark.parametrize("toml", [TOML, BN_TOML], ids=["plain", "batch normalization"])
def test_train_over_two_processes_and_resume_so(tmp_path, toml):
    p = tmp_path / "tiny.toml"
    p.write_text(toml)
    d = str(tmp_path / "run")
    status, out, err = run(["train", "--config", str(p), "--out", d, "--verbose", "0", "--json", "--processes", "2"])
    assert status == 0, err
    assert last_json(out)["test_accuracy"] > 0.5
    status, out, err = run(["train", "--resume", d, "--epochs", "2", "--verbose", "0", "--json", "--processes", "2"])
    assert status == 0, err
    assert last_json(out)["epochs"] == 2


@pytest.mark.skipif(not hasattr(os, "fork"), reason="the second process is forked")
def test_the_default_model_with_its_dropout_trains_over_two_processes(tmp_path):
    status, out, err = run(["train", "--epochs", "2", "--out", str(tmp_path / "run"), "--verbose", "0", "--json",
                            "--processes", "2"])
    assert status == 0, err
    assert last_json(out)["test_accuracy"] > 0.8


def test_processes_without_fork_is_a_usage_error_on_resume_too(tmp_path, monkeypatch):
    p = tmp_path / "tiny.toml"
    p.write_text(TOML)
    d = str(tmp_path / "run")
    status, _, err = run(["train", "--config", str(p), "--out", d, "--verbose", "0"])
    assert status == 0, err
    monkeypatch.delattr(os, "fork", raising=False)
    for argv in (["train", "--config", str(p), "--out", str(tmp_path / "run2")],
                 ["train", "--resume", d, "--epochs", "2"]):
        status, _, err = run(argv + ["--verbose", "0", "--processes", "2"])
        assert status == 2
        assert "--processes 2: training over processes forks a child process: this platform has no os.fork" in err
