"""Layer configuration, weights, automatic names, shape arithmetic and error messages."""
import numpy as np
import pytest

from cnnlab import layers as L
from cnnlab.models import Sequential
from tests.helpers import assert_close, rand

# (factory, input shapes): every layer class, with non-default arguments where it has them.
CASES = [
    (lambda: L.Conv2D(4, 3), (2, 7, 7, 3)),
    (lambda: L.Conv2D(4, (3, 2), strides=(2, 1), padding="same", dilation_rate=1, activation="relu",
                      use_bias=False, kernel_initializer="he_normal", kernel_regularizer={"class_name": "L2",
                                                                                        "config": {"l2": 0.01}}),
     (2, 7, 7, 3)),
    (lambda: L.Conv2D(2, 3, dilation_rate=2, padding=1, bias_initializer="ones"), (2, 7, 7, 3)),
    (lambda: L.Conv2D(2, 3, padding=((1, 0), (2, 2))), (2, 7, 7, 3)),
    (lambda: L.ZeroPadding2D(((1, 2), (3, 0))), (2, 4, 4, 3)),
    (lambda: L.Dense(5, activation="softmax", use_bias=True, bias_initializer="ones"), (3, 4)),
    (lambda: L.Dense(5, input_shape=(4,)), (3, 4)),
    (lambda: L.Flatten(), (2, 3, 3, 2)),
    (lambda: L.Reshape((2, -1)), (2, 3, 4)),
    (lambda: L.Activation("tanh"), (2, 5)),
    (lambda: L.ReLU(), (2, 5)),
    (lambda: L.LeakyReLU(negative_slope=0.05), (2, 5)),
    (lambda: L.ELU(alpha=0.7), (2, 5)),
    (lambda: L.Softmax(), (2, 5)),
    (lambda: L.Dropout(0.25, seed=3), (2, 5)),
    (lambda: L.BatchNormalization(momentum=0.9, epsilon=1e-5, center=False), (4, 3, 3, 2)),
    (lambda: L.BatchNormalization(), (4, 3)),
    (lambda: L.MaxPooling2D(pool_size=3, strides=2, padding="same"), (2, 7, 7, 3)),
    (lambda: L.AveragePooling2D(pool_size=(2, 3)), (2, 6, 6, 3)),
    (lambda: L.L2Pooling2D(), (2, 6, 6, 3)),
    (lambda: L.GlobalAveragePooling2D(), (2, 4, 4, 3)),
    (lambda: L.GlobalMaxPooling2D(), (2, 4, 4, 3)),
    (lambda: L.Add(), [(2, 3, 3, 2), (2, 3, 3, 2)]),
    (lambda: L.Concatenate(axis=1), [(2, 3, 3, 2), (2, 1, 3, 2)]),
    (lambda: L.InputLayer(shape=(5,)), (2, 5)),
]


def _inputs(shapes, seed=0):
    if isinstance(shapes, list):
        return [rand(s, seed + i) for i, s in enumerate(shapes)]
    return rand(shapes, seed)


@pytest.mark.parametrize("factory,shapes", CASES)
def test_config_round_trip(factory, shapes):
    layer = factory()
    config = layer.get_config()
    for copy in (type(layer).from_config(config), L.deserialize(L.serialize(layer))):
        assert type(copy) is type(layer)
        assert copy.get_config() == config
        assert copy.name == layer.name
    # built from the same config, with the same weights, they compute the same thing
    x = _inputs(shapes)
    copy = L.deserialize(L.serialize(layer))
    y = layer(x)
    copy(x)
    copy.set_weights(layer.get_weights())
    assert_close(copy(x), y, rtol=0, atol=0, name=type(layer).__name__)
    assert copy.count_params() == layer.count_params()


def test_config_is_json_serialisable():
    import json
    for factory, _ in CASES:
        config = L.serialize(factory())
        assert json.loads(json.dumps(config)) == config


def test_conv2d_config_values():
    c = L.Conv2D(8, 3, strides=2, padding="SAME", activation="linear", name="c1")
    config = c.get_config()
    assert config["filters"] == 8 and config["kernel_size"] == [3, 3] and config["strides"] == [2, 2]
    assert config["padding"] == "same" and config["activation"] is None and config["name"] == "c1"


