"""The model zoo: every recipe builds and runs, the seeds' parameter counts (by hand), the recipes'
training settings, and the default `cnnlab train` recipe learns the 8x8 digits."""
import math

import numpy as np
import pytest

from cnnlab import layers as L
from cnnlab import losses, optimizers, zoo
from cnnlab.datasets import augment
from cnnlab.utils import set_random_seed
from tests.helpers import one_blas_thread


def conv(k, c_in, f, bias=True):
    return k * k * c_in * f + (f if bias else 0)


def dense(n_in, n_out, bias=True):
    return n_in * n_out + (n_out if bias else 0)


def summary_of(model):
    lines = []
    model.summary(print_fn=lines.append)
    return "\n".join(lines)


@pytest.mark.parametrize("name", zoo.NAMES)
def test_every_recipe_builds_and_runs(name):
    recipe = zoo.get(name)
    assert recipe.name == name and recipe.description and isinstance(recipe.notes, str)
    model = recipe.build()
    assert model.output_shape == (None, recipe.num_classes)
    assert tuple(model.input_shape[1:]) == recipe.input_shape
    assert not model.compiled
    if name == "seed004":  # 1.6 GFLOPs an image: shapes only
        return
    x = np.random.default_rng(0).random((2,) + recipe.input_shape, dtype=np.float32)
    y = model.predict(x)
    assert y.shape == (2, recipe.num_classes) and np.all(np.isfinite(y))
    np.testing.assert_allclose(y.sum(axis=1), 1.0, rtol=1e-5)  # every recipe ends in a softmax


@pytest.mark.parametrize("name", zoo.NAMES)
def test_recipe_settings_are_usable(name):
    recipe = zoo.get(name)
    opt = optimizers.get(recipe.optimizer)
    assert opt.learning_rate > 0
    assert losses.get(recipe.loss).name == "sparse_categorical_crossentropy" and "accuracy" in recipe.metrics
    assert recipe.batch_size >= 1 and recipe.epochs >= 1 and recipe.dataset
    if recipe.augment is not None:
        assert len(augment.parse(recipe.augment).transforms) >= 1
    assert set(recipe.to_dict()) >= {"name", "optimizer", "batch_size", "epochs", "augment", "claim", "notes"}


@pytest.mark.parametrize("name,shape,classes", [
    ("vgg_small", (28, 28, 1), 10), ("vgg_small", (32, 32, 3), 100), ("resnet_small", (28, 28, 1), 10),
    ("lenet5", (32, 32, 3), 10), ("mnist_best", (28, 28, 1), 7), ("seed002", (28, 28, 3), 5)])
def test_build_with_other_shapes(name, shape, classes):
    model = zoo.get(name).build(input_shape=shape, num_classes=classes)
    assert model.output_shape == (None, classes)
    assert model.predict(np.zeros((2,) + shape, np.float32)).shape == (2, classes)


def test_seed004_parameter_count_and_summary():
    model = zoo.get("seed004").build()
    assert model.count_params() == 10_865_724
    text = summary_of(model)
    assert "Total params: 10,865,724" in text
    for shape in ["(None, 100, 100, 32)", "(None, 50, 50, 64)", "(None, 25, 25, 128)", "(None, 12, 12, 256)",
                  "(None, 6, 6, 256)", "(None, 9216)", "(None, 1024)", "(None, 60)"]:
        assert shape in text
    # The document's per-layer counts.
    counts = [l.count_params() for l in model.layers if l.count_params()]
    assert counts == [896, 9248, 9248, 18496, 36928, 36928, 73856, 147584, 147584, 295168, 590080,
                      9438208, 61500]


def test_seed000_parameter_count():
    # No biases anywhere; 'same' pools 28 -> 14 -> 7 -> 4.
    expected = (conv(3, 1, 32, False) + conv(3, 32, 64, False) + conv(3, 64, 128, False)
                + dense(4 * 4 * 128, 625, False) + dense(625, 10, False))
    model = zoo.get("seed000").build()
    assert expected == 1_378_698 and model.count_params() == expected
    assert all(not getattr(l, "use_bias", False) for l in model.layers)
    assert [l.rate for l in model.layers if isinstance(l, L.Dropout)] == [0.2, 0.2, 0.2, 0.5]
    assert model.get_layer(index=0).kernel_initializer.stddev == 0.01


def test_seed001_parameter_counts_and_relu_output():
    # 'valid' 3x3/2 pools: 28 -> 13 -> 6.
    expected = conv(3, 1, 12) + conv(3, 12, 16) + dense(6 * 6 * 16, 256) + dense(256, 100) + dense(100, 10)
    assert expected == 176_286
    faithful, fixed = zoo.get("seed001").build(), zoo.get("seed001_fixed").build()
    assert faithful.count_params() == fixed.count_params() == expected
    # Faithful: Dense(10, relu) then a Softmax layer; fixed: a softmax Dense.
    assert isinstance(faithful.layers[-1], L.Softmax) and faithful.layers[-2].activation == "relu"
    assert fixed.layers[-1].activation == "softmax"
    # The seed's convolutions have no activation.
    assert all(l.activation is None for l in faithful.layers if isinstance(l, L.Conv2D))
    bn, bn_fixed = zoo.get("seed001_bn").build(), zoo.get("seed001_bn_fixed").build()
    assert bn.count_params() == bn_fixed.count_params() == expected + 4 * 12 + 4 * 16
    assert [l.momentum for l in bn.layers if isinstance(l, L.BatchNormalization)] == [0.9, 0.9]
    assert sum(isinstance(l, L.Dropout) for l in bn.layers) == 1  # the seed's first dropout is dead
    # the fix keeps the dropout the seed ran: reviving the dead one cost accuracy
    assert sum(isinstance(l, L.Dropout) for l in bn_fixed.layers) == 1
    assert bn_fixed.layers[-1].activation == "softmax" and not isinstance(bn_fixed.layers[-1], L.Softmax)
    recipe = zoo.get("seed001_bn")
    assert recipe.augment == "shift:1,flip:horizontal" and recipe.epochs == 30
    assert zoo.get("seed001_bn_fixed").augment == "shift:1"  # mirrored digits change their labels
    assert "relu" in zoo.get("seed001").notes.lower() and "99.07%" in zoo.get("seed001").claim


