"""compile, train_on_batch, predict, evaluate, the fused softmax cross-entropy path, label errors,
and input gradients (saliency) against finite differences."""
import numpy as np
import pytest

from cnnlab import layers as L
from cnnlab import losses, metrics, optimizers
from cnnlab.models import Model, Sequential
from tests.helpers import assert_close, numerical_grad, rand


def tiny(activation="softmax", seed=0, bn=False, k=3):
    from cnnlab.random import set_random_seed
    set_random_seed(seed)
    layers = [L.Input((5, 5, 2)), L.Conv2D(4, 3, activation="tanh")]
    if bn:
        layers.append(L.BatchNormalization())
    layers += [L.Flatten(), L.Dense(k, activation=activation)]
    return Sequential(layers)


def data(n=12, seed=0, k=3):
    x = rand((n, 5, 5, 2), seed)
    y = np.arange(n) % k
    return x, y


def test_compile_with_strings_and_objects():
    m = tiny()
    m.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    assert isinstance(m.optimizer, optimizers.Adam) and isinstance(m.loss, losses.SparseCategoricalCrossentropy)
    assert isinstance(m.metrics[0], metrics.Accuracy)
    opt, loss, acc = optimizers.SGD(0.1), losses.CategoricalCrossentropy(), metrics.TopKCategoricalAccuracy(2)
    m.compile(optimizer=opt, loss=loss, metrics=[acc])
    assert m.optimizer is opt and m.loss is loss and m.metrics == [acc]
    with pytest.raises(ValueError, match="needs a loss"):
        m.compile("sgd")
    with pytest.raises(ValueError, match="did you mean 'categorical_crossentropy'"):
        m.compile("sgd", loss="categorical_crossentropi")
    with pytest.raises(ValueError, match="Unknown optimizer"):
        m.compile("sgdd", loss="mse")


def test_uncompiled_errors():
    m = tiny()
    x, y = data()
    for call in (lambda: m.train_on_batch(x, y), lambda: m.test_on_batch(x, y), lambda: m.evaluate(x, y),
                 lambda: m.fit(x, y, verbose=0)):
        with pytest.raises(RuntimeError, match="must be compiled"):
            call()
    assert m.predict(x).shape == (12, 3)  # predicting needs no compile


def test_train_on_batch_returns_loss_and_metrics():
    m = tiny()
    x, y = data()
    m.compile(optimizers.SGD(0.0), "sparse_categorical_crossentropy")
    p = m.predict(x)
    expected_loss = -np.mean(np.log(p[np.arange(12), y]))
    loss = m.train_on_batch(x, y)
    assert isinstance(loss, float)
    assert_close(loss, expected_loss, rtol=1e-5)
    m.compile(optimizers.SGD(0.0), "sparse_categorical_crossentropy", metrics=["accuracy"])
    loss, acc = m.train_on_batch(x, y)
    assert_close(acc, np.mean(p.argmax(1) == y), rtol=1e-7)
    result = m.train_on_batch(x, y, return_dict=True)
    assert set(result) == {"loss", "accuracy"}
    assert_close(result["loss"], expected_loss, rtol=1e-5)


def test_loss_decreases():
    m = tiny(bn=True)
    x, y = data(24)
    m.compile(optimizers.Adam(0.01), "sparse_categorical_crossentropy")
    losses_ = [m.train_on_batch(x, y) for _ in range(40)]
    assert losses_[-1] < 0.5 * losses_[0]
    assert all(np.isfinite(losses_))
    assert np.mean(m.predict(x).argmax(1) == y) > 0.9


def test_predict_batching_equals_one_forward():
    m = tiny(bn=True)
    x, _ = data(13)
    m.compile("adam", "sparse_categorical_crossentropy")
    m.train_on_batch(*data(13))  # non-trivial moving statistics
    full = m.predict_on_batch(x)
    for bs in (1, 4, 13, 100):
        assert_close(m.predict(x, batch_size=bs), full, rtol=1e-6, atol=1e-7, name=f"batch_size={bs}")
    with pytest.raises(ValueError, match="batch_size"):
        m.predict(x, batch_size=0)
    with pytest.raises(ValueError, match="empty"):
        m.predict(x[:0])


def test_predict_multi_input():
    i1, i2 = L.Input((3,)), L.Input((2,))
    m = Model([i1, i2], L.Dense(2)(L.Concatenate()([i1, i2])))
    x1, x2 = rand((7, 3), 0), rand((7, 2), 1)
    assert_close(m.predict([x1, x2], batch_size=3), m.predict_on_batch([x1, x2]), rtol=1e-6, atol=1e-7)
    with pytest.raises(ValueError, match="different numbers of samples"):
        m.predict([x1, x2[:5]])


