"""Clipping, weight decay, the learning-rate property, get_state/set_state, configs and ``get``."""
import math

import numpy as np
import pytest

from cnnlab import optimizers
from cnnlab.optimizers import SGD, Adadelta, Adagrad, Adam, AdamW, RMSprop, clip_by_global_norm, schedules
from tests.helpers import assert_close, needs_torch, torch
from tests.optimizers.test_vs_reference import grad_sequence, initial_params, run_ours


def norm(a):
    return math.sqrt(float(np.sum(a.astype(np.float64) ** 2)))


# ----- clipping -------------------------------------------------------------------------------
def test_clip_by_global_norm_alone():
    grads = {"a": np.full((3, 4), 2.0, np.float32), "b": np.full((5,), -1.0, np.float32)}
    expected = math.sqrt(12 * 4 + 5)
    before = {k: g.copy() for k, g in grads.items()}
    assert clip_by_global_norm(grads, 1.5) == pytest.approx(expected)
    for k in grads:
        assert_close(grads[k], before[k] * (1.5 / expected), name=k)
    assert norm(np.concatenate([g.ravel() for g in grads.values()])) == pytest.approx(1.5, rel=1e-6)
    assert clip_by_global_norm(grads, 10.0) == pytest.approx(1.5, rel=1e-6)  # below: untouched
    assert_close(grads["a"], before["a"] * (1.5 / expected))


@needs_torch
def test_clip_by_global_norm_matches_torch():
    grads = grad_sequence()[0]
    ours = {k: g.copy() for k, g in grads.items()}
    tensors = [torch.zeros(g.shape, requires_grad=True) for g in grads.values()]
    for t, g in zip(tensors, grads.values()):
        t.grad = torch.from_numpy(g.copy())
    total = torch.nn.utils.clip_grad_norm_(tensors, 2.0)
    assert clip_by_global_norm(ours, 2.0) == pytest.approx(float(total), rel=1e-6)
    # torch divides by (norm + 1e-6), Keras by norm: equal to ~1e-6 relative
    for g, t in zip(ours.values(), tensors):
        assert_close(g, t.grad.numpy(), rtol=2e-6)


def sgd_step(grads, **kwargs):
    params = {k: np.zeros(g.shape, np.float32) for k, g in grads.items()}
    SGD(1.0, **kwargs).apply(params, {k: g.copy() for k, g in grads.items()})
    return {k: -w for k, w in params.items()}  # lr=1 from zero: the (clipped) gradient itself


def test_clipnorm_is_per_variable():
    grads = grad_sequence()[0]
    clipped = sgd_step(grads, clipnorm=1.0)
    for k, g in grads.items():
        assert norm(g) > 1.0
        assert_close(clipped[k], g * (1.0 / norm(g)), name=k)


def test_global_clipnorm_is_joint():
    grads = grad_sequence()[0]
    total = math.sqrt(sum(norm(g) ** 2 for g in grads.values()))
    clipped = sgd_step(grads, global_clipnorm=1.0)
    for k, g in grads.items():
        assert_close(clipped[k], g * (1.0 / total), name=k)


def test_clipvalue():
    grads = grad_sequence()[0]
    clipped = sgd_step(grads, clipvalue=0.5)
    for k, g in grads.items():
        assert_close(clipped[k], np.clip(g, -0.5, 0.5), name=k)


def test_only_one_clipping_argument():
    with pytest.raises(ValueError, match="Only one of"):
        Adam(clipnorm=1.0, clipvalue=0.5)


# ----- weight decay -------------------------------------------------------------------------
@pytest.mark.parametrize("make", [lambda wd: SGD(0.1, momentum=0.9, weight_decay=wd),
                                  lambda wd: RMSprop(0.01, weight_decay=wd), lambda wd: Adagrad(0.1, weight_decay=wd)])
def test_decoupled_weight_decay(make):
    """Keras's decoupled decay: ``w <- w - w * wd * lr`` before the optimizer's own step, each step."""
    wd = 0.05
    decayed, plain = make(wd), make(None)
    grads = grad_sequence()
    params = initial_params()
    ref = initial_params()
    for gs in grads:
        decayed.apply(params, {k: g.copy() for k, g in gs.items()})
        lr = plain.learning_rate
        for w in ref.values():
            w -= w * np.float32(wd * lr)
        plain.apply(ref, {k: g.copy() for k, g in gs.items()})
    for k in params:
        assert_close(params[k], ref[k], name=k)
    assert not np.allclose(params["dense/kernel"], run_ours(make(None), grads)[-1]["dense/kernel"])


