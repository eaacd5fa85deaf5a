"""A ReLU feeding only a max pooling is applied after it: the same outputs and gradients."""
import numpy as np
import pytest

from cnnlab import layers as L
from cnnlab.models import Model, Sequential
from cnnlab.viz import layer_outputs
from tests.helpers import assert_close, rand


def conv_relu_pool_model(pool, strides, padding):
    model = Sequential([L.Input((9, 11, 2)), L.Conv2D(4, 3, padding="same", activation="relu", name="c1"),
                        L.MaxPooling2D(pool, strides=strides, padding=padding, name="p1"),
                        L.Conv2D(3, 2, name="c2"), L.ReLU(name="r2"), L.MaxPooling2D(2, padding="same", name="p2"),
                        L.Flatten(), L.Dense(5, activation="softmax")])
    model.compile("sgd", "sparse_categorical_crossentropy")
    return model


def step_results(model, x, y):
    loss, out = model.train_step(x, y)
    grads = {k: g.copy() for k, g in model._grads.items()}
    dx = model.input_gradient(x, np.ones((len(x), 5), np.float32))
    return loss, out.copy(), grads, dx


@pytest.mark.parametrize("pool, strides, padding", [(2, None, "valid"), (2, None, "same"), (3, 2, "valid"),
                                                    (3, 2, "same"), ((2, 3), 1, "valid")])
@pytest.mark.parametrize("ties", [False, True])
def test_reordered_relu_matches_layer_by_layer(monkeypatch, pool, strides, padding, ties):
    x = rand((6, 9, 11, 2), 1)
    if ties:  # integer pixels and kernels: exact ties in the conv outputs, zeros after ReLU in most windows
        x = np.round(x * 2)
    y = np.arange(6) % 5
    model = conv_relu_pool_model(pool, strides, padding)
    weights = model.get_weights()
    if ties:
        weights = [np.round(w * 4) for w in weights]
    results = {}
    for on in (False, True):
        monkeypatch.setattr(Model, "reorder_relu_max_pool", on)
        model.set_weights(weights)
        results[on] = step_results(model, x, y)
        assert bool(model._pool_relu) == on  # the ReLUs did move when allowed
        assert (model.get_layer("c1")._act_cache is None) == on
    (l0, o0, g0, dx0), (l1, o1, g1, dx1) = results[False], results[True]
    assert l0 == pytest.approx(l1, rel=1e-6)
    assert_close(o1, o0, rtol=1e-6, atol=1e-7)
    for k in g0:
        assert_close(g1[k], g0[k], rtol=1e-5, atol=1e-6, name=k)
    assert_close(dx1, dx0, rtol=1e-5, atol=1e-6)


def test_relu_stays_where_its_output_is_needed():
    # an activation that is a model output, or feeds two layers, or a pooling that is not max
    inp = L.Input((8, 8, 1))
    c = L.Conv2D(2, 3, activation="relu", name="c")(inp)
    model = Model(inp, [L.MaxPooling2D(name="p")(c), c])
    assert model._pool_after == {}
    a = L.Conv2D(2, 3, activation="relu", name="a")(inp)
    model = Model(inp, L.Add()([L.MaxPooling2D()(a), L.AveragePooling2D()(a)]))
    assert model._pool_after == {}
    model = Sequential([L.Input((8, 8, 1)), L.Conv2D(2, 3, activation="relu"), L.AveragePooling2D()])
    assert model._pool_after == {}
    model = Sequential([L.Input((8, 8, 1)), L.Conv2D(2, 3, activation="tanh"), L.MaxPooling2D()])
    model.forward([rand((2, 8, 8, 1))])
    assert model._pool_relu == {}  # only ReLU moves


def test_feature_maps_of_a_moved_relu_are_its_own_output():
    # cnnlab.viz hooks the layer's forward: that layer keeps its ReLU
    model = conv_relu_pool_model(2, None, "valid")
    x = rand((3, 9, 11, 2), 2)
    maps = layer_outputs(model, x, ["c1"])["c1"]
    assert maps.min() == 0 and maps.max() > 0
    z = L.Conv2D(4, 3, padding="same")
    z.build((None, 9, 11, 2))
    z.set_weights(model.get_layer("c1").get_weights())
    assert_close(maps, np.maximum(z.forward(x), 0), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("pool, padding", [(2, "valid"), (2, "same"), (3, "valid")])
def test_phase_layout_between_first_conv_and_pooling(monkeypatch, pool, padding):
    """The first convolution hands a 2x2 max pooling its output in phase layout: the same steps.
    A convolution that needs dx, or a 3x3 pooling, keeps NHWC."""
    model = Sequential([L.Input((8, 10, 2)), L.Conv2D(4, 3, padding="same", activation="relu", name="c1"),
                        L.MaxPooling2D(pool, strides=2, padding=padding, name="p1"),
                        L.Conv2D(6, 3, padding="same", activation="relu", name="c2"),
                        L.MaxPooling2D(2, name="p2"), L.Flatten(), L.Dense(5, activation="softmax")])
    model.compile("adam", "sparse_categorical_crossentropy")
    x, y = rand((6, 8, 10, 2), 1), np.arange(6) % 5
    weights = model.get_weights()
    results = {}
    for on in (False, True):
        monkeypatch.setattr(Model, "phase_pooling", on)
        model.set_weights(weights)
        model.optimizer = type(model.optimizer)()
        losses = [model.train_step(x, y)[0] for _ in range(3)]
        assert model.get_layer("c1")._cache.phase == (on and pool == 2)
        assert not model.get_layer("c2")._cache.phase  # needs dx
        results[on] = losses, model.get_weights(), model.input_gradient(x, np.ones((6, 5), np.float32))
    (l0, w0, dx0), (l1, w1, dx1) = results[False], results[True]
    assert l1 == pytest.approx(l0, rel=1e-6)
    for a, b in zip(w1, w0):
        assert_close(a, b, rtol=1e-5, atol=1e-6)
    assert_close(dx1, dx0, rtol=1e-5, atol=1e-6)


def test_phase_layout_not_handed_to_hooked_layers():
    model = conv_relu_pool_model(2, None, "valid")
    x = rand((3, 9, 11, 2), 2)
    maps = layer_outputs(model, x, ["c1"])["c1"]
    assert maps.shape == (3, 9, 11, 4)