def test_evaluate_equals_mean_over_set():
    m = tiny()
    x, y = data(10)
    m.compile("sgd", "sparse_categorical_crossentropy", metrics=["accuracy"])
    p = m.predict(x).astype(np.float64)
    loss, acc = m.evaluate(x, y, batch_size=3)  # batches of 3, 3, 3, 1: weighted by size
    assert_close(loss, -np.mean(np.log(p[np.arange(10), y])), rtol=1e-5)
    assert_close(acc, np.mean(p.argmax(1) == y), rtol=1e-7)
    full = m.evaluate(x, y, batch_size=10, return_dict=True)
    assert_close(full["loss"], loss, rtol=1e-5)
    t_loss, t_acc = m.test_on_batch(x, y)
    assert_close(t_loss, loss, rtol=1e-5)


def _grads(model):
    return {k: g.copy() for k, g in model._grads.items()}


def test_fused_softmax_ce_equals_from_logits_and_unfused():
    x, y = data(8)
    fused = tiny("softmax", seed=1)
    logits_model = tiny(None, seed=1)
    logits_model.set_weights(fused.get_weights())
    fused.compile(optimizers.SGD(0.0), "sparse_categorical_crossentropy")
    logits_model.compile(optimizers.SGD(0.0), losses.SparseCategoricalCrossentropy(from_logits=True))
    assert fused._fused() and not logits_model._fused()
    l1, _ = fused.train_step(x, y)
    l2, _ = logits_model.train_step(x, y)
    assert_close(l1, l2, rtol=1e-6)
    g1, g2 = _grads(fused), _grads(logits_model)
    assert len(g1) == len(g2) == 4
    for (k, a), b in zip(g1.items(), g2.values()):
        assert_close(a, b, rtol=1e-5, atol=1e-7, name=k)
    # the unfused path: loss on probabilities, backward through softmax's Jacobian
    for g in fused._grads.values():
        g[...] = 0
    out = fused.forward(fused._prepare_inputs(x), training=True)[0]
    value, cache = fused.loss.forward(out, y)
    fused.backward([fused.loss.backward(cache)], from_logits=False)
    assert_close(value, l1, rtol=1e-5)
    for k, g in _grads(fused).items():
        assert_close(g, g1[k], rtol=1e-3, atol=1e-6, name=f"unfused {k}")


def test_categorical_crossentropy_one_hot():
    x, y = data(9)
    onehot = np.eye(3, dtype=np.float32)[y]
    a, b = tiny(seed=2), tiny(seed=2)
    a.compile(optimizers.SGD(0.1), "sparse_categorical_crossentropy")
    b.compile(optimizers.SGD(0.1), "categorical_crossentropy", metrics=["accuracy"])
    for _ in range(3):
        la = a.train_on_batch(x, y)
        lb, acc = b.train_on_batch(x, onehot)
        assert_close(lb, la, rtol=1e-5)
    for wa, wb in zip(a.get_weights(), b.get_weights()):
        assert_close(wb, wa, rtol=1e-5, atol=1e-7)
    with pytest.raises(ValueError, match=r"one-hot labels of shape \(N, 3\)"):
        b.train_on_batch(x, y)
    # soft labels: the loss is the cross-entropy against the distribution
    soft = np.full((9, 3), 1 / 3, dtype=np.float32)
    p = b.predict(x).astype(np.float64)
    assert_close(b.test_on_batch(x, soft)[0], -np.mean(np.sum(np.log(p) / 3, 1)), rtol=1e-5)


def test_label_errors():
    m = tiny()
    m.compile("sgd", "sparse_categorical_crossentropy")
    x, y = data(4)
    before = m.get_weights()
    with pytest.raises(ValueError, match=r"label 3 is outside \[0, 3\)"):
        m.train_on_batch(x, np.array([0, 1, 2, 3]))
    with pytest.raises(ValueError, match=r"label -1 is outside \[0, 3\)"):
        m.train_on_batch(x, np.array([0, -1, 2, 1]))
    with pytest.raises(ValueError, match="4 inputs but 3 labels"):
        m.train_on_batch(x, y[:3])
    with pytest.raises(ValueError, match="not an integer"):
        m.train_on_batch(x, np.array([0, 1.5, 2, 1]))
    with pytest.raises(ValueError, match="NaN"):
        m.train_on_batch(x, np.array([0, np.nan, 2, 1]))
    with pytest.raises(ValueError, match=r"label 5 is outside"):
        m.evaluate(x, np.array([0, 5, 2, 1]))
    with pytest.raises(ValueError, match=r"expected shape \(None, 5, 5, 2\), received \(4, 5, 5, 3\)"):
        m.train_on_batch(rand((4, 5, 5, 3)), y)
    for a, b in zip(before, m.get_weights()):
        np.testing.assert_array_equal(a, b)
    # float labels holding integers are fine, as are (N, 1) columns
    m.train_on_batch(x, y.astype(np.float32))
    m.train_on_batch(x, y[:, None])