@needs_torch
def test_adamw_with_schedule_matches_torch():
    """Decay uses the scheduled lr (torch's AdamW multiplies by the group's current lr too)."""
    grads = grad_sequence()
    ours = run_ours(AdamW(schedules.ExponentialDecay(0.01, 1, 0.8), weight_decay=0.3, epsilon=0.0), grads)
    tensors = [torch.tensor(w, requires_grad=True) for w in initial_params().values()]
    opt = torch.optim.AdamW(tensors, lr=0.01, weight_decay=0.3, eps=0.0)
    sched = torch.optim.lr_scheduler.ExponentialLR(opt, gamma=0.8)
    for step, gs in enumerate(grads):
        for t, g in zip(tensors, gs.values()):
            t.grad = torch.from_numpy(g.copy())
        opt.step()
        sched.step()
        for t, k in zip(tensors, gs):
            assert_close(ours[step][k], t.detach().numpy(), name=f"step {step} {k}")


def test_exclude_from_weight_decay():
    opt = AdamW(0.1, weight_decay=0.5)
    opt.exclude_from_weight_decay(var_names=["bias"])
    params = {"dense/kernel": np.ones(3, np.float32), "dense/bias": np.ones(3, np.float32)}
    opt.apply(params, {k: np.zeros(3, np.float32) for k in params})
    assert_close(params["dense/kernel"], np.full(3, 1 - 0.05))
    assert_close(params["dense/bias"], np.ones(3))


# ----- learning rate ----------------------------------------------------------------------
def test_learning_rate_setter_takes_effect():
    opt = SGD(0.1)
    params = {"w": np.zeros(2, np.float32)}
    g = {"w": np.ones(2, np.float32)}
    opt.apply(params, g)
    opt.learning_rate = 0.01
    assert opt.learning_rate == 0.01 and isinstance(opt.learning_rate, float)
    opt.apply(params, g)
    assert_close(params["w"], np.full(2, -0.11))
    assert opt.get_config()["learning_rate"] == 0.01


def test_learning_rate_follows_schedule_and_float_replaces_it():
    opt = SGD(schedules.PiecewiseConstantDecay([1], [1.0, 0.5]))
    params = {"w": np.zeros(1, np.float32)}
    seen = []
    for _ in range(3):
        seen.append(opt.learning_rate)
        opt.apply(params, {"w": np.ones(1, np.float32)})
    assert seen == [1.0, 1.0, 0.5] and params["w"][0] == pytest.approx(-2.5)
    opt.learning_rate = 0.2
    assert opt.schedule is None and opt.learning_rate == 0.2
    opt.apply(params, {"w": np.ones(1, np.float32)})
    assert params["w"][0] == pytest.approx(-2.7)


# ----- state ------------------------------------------------------------------------------
ALL_OPTS = [lambda: SGD(0.1, momentum=0.9, nesterov=True), lambda: RMSprop(momentum=0.5, centered=True),
            lambda: Adam(schedules.CosineDecay(0.01, 10), amsgrad=True), lambda: AdamW(global_clipnorm=1.0),
            lambda: Adagrad(0.1), lambda: Adadelta(1.0), lambda: SGD(0.1)]


@pytest.mark.parametrize("make", ALL_OPTS)
def test_state_round_trip_resumes_bit_identically(make):
    grads = grad_sequence(steps=6)
    uninterrupted = run_ours(make(), grads)[-1]

    first = make()
    params = initial_params()
    run_ours(first, grads[:3], params)
    state = first.get_state()
    assert state["iterations"].shape == () and state["iterations"].dtype == np.int64 and int(state["iterations"]) == 3
    for k, a in state.items():
        if k != "iterations":
            assert k.rpartition("/")[0] in params and a.shape == params[k.rpartition("/")[0]].shape
    saved = {k: w.copy() for k, w in params.items()}
    del first

    second = make()
    second.set_state({k: v.copy() for k, v in state.items()}, params=saved)
    resumed = run_ours(second, grads[3:], saved)[-1]
    for k in uninterrupted:
        np.testing.assert_array_equal(resumed[k], uninterrupted[k], err_msg=k)


def test_state_is_a_snapshot_and_slot_names():
    opt = Adam()
    params = initial_params()
    opt.apply(params, grad_sequence()[0])
    state = opt.get_state()
    assert set(state) == {"iterations"} | {f"{k}/{s}" for k in params for s in ("momentum", "velocity")}
    state["dense/kernel/momentum"][...] = 123.0
    assert not np.any(opt.get_state()["dense/kernel/momentum"] == 123.0)


