"""Layer-level forward/backward checks in float64.

Each layer is built through ``__call__`` in float32, then its arrays are
converted to float64 and ``forward``/``backward`` are called directly, so the
central differences of ``L = sum(forward(x) * dy)`` are exact to ~1e-8.
"""
import numpy as np
import pytest

from cnnlab import layers as L
from tests.helpers import assert_close, numerical_grad, rand


def to_float64(layer):
    for store in (layer.params, layer.grads, layer.state):
        for k in store:
            store[k] = store[k].astype(np.float64)
    for attr in ("_gamma", "_beta"):
        if hasattr(layer, attr):
            setattr(layer, attr, getattr(layer, attr).astype(np.float64))


def randomize_params(layer, seed=10):
    rng = np.random.default_rng(seed)
    for k in layer.params:
        layer.params[k][...] = rng.standard_normal(layer.params[k].shape) * 0.5
    if "gamma" in layer.params:
        layer.params["gamma"][...] = 1 + rng.uniform(-0.5, 0.5, layer.params["gamma"].shape)
    if "moving_mean" in layer.state:
        layer.state["moving_mean"][...] = rng.standard_normal(layer.state["moving_mean"].shape)
        layer.state["moving_variance"][...] = rng.uniform(0.5, 2.0, layer.state["moving_variance"].shape)


def grad_check(layer, x_shapes, training=False, seed=0, reset=None, rtol=1e-6, atol=1e-8, x=None):
    """Build ``layer`` on float32 inputs of ``x_shapes``, then check dx and every grad in float64."""
    multi = isinstance(x_shapes, list)
    shapes = x_shapes if multi else [x_shapes]
    if x is None:
        xs = [rand(s, seed + i, dtype=np.float64) for i, s in enumerate(shapes)]
    else:
        xs = [np.asarray(v, dtype=np.float64) for v in (x if multi else [x])]
    layer([v.astype(np.float32) for v in xs] if multi else xs[0].astype(np.float32))  # builds
    randomize_params(layer)
    to_float64(layer)

    def run():
        if reset is not None:
            reset(layer)
        return layer.forward(xs if multi else xs[0], training=training)

    y = run()
    assert y.dtype == np.float64, "the layer must keep the input's dtype"
    assert y.shape[1:] == tuple(layer.compute_output_shape([(None,) + s[1:] for s in shapes] if multi
                                                          else (None,) + shapes[0][1:]))[1:]
    dy = np.random.default_rng(seed + 100).standard_normal(y.shape)
    layer.zero_grads()
    dx = layer.backward(dy)
    dxs = list(dx) if multi else [dx]

    def f():
        return float(np.sum(run() * dy))

    for i, (xi, dxi) in enumerate(zip(xs, dxs)):
        assert_close(dxi, numerical_grad(f, xi), rtol=rtol, atol=atol, name=f"{layer.name} dx[{i}]")
    grads = {k: g.copy() for k, g in layer.grads.items()}
    assert set(grads) == set(layer.params)
    for k in layer.params:
        assert_close(grads[k], numerical_grad(f, layer.params[k]), rtol=rtol, atol=atol, name=f"{layer.name} d{k}")
    return y, dxs, grads


@pytest.mark.parametrize("kwargs", [
    dict(filters=3, kernel_size=3),
    dict(filters=3, kernel_size=3, padding="same"),
    dict(filters=2, kernel_size=(3, 2), strides=2),
    dict(filters=2, kernel_size=3, strides=2, padding="same"),
    dict(filters=2, kernel_size=3, dilation_rate=2),
    dict(filters=2, kernel_size=3, padding=1),
    dict(filters=2, kernel_size=1),
    dict(filters=3, kernel_size=2, use_bias=False),
    dict(filters=2, kernel_size=3, activation="relu"),
    dict(filters=2, kernel_size=3, activation="tanh", padding="same"),
    dict(filters=2, kernel_size=2, activation="elu"),
])
def test_conv2d(kwargs):
    layer = L.Conv2D(**kwargs)
    y, _, grads = grad_check(layer, (2, 6, 7, 2))
    assert ("bias" in grads) == kwargs.get("use_bias", True)


def test_conv2d_same_stride2_output_size_is_ceil():
    layer = L.Conv2D(2, 3, strides=2, padding="same")
    assert layer(rand((1, 7, 8, 1))).shape == (1, 4, 4, 2)


@pytest.mark.parametrize("activation", [None, "relu", "sigmoid", "softmax", "leaky_relu"])
def test_dense_2d(activation):
    grad_check(L.Dense(4, activation=activation), (3, 5))


