"""Training over two processes (cnnlab.training.processes): the same steps as one process, to
float32 rounding; errors, a dead child and Ctrl-C surface in the parent; the weights go back."""
import os
import signal
import sys

import numpy as np
import pytest

from cnnlab import layers as L
from cnnlab.models import Sequential
from cnnlab.optimizers.base import _follows

needs_fork = pytest.mark.skipif(not hasattr(os, "fork"), reason="forks a child process")


def _model(extra=(), optimizer="adam"):
    head = [] if any(isinstance(l, L.Flatten) for l in extra) else [L.Flatten()]
    model = Sequential([L.Input((12, 12, 1)), L.Conv2D(4, 3, padding="same", activation="relu"),
                        L.MaxPooling2D(3, strides=2), *extra, *head, L.Dense(10, activation="softmax")])
    model.set_weights([np.random.default_rng(i).standard_normal(w.shape).astype(np.float32) * 0.3
                       for i, w in enumerate(model.get_weights())])
    for layer in model.layers:  # a variance is not negative
        if "moving_variance" in getattr(layer, "state", {}):
            np.abs(layer.state["moving_variance"], out=layer.state["moving_variance"])
    model.compile(optimizer, "sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def _data(n=24):
    rng = np.random.default_rng(0)
    return rng.random((n, 12, 12, 1), dtype=np.float32), np.arange(n) % 10


@pytest.fixture
def split():
    models = []

    def make(**kw):
        model = _model(**kw)
        model.use_processes(2)
        models.append(model)
        return model

    yield make
    for model in models:
        model.use_processes(1)


def _same_steps(one, two, x, y, grads=False, weights_tol=1e-4):
    """Three steps of each model: the same losses, predictions (and gradients), then weights."""
    for _ in range(3):
        l1, out1 = one.train_step(x, y)
        l2, out2 = two.train_step(x, y)
        assert l2 == pytest.approx(l1, rel=1e-5)
        np.testing.assert_allclose(out2, out1, rtol=1e-4, atol=1e-6)
        for a, b in zip(one.layers, two.layers) if grads else ():  # the whole batch's, summed over both
            for k in a.grads:
                np.testing.assert_allclose(b.grads[k], a.grads[k], rtol=1e-4, atol=1e-6)
    for a, b in zip(one.get_weights(), two.get_weights()):
        np.testing.assert_allclose(b, a, rtol=weights_tol, atol=weights_tol / 10)
    assert two._process_group is not None  # it did split


@needs_fork
@pytest.mark.parametrize("n", [24, 25])
def test_steps_match_one_process(split, n):
    x, y = _data(n)
    _same_steps(_model(), split(), x, y)


@needs_fork
@pytest.mark.parametrize("n", [24, 25])
def test_dropout_masks_are_one_processs(split, n):
    # two dropout layers, one before the flatten (a 4-D mask) and one after: the parent draws each
    # whole batch's mask from the layer's generator, as one process does, and hands the child its half
    x, y = _data(n)
    extra = lambda: [L.Dropout(0.4, seed=7), L.Flatten(), L.Dense(16, activation="relu"),  # noqa: E731
                     L.Dropout(0.5, seed=8)]
    one, two = _model(extra()), split(extra=extra())
    _same_steps(one, two, x, y)
    drops = [[l for l in m.layers if isinstance(l, L.Dropout)] for m in (one, two)]
    for a, b in zip(*drops):  # the generators went as far: the next masks agree too
        assert a.rng.random() == b.rng.random() and b._given_mask is None
    # without the masks handed over, the halves' masks differ: the losses do not agree
    saved = two._process_group._drops
    two._process_group._drops = []
    try:
        assert two.train_step(x, y)[0] != pytest.approx(one.train_step(x, y)[0], rel=1e-5)
    finally:
        two._process_group._drops = saved


@needs_fork
def test_fit_with_a_smaller_last_batch_and_weights_set_between_steps(split):
    x, y = _data(50)
    one, two = _model(), split()
    h1 = one.fit(x, y, batch_size=16, epochs=2, verbose=0, seed=3)
    h2 = two.fit(x, y, batch_size=16, epochs=2, verbose=0, seed=3)
    np.testing.assert_allclose(h2.history["loss"], h1.history["loss"], rtol=1e-5)
    weights = [w * 0.5 for w in one.get_weights()]
    one.set_weights(weights)
    two.set_weights(weights)  # written into the shared memory the child reads
    assert two.train_step(x[:16], y[:16])[0] == pytest.approx(one.train_step(x[:16], y[:16])[0], rel=1e-5)


@needs_fork
def test_larger_batch_makes_a_new_group(split):
    two = split()
    x, y = _data(40)
    two.train_step(x[:10], y[:10])
    first = two._process_group
    two.train_step(x, y)
    assert two._process_group is not first and two._process_group.capacity == 40


@needs_fork
def test_models_that_cannot_split_say_why():
    from cnnlab.models import Model
    from cnnlab.training.processes import CannotSplit
    a, b = L.Input((4,)), L.Input((4,))
    two_inputs = Model([a, b], L.Dense(2, activation="softmax")(L.Add()([a, b])))
    with pytest.raises(CannotSplit, match="one input and one output, received 2 and 1"):
        two_inputs.use_processes(2)
    with pytest.raises(ValueError, match="1 or 2"):
        _model().use_processes(3)


def _bn_layers(momentum=0.5):
    # batch normalization after the convolution (4-D, per channel) and after a dense layer (2-D)
    return [L.BatchNormalization(momentum=momentum), L.Activation("relu"), L.Flatten(), L.Dense(16),
            L.BatchNormalization(momentum=momentum, name="bn_dense"), L.Activation("relu")]


@needs_fork
@pytest.mark.parametrize("n", [24, 25])
def test_batch_normalization_uses_the_whole_batchs_statistics(split, n):
    # SGD: Adam would blow up the rounding noise in the gradients that batch normalization makes
    # zero in theory (the dense bias before it), and the weights would not compare
    x, y = _data(n)
    one, two = _model(_bn_layers(), "sgd"), split(extra=_bn_layers(), optimizer="sgd")
    # the weights include the moving statistics: the whole batch's, not the parent's half's
    _same_steps(one, two, x, y, grads=True, weights_tol=1e-5)
    bn = two.get_layer("bn_dense")
    assert "_reduce" not in vars(bn)  # the layer sums over this process alone again
    with pytest.raises(RuntimeError, match="run forward again"):
        two.backward([np.ones((n // 2, 10), np.float32)])  # the caches of the split step's half
    np.testing.assert_allclose(two.predict(x), one.predict(x), rtol=1e-4, atol=1e-6)
    # a half normalized by its own statistics would not have agreed
    half = one(x[:n // 2], training=True)
    assert np.abs(half - one(x, training=True)[:n // 2]).max() > 1e-3


@needs_fork
@pytest.mark.parametrize("side", ["parent", "child"])
@pytest.mark.parametrize("where", ["before", "after"])
def test_a_failure_at_either_side_of_an_exchange_is_raised_not_hung(split, monkeypatch, side, where):
    # one process fails before the second batch normalization's forward sums (the other then
    # waits there), or after it (in the dense layer behind it): the step raises that failure,
    # and the next step runs, the pipes in step
    from cnnlab.training import processes
    x, y = _data()
    two = split(extra=_bn_layers())
    two.train_step(x, y)
    two._process_group.close()  # the next child is forked with the broken layer
    two._process_group = None
    parent = os.getpid()
    target = two.layers[-1] if where == "after" else two.get_layer("bn_dense")
    real = type(target).forward

    def forward(self, z, training=False):
        if self is target and (os.getpid() == parent) == (side == "parent"):
            raise ArithmeticError(f"broken in the {side}")
        return real(self, z, training)

    monkeypatch.setattr(type(target), "forward", forward)
    message = r"(?s)samples 12-23.*broken in the child" if side == "child" else "broken in the parent"
    with pytest.raises((ArithmeticError, RuntimeError), match=message):
        two.train_step(x, y)
    monkeypatch.setattr(type(target), "forward", real)
    if side == "child":  # the child is as it was forked: broken; a new group
        two._process_group.close()
        two._process_group = None
    assert np.isfinite(two.train_step(x, y)[0])
    assert processes._OPEN  # still over processes


@needs_fork
def test_an_error_in_the_child_is_raised_in_the_parent(split, monkeypatch):
    two = split()
    x, y = _data()
    two.train_step(x, y)
    group = two._process_group
    parent = os.getpid()
    dense = two.layers[-1]
    real = type(dense).forward

    def forward(self, z, training=False):
        if os.getpid() != parent:
            raise ArithmeticError("broken in the child")
        return real(self, z, training)

    group.close()  # a new child, forked with the broken layer
    two._process_group = None
    monkeypatch.setattr(type(dense), "forward", forward)
    with pytest.raises(RuntimeError, match=r"(?s)samples 12-23.*ArithmeticError: broken in the child"):
        two.train_step(x, y)
    monkeypatch.setattr(type(dense), "forward", real)


@needs_fork
@pytest.mark.parametrize("when", ["between steps", "during a step"])
def test_a_dead_child_is_an_error_not_a_hang(split, monkeypatch, when):
    from cnnlab.training import processes
    x, y = _data()
    if when == "during a step":  # the child, forked with this, kills itself in its half
        real = processes._half

        def dying(model, xs, ys, share, trained_only=False):
            if not trained_only:
                os.kill(os.getpid(), signal.SIGKILL)
            return real(model, xs, ys, share, trained_only)

        monkeypatch.setattr(processes, "_half", dying)
    two = split()
    if when == "between steps":
        two.train_step(x, y)
        group = two._process_group
        os.kill(group._pid, signal.SIGKILL)
        os.waitpid(group._pid, 0)  # gone for sure: the next step's header meets a closed pipe
    with pytest.raises(RuntimeError, match="ended during a step"):
        two.train_step(x, y)
    group = two._process_group
    monkeypatch.undo()
    # its weights are this process's own again, and training goes on in a new group
    assert group.closed and np.isfinite(two.train_step(x, y)[0])
    assert two._process_group is not group


@needs_fork
def test_back_to_threads_keeps_the_weights():
    x, y = _data()
    two = _model()
    two.use_processes(2)
    two.train_step(x, y)
    before = two.get_weights()
    shared = [l.params["kernel"] for l in two.layers if l.params]
    two.use_processes(1)
    assert two._process_group is None
    for layer, old in zip([l for l in two.layers if l.params], shared):
        assert layer.params["kernel"] is not old  # out of the shared memory
    for a, b in zip(before, two.get_weights()):
        np.testing.assert_array_equal(a, b)
    params = list(two._params.values())  # back to back again, updated as one array
    assert len(params) == 4 and all(map(_follows, params[:-1], params[1:]))
    assert np.isfinite(two.train_step(x, y)[0])


@needs_fork
@pytest.mark.skipif(sys.platform != "linux", reason="signals a running step")
def test_ctrl_c_in_the_parent_waits_for_the_child_then_raises(split, monkeypatch):
    two = split()
    x, y = _data()
    two.train_step(x, y)
    from cnnlab.training import processes
    real = processes._half

    def interrupted(model, xs, ys, share, trained_only=False):
        if trained_only:  # the parent's half
            raise KeyboardInterrupt
        return real(model, xs, ys, share, trained_only)

    monkeypatch.setattr(processes, "_half", interrupted)
    with pytest.raises(KeyboardInterrupt):
        two.train_step(x, y)
    monkeypatch.setattr(processes, "_half", real)
    assert np.isfinite(two.train_step(x, y)[0])  # the child answered: the pipes are in step


def test_a_platform_without_fork_is_told_so(monkeypatch):
    monkeypatch.delattr(os, "fork")
    with pytest.raises(ValueError, match="no os.fork"):
        _model().use_processes(2)


@needs_fork
def test_groups_of_several_models_end_each_other_cleanly():
    # each child closes the other groups' pipes: closing one group must not wait on another's child
    import time
    x, y = _data()
    models = [_model() for _ in range(3)]
    for m in models:
        m.use_processes(2)
        m.train_step(x, y)
    pids = [m._process_group._pid for m in models]
    t0 = time.monotonic()
    for m in models:  # in the order they were made: the earliest child must end at once
        m.use_processes(1)
    assert time.monotonic() - t0 < 2.0
    for pid in pids:
        with pytest.raises(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)  # reaped


@needs_fork
def test_a_model_changed_after_the_fork_gets_a_new_child(split):
    # the child trains its own copy of the model: after a new loss or a frozen batch normalization
    # (which then normalizes by its moving statistics, in both processes or none), a new child
    x, y = _data()
    one, two = _model(_bn_layers(), "sgd"), split(extra=_bn_layers(), optimizer="sgd")
    _same_steps(one, two, x, y)
    first = two._process_group
    for model in (one, two):
        model.get_layer("bn_dense").trainable = False
    _same_steps(one, two, x, y)
    second = two._process_group
    assert first.closed and second is not first
    for model in (one, two):
        model.compile("sgd", "categorical_crossentropy")
    onehot = np.eye(10, dtype=np.float32)[y]
    _same_steps(one, two, x, onehot)
    assert second.closed and two._process_group is not second
    third = two._process_group
    two.train_step(x, onehot)
    assert two._process_group is third  # unchanged: the same child