def test_set_state_errors():
    opt = Adam()
    params = initial_params()
    opt.apply(params, grad_sequence()[0])
    state = opt.get_state()

    bad_shape = dict(state, **{"dense/kernel/momentum": np.zeros((2, 2), np.float32)})
    with pytest.raises(ValueError, match="shape"):
        Adam().set_state(bad_shape, params=params)
    with pytest.raises(ValueError, match="shape"):
        opt.set_state(bad_shape)  # checked against its own slots

    extra = dict(state, **{"other/kernel/momentum": np.zeros(3, np.float32),
                           "other/kernel/velocity": np.zeros(3, np.float32)})
    with pytest.raises(ValueError, match="unexpected keys \\['other/kernel'\\]"):
        Adam().set_state(extra, params=params)
    missing = {k: v for k, v in state.items() if not k.startswith("conv2d/bias")}
    with pytest.raises(ValueError, match="missing keys \\['conv2d/bias'\\]"):
        Adam().set_state(missing, params=params)
    with pytest.raises(ValueError, match="slot"):
        SGD(momentum=0.9).set_state(state)  # Adam's slots are not SGD's
    with pytest.raises(ValueError, match="slots"):
        Adam().set_state({k: v for k, v in state.items() if not k.endswith("dense/kernel/velocity")})
    with pytest.raises(ValueError, match="iterations"):
        Adam().set_state({k: v for k, v in state.items() if k != "iterations"})

    # without params nor built slots, the shapes are checked on the next apply
    lazy = Adam()
    lazy.set_state(bad_shape)
    with pytest.raises(ValueError, match="shape"):
        lazy.apply(params, grad_sequence()[1])


def test_apply_errors():
    opt = SGD()
    with pytest.raises(ValueError, match="No gradient"):
        opt.apply({"a": np.zeros(2, np.float32)}, {})
    with pytest.raises(ValueError, match="shape"):
        opt.apply({"a": np.zeros(2, np.float32)}, {"a": np.zeros(3, np.float32)})
    assert opt.iterations == 0


# ----- configuration ----------------------------------------------------------------------
KERAS_DEFAULTS = {
    SGD: {"learning_rate": 0.01, "momentum": 0.0, "nesterov": False},
    RMSprop: {"learning_rate": 0.001, "rho": 0.9, "momentum": 0.0, "epsilon": 1e-7, "centered": False},
    Adam: {"learning_rate": 0.001, "beta_1": 0.9, "beta_2": 0.999, "epsilon": 1e-7, "amsgrad": False},
    AdamW: {"learning_rate": 0.001, "weight_decay": 0.004, "beta_1": 0.9, "beta_2": 0.999, "epsilon": 1e-7},
    Adagrad: {"learning_rate": 0.001, "initial_accumulator_value": 0.1, "epsilon": 1e-7},
    Adadelta: {"learning_rate": 0.001, "rho": 0.95, "epsilon": 1e-7},
}


@pytest.mark.parametrize("cls", list(KERAS_DEFAULTS))
def test_keras_defaults_and_get(cls):
    config = optimizers.get(cls.__name__.lower()).get_config()
    for k, v in KERAS_DEFAULTS[cls].items():
        assert config[k] == v, k
    assert isinstance(optimizers.get(cls.__name__), cls)


@pytest.mark.parametrize("make", ALL_OPTS + [lambda: SGD(schedules.OneCycle(0.1, 100), clipvalue=0.3, name="s")])
def test_config_round_trip(make):
    opt = make()
    config = optimizers.serialize(opt)
    again = optimizers.get(config)
    assert type(again) is type(opt) and again.get_config() == opt.get_config()
    for step in (0, 5):
        opt.iterations = again.iterations = step
        assert again.learning_rate == opt.learning_rate
    assert run_ours(make(), grad_sequence())[-1]["dense/kernel"].tolist() == \
        run_ours(optimizers.get(config), grad_sequence())[-1]["dense/kernel"].tolist()


def test_get_instance_and_errors():
    opt = Adam()
    assert optimizers.get(opt) is opt
    with pytest.raises(ValueError, match="did you mean 'adam'"):
        optimizers.get("adma")
    with pytest.raises(ValueError, match="Unknown optimizer"):
        optimizers.get({"class_name": "Lion", "config": {}})
    with pytest.raises(TypeError, match="unknown argument 'lr'"):
        Adam(lr=0.1)
    with pytest.raises(ValueError, match="momentum"):
        SGD(momentum=1.5)
    with pytest.raises(ValueError, match="weight_decay"):
        AdamW(weight_decay=None)
