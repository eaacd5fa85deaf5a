"""Sequential and functional models: construction, graph errors, layers/get_layer/count_params, summary."""
import numpy as np
import pytest

from cnnlab import layers as L
from cnnlab.models import Model, Sequential
from tests.helpers import assert_close, rand


def small_stack():
    return [L.Conv2D(3, 3, activation="relu"), L.MaxPooling2D(), L.Flatten(), L.Dense(4, activation="softmax")]


def copy_weights(src, dst):
    dst.set_weights(src.get_weights())


def test_sequential_construction_ways_agree():
    L.clear_session()
    x = rand((2, 8, 8, 2), 0)
    a = Sequential([L.Input((8, 8, 2))] + small_stack())
    b = Sequential()
    b.add(L.Input((8, 8, 2)))
    for layer in small_stack():
        b.add(layer)
    first, *rest = small_stack()
    c = Sequential([L.Conv2D(3, 3, activation="relu", input_shape=(8, 8, 2))] + rest)
    d = Sequential(small_stack())  # built lazily from the first batch
    assert not d.built
    with pytest.raises(ValueError, match="not been built"):
        d.count_params()
    d.predict(x)
    assert d.built
    for m in (a, b, c, d):
        assert m.input_shape == (None, 8, 8, 2)
        assert m.output_shape == (None, 4)
        assert m.count_params() == (3 * 3 * 2 * 3 + 3) + (27 * 4 + 4)
        assert len(m.layers) == 4 and type(m.layers[0]) is L.Conv2D
    for m in (b, c, d):
        copy_weights(a, m)
        assert_close(m.predict(x), a.predict(x), rtol=0, atol=0)


def test_sequential_build_explicit():
    m = Sequential([L.Dense(3), L.Dense(2)])
    m.build((None, 5))
    assert m.output_shape == (None, 2) and m.count_params() == 18 + 8


def test_sequential_errors():
    m = Sequential([L.Dense(2, input_shape=(3,))])
    with pytest.raises(ValueError, match="Input can only be the first"):
        m.add(L.Input((3,)))
    with pytest.raises(TypeError, match="takes a Layer"):
        m.add("dense")
    with pytest.raises(ValueError, match="functional API"):
        m.add(L.Add())
    with pytest.raises(ValueError, match=r"expected shape \(None, 3\), received \(4, 5\)"):
        m.predict(rand((4, 5)))
    with pytest.raises(ValueError, match="no layers"):
        Sequential().predict(rand((2, 3)))


def residual_concat_model():
    L.clear_session()
    inp = L.Input((6, 6, 3), name="img")
    a = L.Conv2D(3, 3, padding="same", activation="relu", name="a")(inp)
    s = L.Add(name="skip")([a, inp])
    b = L.Conv2D(2, 1, name="b")(inp)
    c = L.Concatenate(name="cat")([s, b])
    g = L.GlobalAveragePooling2D(name="gap")(c)
    out = L.Dense(4, activation="softmax", name="fc")(g)
    return Model(inp, out, name="resnet_ish")


def test_functional_residual_and_concat():
    m = residual_concat_model()
    assert [l.name for l in m.layers][0] == "img"
    assert {l.name for l in m.layers} == {"img", "a", "skip", "b", "cat", "gap", "fc"}
    assert m.get_layer("cat").output_shape == (None, 6, 6, 5)
    assert m.get_layer(index=0).name == "img"
    with pytest.raises(ValueError, match=r"No layer named 'zz'.*'fc'"):
        m.get_layer("zz")
    assert m.count_params() == (27 * 3 + 3) + (3 * 2 + 2) + (5 * 4 + 4)
    # forward equals a manual composition of the layers
    x = rand((2, 6, 6, 3), 1)
    get = m.get_layer
    a = get("a").forward(x)
    ref = get("fc").forward(get("gap").forward(np.concatenate([a + x, get("b").forward(x)], -1)))
    assert_close(m.predict(x), ref, rtol=1e-6, atol=1e-7)


def test_functional_multi_input():
    L.clear_session()
    i1, i2 = L.Input((4,), name="i1"), L.Input((3,), name="i2")
    h = L.Concatenate()([L.Dense(2, name="d1")(i1), L.Dense(2, name="d2")(i2)])
    m = Model([i1, i2], L.Dense(1, name="out")(h))
    assert m.input_shape == [(None, 4), (None, 3)]
    x1, x2 = rand((5, 4), 0), rand((5, 3), 1)
    ref = m.get_layer("out").forward(np.concatenate([m.get_layer("d1").forward(x1),
                                                      m.get_layer("d2").forward(x2)], -1))
    assert_close(m.predict([x1, x2]), ref, rtol=1e-6, atol=1e-7)
    dx1, dx2 = m.backward([np.ones((5, 1), np.float32)])
    assert dx1 is None and dx2 is None  # the Dense layers fed by inputs skip their dx


def test_graph_errors():
    L.clear_session()
    a, b = L.Input((4,)), L.Input((4,))
    out = L.Add()([L.Dense(2)(a), L.Dense(2)(b)])
    with pytest.raises(ValueError, match="graph disconnected"):
        Model(a, out)
    x = L.Input((4,), name="x")
    with pytest.raises(ValueError, match="two layers are named 'x'"):
        Model(x, L.Dense(2, name="x")(x))
    d = L.Dense(4)
    t = L.Input((4,))
    with pytest.raises(ValueError, match="used more than once"):
        Model(t, d(d(t)))
    with pytest.raises(ValueError, match="must come from Input"):
        Model(t, rand((2, 3)))


