"""Saliency against finite differences, Grad-CAM against the closed form, receptive fields."""
import numpy as np
import pytest

from cnnlab import layers as L
from cnnlab import viz
from cnnlab.models import Model, Sequential
from cnnlab.random import set_random_seed
from tests.helpers import numerical_grad
from tests.viz.conftest import assert_not_blank


def tiny_model():
    set_random_seed(3)
    m = Sequential([L.Input((5, 5, 1)), L.Conv2D(2, 3, activation="tanh", name="c"), L.Flatten(),
                    L.Dense(3, activation="softmax", name="d")])
    rng = np.random.default_rng(1)
    m.get_layer("c").params["bias"][...] = rng.normal(0, 0.3, 2)
    m.get_layer("d").params["bias"][...] = rng.normal(0, 0.3, 3)
    return m


def reference_logits(m, x):
    """The tiny model's logits in float64, from copies of its weights."""
    W = m.get_layer("c").params["kernel"].astype(np.float64)
    b = m.get_layer("c").params["bias"].astype(np.float64)
    Wd = m.get_layer("d").params["kernel"].astype(np.float64)
    bd = m.get_layer("d").params["bias"].astype(np.float64)
    z = np.zeros((3, 3, 2))
    for i in range(3):
        for j in range(3):
            z[i, j] = np.einsum("abc,abcf->f", x[i:i + 3, j:j + 3], W) + b
    return np.tanh(z).reshape(-1) @ Wd + bd


def softmax(z):
    e = np.exp(z - z.max())
    return e / e.sum()


