"""Params that lie back to back in memory, as a model lays them out, are updated as one array:
the same numbers, bit for bit, as one update per param."""
import numpy as np
import pytest

from cnnlab.layers import Conv2D, Dense, Flatten, Input, MaxPooling2D
from cnnlab.models import Sequential
from cnnlab.ops import threads
from cnnlab.optimizers import SGD, Adadelta, Adagrad, Adam, AdamW, Optimizer, RMSprop
from cnnlab.optimizers.base import _follows
from tests.optimizers.test_vs_reference import SHAPES, grad_sequence, initial_params

OPTIMIZERS = {
    "adam": lambda: Adam(0.01),
    "adam_amsgrad": lambda: Adam(0.01, amsgrad=True),
    "adamw": lambda: AdamW(0.01, weight_decay=0.1),
    "sgd": lambda: SGD(0.1),
    "sgd_nesterov": lambda: SGD(0.1, momentum=0.9, nesterov=True),
    "rmsprop": lambda: RMSprop(0.01, momentum=0.5, centered=True),
    "adagrad": lambda: Adagrad(0.1),
    "adadelta": lambda: Adadelta(1.0),
}


def packed(arrays):
    """Copies of ``arrays`` (a dict) as views into one buffer, in order."""
    buf = np.empty(sum(a.size for a in arrays.values()), np.float32)
    out, at = {}, 0
    for k, a in arrays.items():
        out[k] = buf[at:at + a.size].reshape(a.shape)
        out[k][...] = a
        at += a.size
    return out


def run(opt, params, grads, steps):
    """``steps`` updates with the gradients of ``grad_sequence`` written into ``grads`` in place."""
    for step in grad_sequence(steps=steps):
        for k, g in step.items():
            grads[k][...] = g
        opt.apply(params, grads)
    return params


def runs(opt):
    """The keys of each run the last ``apply`` updated as one array."""
    return [run for group in opt._plan[2] for run, *_ in group]


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_packed_params_update_as_one_run_bit_for_bit(name):
    loose = run(OPTIMIZERS[name](), initial_params(), {k: np.zeros(s, np.float32) for k, s in SHAPES.items()}, 4)
    opt = OPTIMIZERS[name]()
    params = packed(initial_params())
    run(opt, params, packed({k: np.zeros(s, np.float32) for k, s in SHAPES.items()}), 4)
    assert runs(opt) == [list(SHAPES)]  # one run: the whole update in one call of ``update``
    for k in SHAPES:
        np.testing.assert_array_equal(params[k], loose[k], err_msg=k)
    for s in opt.slot_names():  # the slots were moved into one array each, in the params' order
        arrays = [opt.slots[k][s] for k in SHAPES]
        assert all(map(_follows, arrays[:-1], arrays[1:])), s


def test_loose_params_are_updated_one_by_one():
    opt = Adam(0.01)
    run(opt, initial_params(), {k: np.zeros(s, np.float32) for k, s in SHAPES.items()}, 2)
    assert runs(opt) == [[k] for k in SHAPES]


def test_a_gap_or_another_order_splits_the_runs():
    params = packed(initial_params())
    grads = packed({k: np.zeros(s, np.float32) for k, s in SHAPES.items()})
    keys = list(SHAPES)
    opt = Adam(0.01)
    run(opt, {k: params[k] for k in reversed(keys)}, {k: grads[k] for k in reversed(keys)}, 1)
    assert runs(opt) == [[k] for k in reversed(keys)]  # each ends where the one before it starts
    grads[keys[1]] = grads[keys[1]].copy()  # the middle gradient elsewhere
    opt = Adam(0.01)
    run(opt, params, grads, 1)
    assert runs(opt) == [[k] for k in keys]


def test_weight_decay_excluded_from_part_of_a_run():
    def make():
        opt = AdamW(0.01, weight_decay=0.5)
        opt.exclude_from_weight_decay(["bias"])
        return opt
    loose = run(make(), initial_params(), {k: np.zeros(s, np.float32) for k, s in SHAPES.items()}, 3)
    opt = make()
    params = run(opt, packed(initial_params()), packed({k: np.zeros(s, np.float32) for k, s in SHAPES.items()}), 3)
    assert runs(opt) == [list(SHAPES)]
    for k in SHAPES:
        np.testing.assert_array_equal(params[k], loose[k], err_msg=k)


def test_set_state_slots_are_packed_again_and_resume_exactly():
    grads = packed({k: np.zeros(s, np.float32) for k, s in SHAPES.items()})
    whole = run(Adam(0.01), packed(initial_params()), grads, 6)
    first = Adam(0.01)
    params = run(first, packed(initial_params()), grads, 3)
    second = Adam(0.01)
    second.set_state(first.get_state(), params=params)
    for step in grad_sequence(steps=6)[3:]:
        for k, g in step.items():
            grads[k][...] = g
        second.apply(params, grads)
    assert runs(second) == [list(SHAPES)]
    for k in SHAPES:
        np.testing.assert_array_equal(params[k], whole[k], err_msg=k)


def test_an_optimizer_not_marked_elementwise_gets_each_param_alone():
    class Norm(Optimizer):  # an update that reads the whole array: w -= lr * g / |g|
        seen = []

        def update(self, w, g, slots, lr):
            self.seen.append(w.shape)
            w -= lr * g / np.linalg.norm(g)

    params = packed(initial_params())
    run(Norm(0.1), params, packed({k: np.zeros(s, np.float32) for k, s in SHAPES.items()}), 1)
    assert Norm.seen == list(SHAPES.values())


def small_model():
    model = Sequential([Input((12, 12, 1)), Conv2D(4, 3, padding="same"), MaxPooling2D(3, 2), Flatten(),
                        Dense(8, activation="relu"), Dense(3, activation="softmax")])
    model.compile(Adam(0.01), "sparse_categorical_crossentropy")
    return model


def test_a_model_packs_its_params_and_grads():
    model = small_model()
    for store in (model._params, model._grads):
        arrays = list(store.values())
        assert len(arrays) == 6 and all(map(_follows, arrays[:-1], arrays[1:]))
    rng = np.random.default_rng(0)
    x, y = rng.random((16, 12, 12, 1), dtype=np.float32), rng.integers(0, 3, 16)
    loose = small_model()
    loose.set_weights(model.get_weights())
    for layer in loose.layers:
        for k in layer.params:
            layer.params[k], layer.grads[k] = layer.params[k].copy(), layer.grads[k].copy()
    with threads.synchronous():
        for _ in range(3):
            model.train_step(x, y)
            loose.train_step(x, y)
    assert runs(model.optimizer) == [list(model._params)]
    assert runs(loose.optimizer) == [[k] for k in loose._params]
    for a, b in zip(model.get_weights(), loose.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_a_layer_shared_with_an_earlier_model_keeps_its_arrays():
    model = small_model()
    kernel = model.layers[3].params["kernel"]
    sub = Sequential([Input((model.layers[3].input_shape[-1],)), model.layers[3], model.layers[4]])
    assert sub.layers[0].params["kernel"] is kernel
    arrays = list(model._params.values())
    assert all(map(_follows, arrays[:-1], arrays[1:]))