def test_seed001_faithful_loss_is_softmax_cross_entropy_of_relu_logits():
    set_random_seed(0)
    model = zoo.get("seed001").compiled()
    x = np.random.default_rng(1).random((4, 28, 28, 1), dtype=np.float32)
    y = np.array([0, 1, 2, 3])
    loss = model.test_on_batch(x, y)[0]
    h = x
    for layer in model.layers[:-1]:
        h = layer.forward(h, training=False)
    assert np.all(h >= 0)  # ReLU'd logits
    z = h - h.max(axis=1, keepdims=True)
    expected = np.mean(np.log(np.exp(z).sum(axis=1)) - z[np.arange(4), y])
    assert loss == pytest.approx(expected, rel=1e-5)
    model.train_on_batch(x, y)  # and it trains


def test_seed002_seed003_parameter_counts_and_init():
    expected = conv(5, 1, 32) + conv(5, 32, 64) + dense(7 * 7 * 64, 1024) + dense(1024, 10)
    assert expected == 3_274_634
    set_random_seed(0)
    m2 = zoo.get("seed002").build()
    m3 = zoo.get("seed003").build()
    assert m2.count_params() == m3.count_params() == expected
    w2 = m2.get_layer(index=0).get_weights()
    assert np.all(np.abs(w2[0]) <= 0.2 + 1e-6) and np.allclose(w2[1], 0.1)  # truncated N(0, 0.1), bias 0.1
    dense3 = [l for l in m3.layers if isinstance(l, L.Dense)][0].get_weights()[0]
    assert 0.95 < dense3.std() < 1.05  # N(0, 1)
    assert [l.rate for l in m2.layers if isinstance(l, L.Dropout)] == [0.5]
    assert [l.rate for l in m3.layers if isinstance(l, L.Dropout)] == [0.25]
    assert "initialization" in zoo.get("seed003").notes


@pytest.mark.parametrize("name,cls,lr,batch", [
    ("seed000", "RMSprop", 0.001, 128), ("seed001", "Adam", 0.001, 128), ("seed001_bn", "Adam", 0.001, 128),
    ("seed002", "Adam", 1e-4, 50), ("seed003", "SGD", 1e-5, 128), ("seed004", "Adam", 0.001, 32)])
def test_compiled_uses_the_seed_optimizer(name, cls, lr, batch):
    recipe = zoo.get(name)
    model = recipe.compiled()
    assert model.compiled and type(model.optimizer).__name__ == cls
    assert model.optimizer.learning_rate == pytest.approx(lr)
    assert recipe.batch_size == batch
    if name == "seed000":
        assert model.optimizer.rho == pytest.approx(0.9)


def test_schedules_follow_steps_per_epoch():
    recipe = zoo.get("mnist_best")
    default = recipe.optimizer["config"]["learning_rate"]["config"]["total_steps"]
    assert default == recipe.epochs * math.ceil(60000 / recipe.batch_size)
    model = recipe.compiled(steps_per_epoch=10)
    assert model.optimizer.schedule.total_steps == 10 * recipe.epochs
    assert type(model.optimizer).__name__ in ("Adam", "AdamW")


def test_get_returns_independent_copies_and_unknown_names_suggest():
    a = zoo.get("seed002")
    a.optimizer["config"]["learning_rate"] = 1.0
    assert zoo.get("seed002").optimizer["config"]["learning_rate"] == 1e-4
    with pytest.raises(ValueError, match="seed001"):
        zoo.get("seed01")
    with pytest.raises(ValueError, match="Unknown"):
        zoo.get("alexnet")


def test_mnist_best_is_cheap_enough():
    text = summary_of(zoo.get("mnist_best").build())
    line = next(l for l in text.splitlines() if "FLOPs per sample" in l)
    assert line.rstrip().endswith("M") and float(line.split(":")[1].split()[0]) < 16  # 15 M: 38-47 s per epoch on 2 cores, 22 epochs in about 15 minutes


def test_digits_small_reaches_97_percent():
    from cnnlab import datasets
    data = datasets.load("digits")
    x_train, x_test = data.x_train / 255.0, data.x_test / 255.0
    recipe = zoo.get("digits_small")
    set_random_seed(0)
    model = recipe.compiled(input_shape=data.input_shape, num_classes=data.num_classes,
                            steps_per_epoch=math.ceil(len(x_train) / recipe.batch_size))
    # Tiny GEMMs: one BLAS thread is ~10x faster than two spinning threads on a shared machine.
    with one_blas_thread():
        model.fit(x_train, data.y_train, batch_size=recipe.batch_size, epochs=recipe.epochs, verbose=0, seed=0)
    _, accuracy = model.evaluate(x_test, data.y_test)
    assert accuracy >= 0.97
