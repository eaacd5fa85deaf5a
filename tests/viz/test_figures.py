"""Pictures: right grid sizes, real content, and the numbers behind them."""
import matplotlib
import numpy as np
import pytest

from cnnlab import viz
from cnnlab.metrics import confusion_matrix
from cnnlab.ops import activations as act_ops
from tests.viz.conftest import assert_not_blank, png_array


def x_test(ds):
    return (ds.x_test / 255.0).astype(np.float32)


def test_agg_backend_and_save(tmp_path):
    assert matplotlib.get_backend().lower() == "agg"
    fig = viz.plot_kernels(np.random.default_rng(0).random((6, 6, 3)))
    path = viz.save(fig, tmp_path / "sub" / "k.png")
    a = assert_not_blank(path, min_colors=50)
    w, h = fig.get_size_inches() * 100
    assert a.shape[:2] == (round(h), round(w))
    assert viz.data_uri(fig).startswith("data:image/png;base64,")


def test_first_layer_filters_one_axis_per_filter(digits_run, tmp_path):
    _, model, _ = digits_run
    fig = viz.plot_filters(model)
    assert len(fig.axes) == 8
    kernel = model.get_layer("conv_a").params["kernel"]
    img = fig.axes[3].images[0].get_array()
    k = kernel[:, :, 0, 3].astype(np.float64)
    np.testing.assert_allclose(img, (k - k.min()) / (k.max() - k.min()), atol=1e-6)
    assert_not_blank(viz.save(fig, tmp_path / "f.png"))


def test_deeper_filters_one_axis_per_filter_and_channel(digits_run):
    _, model, _ = digits_run
    assert len(viz.plot_filters(model, "conv_b").axes) == 16 * 8
    assert len(viz.plot_filters(model, "conv_b", max_filters=4, max_channels=3).axes) == 12


def test_colour_filters_for_rgb_input():
    from cnnlab import layers as L
    from cnnlab.models import Sequential
    m = Sequential([L.Input((6, 6, 3)), L.Conv2D(5, 3), L.Flatten(), L.Dense(2)])
    fig = viz.plot_filters(m)
    assert len(fig.axes) == 5
    assert fig.axes[0].images[0].get_array().shape == (3, 3, 3)


def test_feature_maps_grid_per_layer(digits_run, tmp_path):
    _, model, ds = digits_run
    img = x_test(ds)[0]
    fig = viz.plot_feature_maps(model, img)
    assert len(fig.axes) == 1 + 8 + 16
    maps = viz.layer_outputs(model, img[None], ["conv_b"])["conv_b"][0]
    np.testing.assert_allclose(fig.axes[-1].images[0].get_array(), maps[:, :, 15])
    assert_not_blank(viz.save(fig, tmp_path / "fm.png"))
    assert len(viz.plot_feature_maps(model, img, layer="conv_a", show_input=False).axes) == 8


def test_classic_kernels_through_conv2d(tmp_path):
    rng = np.random.default_rng(0)
    img = rng.random((9, 7, 3)).astype(np.float32)
    np.testing.assert_allclose(viz.apply_kernel(img, viz.CLASSIC_KERNELS["identity"]), img, atol=1e-7)
    k = np.asarray(viz.CLASSIC_KERNELS["sobel x"], dtype=np.float64)
    pad = np.pad(img.astype(np.float64), ((1, 1), (1, 1), (0, 0)))
    ref = np.zeros(img.shape)
    for i in range(img.shape[0]):
        for j in range(img.shape[1]):
            ref[i, j] = np.einsum("ab,abc->c", k, pad[i:i + 3, j:j + 3])  # cross-correlation
    np.testing.assert_allclose(viz.apply_kernel(img, k), ref, atol=1e-5)
    step = np.zeros((6, 6), np.uint8)
    step[:, 3:] = 255
    out = viz.apply_kernel(step, viz.CLASSIC_KERNELS["sobel y"])[1:-1, :, 0]
    assert np.allclose(out, 0)  # a vertical edge has no vertical gradient
    fig = viz.plot_kernels(img)
    assert len(fig.axes) == len(viz.CLASSIC_KERNELS) >= 10
    assert_not_blank(viz.save(fig, tmp_path / "k.png"), min_colors=50)