def test_conv2d_weights_order_and_shapes():
    c = L.Conv2D(5, (3, 2))
    c(rand((1, 6, 6, 4)))
    k, b = c.get_weights()
    assert k.shape == (3, 2, 4, 5) and b.shape == (5,)
    assert c.weight_names == ["kernel", "bias"]
    assert c.count_params() == 3 * 2 * 4 * 5 + 5
    # get_weights returns copies
    k[...] = 7
    assert not np.all(c.params["kernel"] == 7)
    new_k, new_b = rand((3, 2, 4, 5), 1), rand((5,), 2)
    c.set_weights([new_k, new_b])
    np.testing.assert_array_equal(c.params["kernel"], new_k)
    np.testing.assert_array_equal(c.params["bias"], new_b)
    assert c.params["kernel"].dtype == np.float32


def test_batchnorm_weights_order():
    bn = L.BatchNormalization()
    bn(rand((4, 3, 3, 6)))
    assert bn.weight_names == ["gamma", "beta", "moving_mean", "moving_variance"]
    g, b, mm, mv = [rand((6,), i) for i in range(4)]
    bn.set_weights([g, b, mm, mv])
    for key, value in zip(bn.weight_names, (g, b, mm, mv)):
        np.testing.assert_array_equal(bn.get_weights()[bn.weight_names.index(key)], value)
    assert bn.count_params() == 24 and bn.count_trainable_params() == 12
    assert list(bn.params) == ["gamma", "beta"] and list(bn.state) == ["moving_mean", "moving_variance"]