def test_config_round_trip_functional_and_sequential():
    m = residual_concat_model()
    copy = Model.from_config(m.get_config())
    assert copy.get_config() == m.get_config()
    copy.set_weights(m.get_weights())
    x = rand((3, 6, 6, 3), 2)
    assert_close(copy.predict(x), m.predict(x), rtol=0, atol=0)
    s = Sequential([L.Input((8, 8, 2))] + small_stack())
    s2 = Sequential.from_config(s.get_config())
    assert s2.get_config() == s.get_config()


def test_set_weights_count_error():
    m = residual_concat_model()
    with pytest.raises(ValueError, match=r"expects 6 weight arrays, received 5"):
        m.set_weights(m.get_weights()[:5])


# ----- summary --------------------------------------------------------------------------------

def fruits360():
    L.clear_session()
    layers = [L.Input((100, 100, 3))]
    for filters, n in ((32, 3), (64, 3), (128, 3), (256, 2)):
        layers += [L.Conv2D(filters, 3, padding="same", activation="relu") for _ in range(n)]
        layers.append(L.MaxPool2D())
    layers += [L.Flatten(), L.Dense(1024, activation="relu"), L.Dense(60, activation="softmax")]
    return Sequential(layers)


def summary_of(model, **kwargs):
    lines = []
    model.summary(print_fn=lines.append, **kwargs)
    return "\n".join(lines)


def test_summary_seed_004():
    m = fruits360()
    text = summary_of(m, batch_size=32)
    lines = text.splitlines()
    assert lines[0] == 'Model: "sequential"'
    header = lines[2]
    assert header.startswith("Layer (type)") and "Output Shape" in header and "Param #" in header
    assert "Connected to" not in header
    assert set(lines[1]) == {"_"} and set(lines[3]) == {"="}
    assert "Total params: 10,865,724" in lines
    assert "Trainable params: 10,865,724" in lines
    assert "Non-trainable params: 0" in lines
    flat = next(l for l in lines if l.startswith("flatten (Flatten)"))
    assert "(None, 9216)" in flat
    pool = next(l for l in lines if l.startswith("max_pooling2d_3 (MaxPooling2D)"))
    assert "(None, 6, 6, 256)" in pool
    dense = next(l for l in lines if l.startswith("dense (Dense)"))
    assert "(None, 1024)" in dense and ("9438208" in dense or "9,438,208" in dense)
    assert any(l.startswith("conv2d_10 (Conv2D)") and "(None, 12, 12, 256)" in l for l in lines)
    assert not any("input_layer" in l for l in lines)  # Keras hides a Sequential's InputLayer
    flops_line = next(l for l in lines if l.startswith("FLOPs per sample"))
    assert flops_line.endswith(" G")
    assert any(l.startswith("Activation memory per sample:") and "MiB" in l for l in lines)
    assert any(l.startswith("Activation memory for a batch of 32:") for l in lines)
    assert "Parameter memory: 41.45 MiB" in lines  # 10,865,724 * 4 bytes
    assert len(set(len(l) for l in (lines[1], lines[3]))) == 1
    assert m.count_params() == 10_865_724


def test_summary_flops_and_memory_values():
    from cnnlab.models.summary import layer_flops
    L.clear_session()
    m = Sequential([L.Input((6, 6, 1)), L.Conv2D(2, 3, name="c"), L.Flatten(name="f"), L.Dense(3, name="d")])
    conv = m.get_layer("c")
    # 4*4*2 outputs, each 3*3*1 multiply-adds, plus the bias
    assert layer_flops(conv, (None, 6, 6, 1), (None, 4, 4, 2)) == 2 * 9 * 32 + 32
    assert layer_flops(m.get_layer("d"), (None, 32), (None, 3)) == 2 * 32 * 3 + 3
    text = summary_of(m)
    total = 2 * 9 * 32 + 32 + 2 * 32 * 3 + 3
    assert f"FLOPs per sample (forward): {total}\n" in text  # under 1000: no suffix
    # activations: 32 + 32 + 3 floats (input layer excluded in Sequential) of 4 bytes
    assert "Activation memory per sample: 268 B" in text


def test_summary_functional_connected_to():
    m = residual_concat_model()
    lines = summary_of(m).splitlines()
    assert lines[0] == 'Model: "resnet_ish"'
    assert "Connected to" in lines[2]
    cat = next(l for l in lines if l.startswith("cat (Concatenate)"))
    assert cat.rstrip().endswith("skip, b") and "(None, 6, 6, 5)" in cat
    skip = next(l for l in lines if l.startswith("skip (Add)"))
    assert skip.rstrip().endswith("a, img")
    assert any(l.startswith("img (InputLayer)") for l in lines)
    assert f"Total params: {m.count_params():,}" in lines


def test_summary_non_trainable_bn():
    L.clear_session()
    m = Sequential([L.Input((4, 4, 2)), L.Conv2D(3, 3), L.BatchNormalization()])
    text = summary_of(m)
    assert "Total params: 69" in text and "Trainable params: 63" in text and "Non-trainable params: 6" in text