def test_input_gradient_finite_differences():
    m = tiny("softmax", seed=3)
    for layer in m.layers:  # float64 weights, so central differences are exact
        for k in layer.params:
            layer.params[k] = layer.params[k].astype(np.float64)
    x32 = rand((2, 5, 5, 2), 4)
    dout = rand((2, 3), 5, dtype=np.float64)
    dx = m.input_gradient(x32, dout)
    assert dx.shape == x32.shape
    x = x32.astype(np.float64)

    def f():
        return float(np.sum(m.forward([x])[0] * dout))

    assert_close(dx, numerical_grad(f, x), rtol=1e-4, atol=1e-7, name="input gradient")


def test_input_gradient_leaves_training_state_alone():
    m = tiny(seed=4)
    m.compile(optimizers.SGD(0.0), "sparse_categorical_crossentropy")
    x, y = data(4)
    m.train_step(x, y)
    grads = _grads(m)
    need_dx = m.layers[0].need_dx
    assert need_dx is False  # the first layer's input gradient is skipped in training
    dx = m.input_gradient(x, rand((4, 3), 9))
    assert dx is not None and dx.shape == x.shape and np.any(dx != 0)
    assert m.layers[0].need_dx is need_dx
    for k, g in _grads(m).items():
        np.testing.assert_array_equal(g, grads[k], err_msg=k)


def test_freezing_a_layer_after_construction():
    m = Sequential([L.Input((4,)), L.Dense(3, name="a"), L.Dense(2, name="b")])
    m.get_layer("a").trainable = False
    m.compile(optimizers.SGD(0.1), "mse")
    frozen = m.get_layer("a").get_weights()
    head = m.get_layer("b").get_weights()
    m.train_on_batch(rand((2, 4)), rand((2, 2), 1))
    for a, b in zip(frozen, m.get_layer("a").get_weights()):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(head[0], m.get_layer("b").get_weights()[0])
    m.get_layer("a").trainable = True
    m.train_on_batch(rand((2, 4)), rand((2, 2), 1))
    assert not np.array_equal(frozen[0], m.get_layer("a").get_weights()[0])


def test_forward_releases_last_caches_so_workspace_buffers_are_reused():
    # columns over 1 MiB come from the workspace pool; with the old cache dropped before the next
    # forward, the next step's columns reuse the same memory instead of a second buffer
    from cnnlab.random import set_random_seed
    set_random_seed(0)
    m = Sequential([L.Input((16, 16, 8)), L.Conv2D(16, 3, padding="same", activation="relu"),
                    L.Flatten(), L.Dense(3, activation="softmax")])
    m.compile("sgd", "sparse_categorical_crossentropy")
    x, y = rand((32, 16, 16, 8), 1), np.arange(32) % 3
    conv = m.layers[0]

    def cols_address():
        cols = conv._cache.cols2d
        assert cols.nbytes > 1 << 20
        return cols.__array_interface__["data"][0]

    m.train_on_batch(x, y)
    first = cols_address()
    m.train_on_batch(x, y)
    assert cols_address() == first
    assert conv._act_cache is not None
    conv.release()
    assert conv._cache is None and conv._act_cache is None


def test_label_smoothing_in_the_fused_softmax_path():
    # the model takes the loss on the logits of its softmax output; smoothing must reach that path
    x, y = data()
    smooth = losses.SparseCategoricalCrossentropy(label_smoothing=0.3)
    m = tiny()
    m.compile("sgd", smooth)
    assert m._fused()
    fused_value = m.test_on_batch(x, y)
    assert_close(fused_value, smooth(y, m.predict(x)), rtol=1e-5)
    assert abs(fused_value - losses.SparseCategoricalCrossentropy()(y, m.predict(x))) > 1e-3