def test_dense_3d_input():
    layer = L.Dense(3)
    y, dxs, grads = grad_check(layer, (2, 4, 5))
    assert y.shape == (2, 4, 3)
    # each position is an independent Dense: compare with a 2-D application
    x = rand((2, 4, 5), 0, dtype=np.float64)
    ref = x.reshape(-1, 5) @ layer.params["kernel"] + layer.params["bias"]
    assert_close(y, ref.reshape(2, 4, 3), rtol=1e-12, atol=1e-12)


def test_dense_no_bias():
    _, _, grads = grad_check(L.Dense(2, use_bias=False), (3, 4))
    assert list(grads) == ["kernel"]


@pytest.mark.parametrize("cls,kwargs", [
    (L.MaxPooling2D, {}),
    (L.MaxPooling2D, dict(pool_size=3, strides=2)),
    (L.MaxPooling2D, dict(pool_size=3, strides=2, padding="same")),
    (L.AveragePooling2D, {}),
    (L.AveragePooling2D, dict(pool_size=3, strides=1, padding="same")),
    (L.L2Pooling2D, dict(pool_size=2)),
    (L.GlobalAveragePooling2D, {}),
    (L.GlobalMaxPooling2D, {}),
])
def test_pooling(cls, kwargs):
    grad_check(cls(**kwargs), (2, 6, 7, 3))


def test_max_pool_values():
    x = np.arange(16, dtype=np.float32).reshape(1, 4, 4, 1)
    assert L.MaxPooling2D()(x)[0, :, :, 0].tolist() == [[5, 7], [13, 15]]
    assert L.AveragePooling2D()(x)[0, :, :, 0].tolist() == [[2.5, 4.5], [10.5, 12.5]]
    assert L.GlobalMaxPooling2D()(x).tolist() == [[15]]
    assert L.GlobalAveragePooling2D()(x).tolist() == [[7.5]]


def test_batchnorm_training():
    layer = L.BatchNormalization()
    y, _, grads = grad_check(layer, (4, 3, 3, 5), training=True)
    # normalized per channel, then scaled by gamma and shifted by beta
    z = (y - layer.params["beta"]) / layer.params["gamma"]
    assert_close(z.mean(axis=(0, 1, 2)), np.zeros(5), atol=1e-10)
    assert_close(z.var(axis=(0, 1, 2)), np.ones(5), rtol=1e-2)


def test_batchnorm_training_2d_input():
    grad_check(L.BatchNormalization(), (6, 4), training=True)


def test_batchnorm_inference():
    layer = L.BatchNormalization(epsilon=1e-3)
    x = rand((4, 3, 3, 5), 0, dtype=np.float64)
    y, _, _ = grad_check(layer, (4, 3, 3, 5), training=False)
    s = layer.state
    ref = (x - s["moving_mean"]) / np.sqrt(s["moving_variance"] + 1e-3) * layer.params["gamma"] + layer.params["beta"]
    assert_close(y, ref, rtol=1e-10, atol=1e-10)


def test_batchnorm_no_center_no_scale():
    layer = L.BatchNormalization(center=False, scale=False)
    _, _, grads = grad_check(layer, (5, 3), training=True)
    assert grads == {}
    assert layer.weight_names == ["moving_mean", "moving_variance"]