def test_saliency_equals_finite_difference_of_the_logit():
    m = tiny_model()
    x = np.random.default_rng(0).normal(size=(5, 5, 1))
    np.testing.assert_allclose(m.predict_on_batch(x[None].astype(np.float32))[0], softmax(reference_logits(m, x)),
                               atol=1e-5)
    for c in range(3):
        fd = numerical_grad(lambda: reference_logits(m, x)[c], x)
        g = viz.class_score_gradient(m, x.astype(np.float32), c)
        np.testing.assert_allclose(g, fd, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(viz.saliency_map(m, x.astype(np.float32), c), np.abs(fd)[..., 0],
                                   rtol=1e-4, atol=1e-5)
        # the softmax probability has a different gradient: the map really is the logit's
        fd_prob = numerical_grad(lambda: softmax(reference_logits(m, x))[c], x)
        assert not np.allclose(g, fd_prob, atol=1e-3)


def test_saliency_defaults_to_predicted_class_and_batches():
    m = tiny_model()
    x = np.random.default_rng(2).normal(size=(4, 5, 5, 1)).astype(np.float32)
    pred = m.predict_on_batch(x).argmax(1)
    sal = viz.saliency_map(m, x)
    assert sal.shape == (4, 5, 5)
    for i in range(4):
        np.testing.assert_allclose(sal[i], viz.saliency_map(m, x[i], int(pred[i])), rtol=1e-6)


def test_attribution_leaves_training_state_alone():
    m = tiny_model()
    x = np.random.default_rng(2).normal(size=(2, 5, 5, 1)).astype(np.float32)
    for l in m.layers:
        for g in l.grads.values():
            g[...] = 7.0
    need = {l.name: l.need_dx for l in m.layers if hasattr(l, "need_dx")}
    viz.saliency_map(m, x)
    viz.gradcam(m, x)
    for l in m.layers:
        assert "backward" not in vars(l) and "forward" not in vars(l)
        for g in l.grads.values():
            assert np.all(g == 7.0)
    assert need == {l.name: l.need_dx for l in m.layers if hasattr(l, "need_dx")}


def test_gradcam_closed_form_and_shapes():
    set_random_seed(5)
    m = Sequential([L.Input((6, 6, 2)), L.Conv2D(3, 3, activation="relu", name="c1"),
                    L.Conv2D(3, 2, activation="relu", name="c2"), L.Flatten(), L.Dense(4, activation="softmax")])
    x = np.random.default_rng(0).normal(size=(2, 6, 6, 2)).astype(np.float32)
    out = viz.gradcam(m, x, class_index=2)
    assert out["layer"] == "c2"
    assert out["raw"].shape == (2, 3, 3)           # the last conv map
    assert out["cam"].shape == (2, 6, 6)           # upsampled to the input
    assert out["cam"].min() >= 0 and out["cam"].max() <= 1
    # d logit_2 / d c2-output is the Dense column, reshaped
    Wd = m.layers[-1].params["kernel"][:, 2].reshape(3, 3, 3)
    np.testing.assert_allclose(out["grads"], np.broadcast_to(Wd, (2, 3, 3, 3)), rtol=1e-6)
    A = viz.layer_outputs(m, x, ["c2"])["c2"]
    np.testing.assert_allclose(out["maps"], A, rtol=1e-6)
    w = Wd.mean(axis=(0, 1))
    np.testing.assert_allclose(out["raw"], np.maximum((A * w).sum(-1), 0), rtol=1e-5, atol=1e-7)
    # an earlier layer: its map is 4x4
    assert viz.gradcam(m, x, layer="c1")["raw"].shape == (2, 4, 4)


def test_gradcam_on_the_trained_run(digits_run, tmp_path):
    _, model, ds = digits_run
    x = (ds.x_test[:3] / 255.0).astype(np.float32)
    out = viz.gradcam(model, x)
    assert out["raw"].shape == (3, 2, 2) and out["cam"].shape == (3, 8, 8)
    np.testing.assert_array_equal(out["classes"], model.predict_on_batch(x).argmax(1))
    fig = viz.plot_gradcam(model, x, class_names=ds.class_names, display=ds.x_test[:3])
    assert len(fig.axes) == 9
    assert_not_blank(viz.save(fig, tmp_path / "g.png"), min_colors=50)
    fig = viz.plot_saliency(model, x, display=ds.x_test[:3])
    assert len(fig.axes) == 6
    assert_not_blank(viz.save(fig, tmp_path / "s.png"), min_colors=20)


def rf_model():
    set_random_seed(0)
    inp = L.Input((12, 12, 1))
    h = L.ZeroPadding2D(1, name="zp")(inp)
    h = L.Conv2D(2, 3, name="c1")(h)
    h = L.AveragePooling2D(2, name="pool")(h)
    out = L.Conv2D(2, 3, strides=2, padding="same", name="c2")(h)
    return Model(inp, out)


def test_receptive_field_arithmetic():
    m = rf_model()
    fields = viz.receptive_fields(m)
    assert fields["c1"] == ((-1, -1), (1, 1), (3, 3))
    assert fields["pool"] == ((-1, -1), (2, 2), (4, 4))
    assert fields["c2"] == ((-1, -1), (4, 4), (8, 8))
    assert viz.receptive_field(m, "c2", 1, 2) == (3, 7, 8, 8)


@pytest.mark.parametrize("layer,pos", [("c1", (0, 0)), ("c1", (5, 9)), ("pool", (3, 1)), ("c2", (1, 2)),
                                       ("c2", (2, 2)), ("c2", (0, 0))])
def test_receptive_field_is_the_gradient_support(layer, pos):
    """The input pixels an output unit depends on fill exactly its receptive field (clipped)."""
    m = rf_model()
    t = next(t for t in m._nodes if t.layer.name == layer)
    sub = Model(m.inputs[0], t)
    dout = np.zeros((1,) + t.shape[1:], np.float32)
    dout[0, pos[0], pos[1], 0] = 1
    x = np.random.default_rng(0).normal(size=(1, 12, 12, 1)).astype(np.float32)
    g = sub.input_gradient(x, dout)[0, :, :, 0]
    rows, cols = np.nonzero(g)
    top, left, h, w = viz.receptive_field(m, layer, *pos)
    assert (rows.min(), rows.max()) == (max(top, 0), min(top + h, 12) - 1)
    assert (cols.min(), cols.max()) == (max(left, 0), min(left + w, 12) - 1)


def test_top_patches_are_the_strongest_receptive_fields(digits_run, tmp_path):
    _, model, ds = digits_run
    x = (ds.x_test[:200] / 255.0).astype(np.float32)
    res = viz.top_patches(model, x, "conv_b", channels=[0, 3, 5], k=4, display=ds.x_test[:200])
    assert list(res) == [0, 3, 5]
    acts = viz.layer_outputs(model, x, ["conv_b"])["conv_b"]
    for c, entries in res.items():
        vals = [e["activation"] for e in entries]
        assert vals == sorted(vals, reverse=True)
        np.testing.assert_allclose(vals[0], acts[..., c].max(), rtol=1e-6)
        for e in entries:
            i, j = e["position"]
            np.testing.assert_allclose(e["activation"], acts[e["index"], i, j, c], rtol=1e-6)
            top, left, h, w = e["box"]
            assert (h, w) == (8, 8)  # 3x3 same, 2x2 pool, 3x3 valid
            src = np.pad(ds.x_test[e["index"]].astype(float), ((8, 8), (8, 8), (0, 0)))
            np.testing.assert_array_equal(e["patch"], src[top + 8:top + 8 + h, left + 8:left + 8 + w])
    fig = viz.plot_top_patches(model, x, "conv_a", channels=[1, 2, 4], k=5, display=ds.x_test[:200])
    assert len(fig.axes) == 3 * 5
    assert fig.axes[0].images[0].get_array().shape == (3, 3)  # conv_a sees 3x3
    assert_not_blank(viz.save(fig, tmp_path / "tp.png"))