def test_train_step_gradients_are_this_steps_only():
    # a step overwrites each gradient with its first contribution instead of zeroing first:
    # the result must equal zero-then-accumulate, and a layer the loss does not reach must end at zero
    inp = L.Input((6,))
    h = L.Dense(5, activation="relu", name="h")(inp)
    model = Model(inp, [L.Dense(3, activation="softmax", name="out")(h), L.Dense(2, name="side")(h)])
    model.compile(optimizers.SGD(0.0), "sparse_categorical_crossentropy")
    x, y = rand((8, 6), 1), np.arange(8) % 3
    for l in model.layers:
        for g in l.grads.values():
            g[...] = 7.0  # left over from anything before
    model.train_step(x, y)
    got = {k: g.copy() for k, g in model._grads.items()}
    assert not got["side/kernel"].any() and not got["side/bias"].any()
    for g in model._grads.values():  # the old way: zero, then every contribution adds
        g[...] = 0
    out = model.forward(model._prepare_inputs(x), training=True)[0]
    model.backward([model._loss_and_grad(out, y)[1]], from_logits=True)
    for k, g in model._grads.items():
        assert_close(got[k], g, rtol=1e-6, atol=0, name=k)
    assert got["h/kernel"].any()
    model.backward([model._loss_and_grad(out, y)[1]], from_logits=True)  # outside a step, backward adds
    assert_close(model._grads["h/kernel"], 2 * got["h/kernel"], rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("threads_n", [1, 2])
def test_dense_weight_gradient_in_the_background_gives_the_same_steps(monkeypatch, threads_n):
    """A 576 -> 256 dense layer at batch 128 has its dW computed beside the backward pass (when a
    pool thread is free); the steps are the same as with it computed in place."""
    from cnnlab.ops import dense, threads
    n = threads.num_threads()
    threads.set_num_threads(threads_n)
    try:
        x = np.random.default_rng(0).random((128, 6, 6, 16), dtype=np.float32)
        y = np.arange(128) % 10
        results = {}
        handed = []
        real = threads.background
        monkeypatch.setattr(threads, "background",
                            lambda fn, writes=(): (handed.append(threads.can_background()), real(fn, writes)))
        for bg in (False, True):
            monkeypatch.setattr(dense, "BACKGROUND_DW_MACS", (1 << 22, 1 << 25) if bg else (0, 0))
            model = Sequential([L.Input((6, 6, 16)), L.Flatten(), L.Dense(256, activation="relu"),
                                L.Dense(10, activation="softmax")])
            np.random.seed(0)
            model.set_weights([np.random.default_rng(i).standard_normal(w.shape).astype(np.float32) * 0.05
                               for i, w in enumerate(model.get_weights())])
            model.compile("adam", "sparse_categorical_crossentropy")
            losses = [model.train_step(x, y)[0] for _ in range(3)]
            results[bg] = losses, model.get_weights()
        assert handed == ([True] * 3 if threads_n == 2 else [])  # one dW per step went to the pool thread
        assert results[True][0] == results[False][0]
        for a, b in zip(results[True][1], results[False][1]):
            assert np.array_equal(a, b)
    finally:
        threads.set_num_threads(n)


@pytest.mark.parametrize("extra", ["plain", "regularizer", "clipnorm"])
def test_first_conv_weight_gradient_in_the_background_gives_the_same_steps(monkeypatch, extra):
    """The first convolution's dW (12 filters over 28x28 at batch 128: 12M multiply-adds) is computed
    beside the optimizer's other updates; regularization and clipping wait for it. The steps are
    the same as with it computed in place."""
    from cnnlab.ops import threads
    n = threads.num_threads()
    threads.set_num_threads(2)
    try:
        x = np.random.default_rng(0).random((128, 28, 28, 1), dtype=np.float32)
        y = np.arange(128) % 10
        results, handed = {}, []
        real = threads.background
        monkeypatch.setattr(threads, "background",
                            lambda fn, writes=(): (handed.append(threads.can_background()), real(fn, writes)))
        for bg in (False, True):
            monkeypatch.setattr(L.Conv2D, "BACKGROUND_DW_MACS", (1 << 22, 1 << 24) if bg else (0, 0))
            reg = "l2" if extra == "regularizer" else None
            model = Sequential([L.Input((28, 28, 1)), L.Conv2D(12, 3, padding="same", kernel_regularizer=reg),
                                L.MaxPooling2D(3, strides=2), L.Flatten(), L.Dense(10, activation="softmax")])
            model.set_weights([np.random.default_rng(i).standard_normal(w.shape).astype(np.float32) * 0.1
                               for i, w in enumerate(model.get_weights())])
            model.compile(optimizers.Adam(clipnorm=1.0) if extra == "clipnorm" else "adam",
                          "sparse_categorical_crossentropy")
            losses = [model.train_step(x, y)[0] for _ in range(3)]
            results[bg] = losses, model.get_weights()
        assert handed.count(True) == 3  # the first convolution's dW went to the pool thread each step
        assert results[True][0] == results[False][0]
        for a, b in zip(results[True][1], results[False][1]):
            assert np.array_equal(a, b)
    finally:
        threads.set_num_threads(n)