def test_set_weights_errors():
    d = L.Dense(3, name="head")
    d(rand((2, 4)))
    before = d.get_weights()
    with pytest.raises(ValueError, match=r"'head' weight 'kernel': expected shape \(4, 3\), received \(3, 4\)"):
        d.set_weights([np.zeros((3, 4)), np.zeros(3)])
    with pytest.raises(ValueError, match=r"'head' expects 2 weight arrays \(kernel, bias\), received 1"):
        d.set_weights([np.zeros((4, 3))])
    for a, b in zip(before, d.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_automatic_names():
    L.clear_session()
    assert [L.Conv2D(2, 3).name for _ in range(3)] == ["conv2d", "conv2d_1", "conv2d_2"]
    assert L.MaxPooling2D().name == "max_pooling2d"
    assert L.MaxPool2D().name == "max_pooling2d_1"  # an alias of the same class, as in Keras
    assert L.AveragePooling2D().name == "average_pooling2d"
    assert L.GlobalAveragePooling2D().name == "global_average_pooling2d"
    assert L.BatchNormalization().name == "batch_normalization"
    assert L.ZeroPadding2D().name == "zero_padding2d"
    assert L.Dense(1).name == "dense"
    assert L.ReLU().name == "re_lu"
    assert L.LeakyReLU().name == "leaky_re_lu"
    assert L.Dropout(0.1).name == "dropout"
    assert L.Dense(1, name="mine").name == "mine"
    L.clear_session()
    assert L.Conv2D(2, 3).name == "conv2d"


def test_seed_parameter_arithmetic():
    L.clear_session()
    model = Sequential([L.Input((32, 32, 3)), L.Conv2D(10, 5, padding=2)])
    assert model.output_shape == (None, 32, 32, 10)
    assert model.count_params() == 760  # 5*5*3*10 + 10
    conv = L.Conv2D(1, 3)
    assert conv(rand((1, 6, 6, 1))).shape == (1, 4, 4, 1)
    assert conv.compute_output_shape((None, 6, 6, 1)) == (None, 4, 4, 1)
    # (N - F + 2P) / S + 1 with stride 2: (7 - 3 + 0) // 2 + 1 = 3
    assert L.Conv2D(1, 3, strides=2).compute_output_shape((None, 7, 7, 1)) == (None, 3, 3, 1)
    assert L.Conv2D(1, 3, dilation_rate=2).compute_output_shape((None, 7, 7, 1)) == (None, 3, 3, 1)
    assert L.MaxPooling2D().compute_output_shape((None, 7, 7, 4)) == (None, 3, 3, 4)
    assert L.MaxPooling2D(padding="same").compute_output_shape((None, 7, 7, 4)) == (None, 4, 4, 4)


# ----- bad input ------------------------------------------------------------------------------

def test_wrong_channel_count():
    conv = L.Conv2D(4, 3, name="c")
    conv(rand((2, 6, 6, 3)))
    with pytest.raises(ValueError) as e:
        conv(rand((2, 6, 6, 2)))
    msg = str(e.value)
    assert "'c'" in msg and "Conv2D" in msg and "3" in msg and "(2, 6, 6, 2)" in msg and "(None, 6, 6, 3)" in msg


def test_wrong_features_dense():
    d = L.Dense(4, name="fc")
    d(rand((2, 5)))
    with pytest.raises(ValueError, match=r"'fc'.*expected axis -1 of the input to be 5, received 6.*\(2, 6\)"):
        d(rand((2, 6)))


@pytest.mark.parametrize("layer_fn,shape", [
    (lambda: L.Conv2D(4, 3, name="c"), (6, 6, 3)),
    (lambda: L.MaxPooling2D(name="c"), (6, 6, 3)),
    (lambda: L.GlobalAveragePooling2D(name="c"), (6, 6)),
    (lambda: L.ZeroPadding2D(name="c"), (6, 3)),
    (lambda: L.Dense(3, name="c"), (6,)),
    (lambda: L.BatchNormalization(name="c"), (6,)),
])
def test_wrong_rank_on_first_call(layer_fn, shape):
    with pytest.raises(ValueError) as e:
        layer_fn()(np.zeros(shape, dtype=np.float32))
    msg = str(e.value)
    assert "'c'" in msg and "ndim" in msg and str(tuple(shape)).replace(",)", ",)") in msg


def test_wrong_rank_after_build():
    conv = L.Conv2D(4, 3, name="c")
    conv(rand((2, 6, 6, 3)))
    with pytest.raises(ValueError, match=r"'c'.*expected ndim=4.*\(None, 6, 6, 3\).*found ndim=3.*\(6, 6, 3\)"):
        conv(rand((6, 6, 3)))


def test_wrong_rank_symbolic():
    with pytest.raises(ValueError, match=r"expected ndim=4.*\(None, 28, 28\)"):
        Sequential([L.Input((28, 28)), L.Conv2D(4, 3)])


def test_kernel_larger_than_input():
    with pytest.raises(ValueError) as e:
        Sequential([L.Input((4, 4, 1)), L.Conv2D(2, 5, name="big")])
    msg = str(e.value)
    assert "'big'" in msg and "(4 - 5 + 0) // 1 + 1 = 0" in msg and "padded input height 4" in msg
    with pytest.raises(ValueError, match=r"\(3 - 5 \+ 0\) // 2 \+ 1 = 0"):
        L.MaxPooling2D(pool_size=5, strides=2)(rand((1, 3, 3, 1)))
    with pytest.raises(ValueError, match=r"kernel 5 \(size 3, dilation 2\)"):
        L.Conv2D(1, 3, dilation_rate=2)(rand((1, 4, 4, 1)))


@pytest.mark.parametrize("factory,wrong,right", [
    (lambda: L.Conv2D(8, 3, kernel_sizes=3), "kernel_sizes", "kernel_size"),
    (lambda: L.Dense(4, activaton="relu"), "activaton", "activation"),
    (lambda: L.MaxPooling2D(pool_sizes=2), "pool_sizes", "pool_size"),
    (lambda: L.BatchNormalization(momentun=0.9), "momentun", "momentum"),
    (lambda: L.Dropout(0.5, sed=1), "sed", "seed"),
])
def test_unknown_argument_suggests(factory, wrong, right):
    with pytest.raises(TypeError, match=rf"unknown argument '{wrong}' \(did you mean '{right}'\?\)"):
        factory()


@pytest.mark.parametrize("rate", [-0.1, 1.0, 1.5])
def test_dropout_rate_out_of_range(rate):
    with pytest.raises(ValueError, match=r"rate.*\[0, 1\)"):
        L.Dropout(rate)


def test_bad_padding_and_arguments():
    with pytest.raises(ValueError, match="padding.*'full'"):
        L.Conv2D(8, 3, padding="full")
    with pytest.raises(ValueError, match="padding.*'causal'"):
        L.MaxPooling2D(padding="causal")
    with pytest.raises(ValueError, match="filters"):
        L.Conv2D(0, 3)
    with pytest.raises(ValueError, match="units"):
        L.Dense(-1)
    with pytest.raises(ValueError, match="kernel_size"):
        L.Conv2D(2, (3, 3, 3))
    with pytest.raises(ValueError, match=r"did you mean 'relu'"):
        L.Conv2D(2, 3, activation="rleu")
    with pytest.raises(ValueError, match=r"did you mean 'Conv2D'"):
        L.deserialize({"class_name": "Conv2d", "config": {}})
    with pytest.raises(ValueError, match="cannot reshape"):
        L.Reshape((5,))(rand((2, 6)))


def test_merge_shape_errors():
    with pytest.raises(ValueError, match=r"Add.*input 0 is \(None, 3\), input 1 is \(None, 4\)"):
        L.Add()([rand((2, 3)), rand((2, 4), 1)])
    with pytest.raises(ValueError, match=r"Concatenate.*axis -1"):
        L.Concatenate()([rand((2, 3, 3)), rand((2, 4, 3), 1)])
    with pytest.raises(ValueError, match="at least 2 inputs"):
        L.Add()([rand((2, 3))])
