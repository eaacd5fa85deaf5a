"""The visualize/report subcommands, run loading and the HTML report (rendered by headless Chromium)."""
import argparse
import os
import re
import shutil
import subprocess

import numpy as np
import pytest

from cnnlab import viz
from cnnlab.viz.cli import KINDS, add_subcommands, main
from tests.viz.conftest import assert_not_blank, png_array


@pytest.fixture(scope="module")
def report(digits_run, tmp_path_factory):
    """The report written by ``cnnlab report RUN_DIR --out FILE`` (built once for the module)."""
    run_dir, _, _ = digits_run
    out = tmp_path_factory.mktemp("report") / "sub" / "page.html"
    assert main(["report", str(run_dir), "--out", str(out)]) == 0
    assert out.stat().st_size > 50_000
    return str(out)


def test_add_subcommands_to_a_parser(digits_run):
    parser = argparse.ArgumentParser(prog="cnnlab")
    add_subcommands(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["visualize", "RUN", "--what", "gradcam", "--layer", "conv_a", "--image", "3"])
    assert (args.run_dir, args.what, args.layer, args.image) == ("RUN", "gradcam", "conv_a", "3")
    assert callable(args.func)
    args = parser.parse_args(["report", "RUN", "--out", "x.html"])
    assert args.out == "x.html" and callable(args.func)
    with pytest.raises(SystemExit):
        parser.parse_args(["visualize", "RUN", "--what", "nonsense"])


def test_visualize_all_kinds(digits_run, tmp_path, capsys):
    run_dir, _, _ = digits_run
    out = tmp_path / "png"
    assert main(["visualize", str(run_dir), "--what", "all", "--out", str(out)]) == 0
    written = sorted(os.listdir(out))
    assert written == sorted(f"{k}.png" for k in KINDS)
    for name in written:
        assert_not_blank(out / name)
    assert capsys.readouterr().out.count(".png") == len(KINDS)


def test_main_cli_dispatches_to_viz(digits_run, tmp_path):
    cli = pytest.importorskip("cnnlab.cli")
    run_dir, _, _ = digits_run
    out = tmp_path / "png"
    assert cli.main(["visualize", str(run_dir), "--what", "curves", "--out", str(out)]) == 0
    assert_not_blank(out / "curves.png")
    assert cli.main(["visualize", str(run_dir), "--what", "kernels", "--image", "100000", "--out", str(out)]) == 2


def test_visualize_layer_and_image_file(digits_run, tmp_path):
    from PIL import Image
    run_dir, _, ds = digits_run
    img = tmp_path / "seven.png"
    Image.fromarray(ds.x_test[5][..., 0]).resize((32, 32)).save(img)
    out = tmp_path / "png"
    assert main(["visualize", str(run_dir), "--what", "feature-maps", "--layer", "conv_b", "--image", str(img),
                 "--out", str(out)]) == 0
    assert main(["visualize", str(run_dir), "--what", "saliency", "--image", "7", "--out", str(out)]) == 0
    assert sorted(os.listdir(out)) == ["feature-maps_conv_b.png", "saliency.png"]
    assert main(["visualize", str(run_dir), "--what", "kernels", "--image", str(tmp_path / "missing.png"),
                 "--out", str(out)]) == 2


def test_load_run_reads_run_json_and_falls_back(digits_run, tmp_path):
    run_dir, model, ds = digits_run
    m, config, data = viz.load_run(run_dir)
    assert config["data"] == "digits" and config["class_names"] == ds.class_names
    assert config["preprocess"].mode == "scale" and data is not None
    np.testing.assert_allclose(config["preprocess"](ds.x_test[:2]), ds.x_test[:2] / 255.0, rtol=1e-6)
    x = config["preprocess"](ds.x_test[:20])
    np.testing.assert_allclose(m.predict_on_batch(x), model.predict_on_batch(x), rtol=1e-5, atol=1e-6)
    bare = tmp_path / "bare"
    shutil.copytree(run_dir, bare)
    os.remove(bare / "run.json")
    _, config, data = viz.load_run(bare)
    assert config["data"] == "digits" and config["data_guessed"] and data is not None
    assert config["preprocess"].mode == "scale"
    (bare / "run.json").write_text('{"data": "no-such-set", "preprocessing": {"mode": "standardize", '
                                   '"mean": [8.0], "std": [2.0]}}')
    with pytest.warns(UserWarning, match="no-such-set"):
        _, config, data = viz.load_run(bare)
    assert data is None and config["class_names"] == [str(i) for i in range(10)]
    np.testing.assert_allclose(config["preprocess"](np.full((1, 8, 8, 1), 12)), 2.0)


def test_report_is_self_contained(report):
    text = open(report, encoding="utf-8").read()
    assert text.startswith("<!DOCTYPE html>")
    uris = re.findall(r'<img [^>]*src="data:image/png;base64,([A-Za-z0-9+/=]+)"', text)
    assert len(uris) >= 8  # curves, confusion, mistakes, 2 filters, 3 feature maps, saliency, grad-cam, patches
    assert text.count('<img src="data:image/png;base64,') + text.count('src="data:image/png;base64,') >= 8
    stripped = re.sub(r"data:image/png;base64,[A-Za-z0-9+/=]+", "", text)
    assert "http" not in stripped.lower()
    assert not re.search(r"<(script|link)\b", stripped, re.I)
    assert "//" not in re.sub(r"<pre>.*?</pre>", "", stripped, flags=re.S).replace("<!DOCTYPE", "")
    for needle in ("conv_a (Conv2D)", "Total params", "test accuracy", "Training curves", "Grad-CAM"):
        assert needle in text
    import base64
    import io

    from PIL import Image
    for u in uris:
        with Image.open(io.BytesIO(base64.b64decode(u))) as im:
            assert im.format == "PNG" and np.asarray(im.convert("L")).std() > 0


@pytest.mark.skipif(shutil.which("chromium") is None, reason="chromium is not installed (apt-get install chromium)")
def test_report_renders_in_headless_chromium(report, tmp_path):
    shot = tmp_path / "shot.png"
    cmd = ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           f"--user-data-dir={tmp_path / 'profile'}", f"--screenshot={shot}", "--window-size=1200,2000",
           "file://" + os.path.abspath(report)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=90)
    assert shot.is_file(), f"no screenshot; chromium said:\n{proc.stderr[-2000:]}"
    a = png_array(shot)
    assert a.shape[:2] == (2000, 1200)
    colors = len(np.unique(a.reshape(-1, 3), axis=0))
    assert colors > 500, f"the rendered report looks blank ({colors} colours)"
    # the images were decoded: the plots' blues and oranges appear, not only page chrome
    assert (a.std(axis=2) > 40).mean() > 0.005