def test_activation_plot_one_curve_per_function_and_derivative():
    fig = viz.plot_activations()
    lines = [l for ax in fig.axes for l in ax.get_lines() if not l.get_label().startswith("_")]
    assert len(fig.axes) == len(act_ops.NAMES)
    assert len(lines) == 2 * len(act_ops.NAMES)
    titles = [ax.get_title() for ax in fig.axes]
    assert titles == list(act_ops.NAMES)
    # the dashed curve is the derivative of the solid one
    for ax in fig.axes:
        f, d = ax.get_lines()[:2]
        x, y = f.get_data()
        fd = np.gradient(y, x)
        mask = np.abs(x) > 0.1  # away from the kinks at 0
        np.testing.assert_allclose(d.get_ydata()[mask][1:-1], fd[mask][1:-1], atol=2e-3, err_msg=ax.get_title())


def test_curves_from_log(digits_run, tmp_path):
    run_dir, _, _ = digits_run
    log = viz.read_log(run_dir)
    assert len(log["loss"]) == 6
    fig = viz.plot_curves(run_dir)
    assert [ax.get_title() for ax in fig.axes] == ["loss", "accuracy"]
    for ax, key in zip(fig.axes, ["loss", "accuracy"]):
        train, val = ax.get_lines()
        np.testing.assert_allclose(train.get_ydata(), log[key])
        np.testing.assert_allclose(val.get_ydata(), log["val_" + key])
        np.testing.assert_array_equal(train.get_xdata(), np.arange(1, 7))
    assert_not_blank(viz.save(fig, tmp_path / "c.png"), min_colors=50)


def test_confusion_matrix_figure(digits_run, tmp_path):
    _, model, ds = digits_run
    probs = viz.predict_proba(model, x_test(ds))
    fig = viz.plot_confusion(ds.y_test, probs, ds.class_names)
    shown = fig.axes[0].images[0].get_array()
    np.testing.assert_array_equal(shown, confusion_matrix(ds.y_test, probs, 10))
    assert shown.sum() == len(ds.y_test)
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == ds.class_names
    assert_not_blank(viz.save(fig, tmp_path / "cm.png"), min_colors=20)


def test_misclassified_most_confident_first(digits_run, tmp_path):
    _, model, ds = digits_run
    x = x_test(ds)
    probs = viz.predict_proba(model, x)
    pred = probs.argmax(1)
    wrong = np.flatnonzero(pred != ds.y_test)
    assert len(wrong) > 0, "the fixture model should make some mistakes"
    fig = viz.plot_misclassified(model, x, ds.y_test, ds.class_names, n=12, display=ds.x_test)
    assert len(fig.axes) == min(12, len(wrong))
    conf = []
    for ax in fig.axes:
        true_line, pred_line = ax.get_title().split("\n")
        t, p = true_line.split()[1], pred_line.split()[1]
        assert t != p
        conf.append(float(pred_line.split()[2].rstrip("%")))
    assert conf == sorted(conf, reverse=True)
    top = wrong[np.argmax(probs[wrong, pred[wrong]])]
    np.testing.assert_allclose(fig.axes[0].images[0].get_array(), ds.x_test[top][..., 0] / 255.0)
    assert_not_blank(viz.save(fig, tmp_path / "m.png"))


def test_png_size_matches_grid(digits_run, tmp_path):
    _, model, _ = digits_run
    small = png_array(viz.save(viz.plot_filters(model, "conv_b", max_filters=2, max_channels=2), tmp_path / "a.png"))
    big = png_array(viz.save(viz.plot_filters(model, "conv_b", max_filters=6, max_channels=5), tmp_path / "b.png"))
    assert big.shape[0] > small.shape[0] and big.shape[1] > small.shape[1]


@pytest.mark.parametrize("bad", ["flat", "out"])
def test_filters_of_a_non_conv_layer_is_an_error(digits_run, bad):
    _, model, _ = digits_run
    with pytest.raises(ValueError):
        viz.plot_filters(model, bad)