def test_batchnorm_moving_statistics_update():
    layer = L.BatchNormalization(momentum=0.9)
    x = rand((8, 3), 0, scale=2.0) + 1
    layer(x, training=True)
    mean, var = x.astype(np.float64).mean(0), x.astype(np.float64).var(0)
    assert_close(layer.state["moving_mean"], 0.1 * mean, rtol=1e-5, atol=1e-6)
    assert_close(layer.state["moving_variance"], 0.9 + 0.1 * var, rtol=1e-4, atol=1e-5)
    before = layer.get_weights()
    layer(x, training=False)
    for a, b in zip(before, layer.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_flatten_and_reshape():
    y, _, _ = grad_check(L.Flatten(), (2, 3, 4, 2))
    assert y.shape == (2, 24)
    x = rand((2, 3, 4, 2), 0, dtype=np.float64)
    np.testing.assert_array_equal(y, x.reshape(2, -1))  # C order, as Keras's channels_last Flatten
    y, _, _ = grad_check(L.Reshape((4, -1)), (2, 3, 4, 2))
    assert y.shape == (2, 4, 6)
    assert L.Reshape((6, 4)).compute_output_shape((None, 3, 8)) == (None, 6, 4)


def test_zero_padding():
    y, dxs, _ = grad_check(L.ZeroPadding2D(((1, 2), (0, 3))), (2, 3, 4, 2))
    assert y.shape == (2, 6, 7, 2)
    x = rand((2, 3, 4, 2), 0, dtype=np.float64)
    np.testing.assert_array_equal(y[:, 1:4, 0:4], x)
    assert np.all(y[:, 0] == 0) and np.all(y[:, 4:] == 0) and np.all(y[:, :, 4:] == 0)
    assert L.ZeroPadding2D(2).compute_output_shape((None, 5, 5, 1)) == (None, 9, 9, 1)
    assert L.ZeroPadding2D((1, 2)).compute_output_shape((None, 5, 5, 1)) == (None, 7, 9, 1)


@pytest.mark.parametrize("layer_fn", [
    lambda: L.Activation("relu"), lambda: L.Activation("sigmoid"), lambda: L.Activation("tanh"),
    lambda: L.Activation("selu"), lambda: L.Activation("linear"), lambda: L.ReLU(), lambda: L.LeakyReLU(),
    lambda: L.LeakyReLU(negative_slope=0.1), lambda: L.ELU(), lambda: L.ELU(alpha=0.5), lambda: L.Softmax(),
])
def test_activation_layers(layer_fn):
    grad_check(layer_fn(), (3, 2, 2, 4))


def test_activation_values():
    x = np.array([[-2.0, -0.5, 0.5, 2.0]], dtype=np.float32)
    assert_close(L.ReLU()(x), [[0, 0, 0.5, 2]])
    assert_close(L.LeakyReLU()(x), [[-0.6, -0.15, 0.5, 2]])  # Keras's layer default slope is 0.3
    assert_close(L.LeakyReLU(negative_slope=0.1)(x), [[-0.2, -0.05, 0.5, 2]])
    assert_close(L.ELU(alpha=0.5)(x), [[0.5 * np.expm1(-2), 0.5 * np.expm1(-0.5), 0.5, 2]])
    s = L.Softmax()(x)
    e = np.exp(x - x.max())
    assert_close(s, e / e.sum())


def test_add():
    y, dxs, _ = grad_check(L.Add(), [(2, 3, 3, 4), (2, 3, 3, 4), (2, 3, 3, 4)])
    xs = [rand((2, 3, 3, 4), i, dtype=np.float64) for i in range(3)]
    assert_close(y, xs[0] + xs[1] + xs[2], rtol=1e-12, atol=1e-12)
    # the inputs are not modified in place
    np.testing.assert_array_equal(xs[0], rand((2, 3, 3, 4), 0, dtype=np.float64))


@pytest.mark.parametrize("axis", [-1, 1, 3])
def test_concatenate(axis):
    shapes = [(2, 3, 3, 4), (2, 3, 3, 4)]
    shapes[1] = tuple(d + 2 if i == axis % 4 else d for i, d in enumerate(shapes[1]))
    y, dxs, _ = grad_check(L.Concatenate(axis=axis), [shapes[0], shapes[1]])
    xs = [rand(s, i, dtype=np.float64) for i, s in enumerate(shapes)]
    np.testing.assert_array_equal(y, np.concatenate(xs, axis=axis))


def test_dropout_fixed_seed():
    seed = 7

    def reset(layer):
        layer.rng = np.random.default_rng(seed)

    layer = L.Dropout(0.4, seed=seed)
    y, dxs, _ = grad_check(layer, (4, 50), training=True, reset=reset)
    x = rand((4, 50), 0, dtype=np.float64)
    kept = y != 0
    assert 0.25 < 1 - kept.mean() < 0.55
    assert_close(y[kept], x[kept] / 0.6, rtol=1e-6)
    # the same seed gives the same mask
    y2 = L.Dropout(0.4, seed=seed)(x.astype(np.float32), training=True)
    np.testing.assert_array_equal(y2 != 0, kept)
    # inference is the identity
    np.testing.assert_array_equal(layer.forward(x, training=False), x)


def test_dropout_rate_zero_is_identity_in_training():
    x = rand((3, 5), 0)
    np.testing.assert_array_equal(L.Dropout(0.0)(x, training=True), x)


def test_input_layer_passthrough():
    layer = L.InputLayer(shape=(3,))
    x = rand((2, 3), 0)
    np.testing.assert_array_equal(layer.forward(x), x)
    np.testing.assert_array_equal(layer.backward(x), x)
    assert layer.batch_input_shape == (None, 3)


def test_gradients_accumulate_until_zeroed():
    layer = L.Dense(2)
    x = rand((3, 4), 0)
    layer(x)
    dy = rand((3, 2), 1)
    layer.forward(x)
    layer.backward(dy)
    g1 = layer.grads["kernel"].copy()
    layer.backward(dy)
    assert_close(layer.grads["kernel"], 2 * g1, rtol=1e-6)
    layer.zero_grads()
    assert not layer.grads["kernel"].any()
