"""Each optimizer against PyTorch over a few steps on the same params and gradients, and against a naive
float64 reference written from the Keras formula where Keras and PyTorch differ (epsilon placement)."""
import math

import numpy as np
import pytest

from cnnlab.optimizers import SGD, Adadelta, Adagrad, Adam, AdamW, RMSprop
from tests.helpers import assert_close, needs_torch, torch

SHAPES = {"conv2d/kernel": (3, 3, 2, 4), "conv2d/bias": (4,), "dense/kernel": (7, 5)}
STEPS = 5


def initial_params(seed=0):
    rng = np.random.default_rng(seed)
    return {k: rng.standard_normal(s).astype(np.float32) for k, s in SHAPES.items()}


def grad_sequence(seed=1, steps=STEPS):
    rng = np.random.default_rng(seed)
    return [{k: rng.standard_normal(s).astype(np.float32) for k, s in SHAPES.items()} for _ in range(steps)]


def run_ours(opt, grads_seq, params=None):
    """Params after each step (copies); grads are copied because clipping rescales them in place."""
    params = params or initial_params()
    history = []
    for grads in grads_seq:
        opt.apply(params, {k: g.copy() for k, g in grads.items()})
        history.append({k: w.copy() for k, w in params.items()})
    return history


def run_torch(make_opt, grads_seq):
    tensors = {k: torch.tensor(w, requires_grad=True) for k, w in initial_params().items()}
    opt = make_opt(list(tensors.values()))
    history = []
    for grads in grads_seq:
        for k, t in tensors.items():
            t.grad = torch.from_numpy(grads[k].copy())
        opt.step()
        history.append({k: t.detach().numpy().copy() for k, t in tensors.items()})
    return history


def assert_histories_close(ours, ref, rtol=1e-5, atol=1e-6):
    for step, (a, b) in enumerate(zip(ours, ref)):
        for k in a:
            assert a[k].dtype == np.float32
            assert_close(a[k], b[k], rtol=rtol, atol=atol, name=f"step {step} {k}")


TORCH_CASES = {
    "sgd": (lambda: SGD(0.1), lambda p: torch.optim.SGD(p, lr=0.1)),
    # Keras's m = momentum*m - lr*g equals torch's buf form for a constant lr
    "sgd_momentum": (lambda: SGD(0.1, momentum=0.9), lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9)),
    "sgd_nesterov": (lambda: SGD(0.1, momentum=0.9, nesterov=True),
                     lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9, nesterov=True)),
    # eps=0: Keras adds eps inside the sqrt, torch outside; with none they agree
    "rmsprop": (lambda: RMSprop(0.01, rho=0.8, epsilon=0.0),
                lambda p: torch.optim.RMSprop(p, lr=0.01, alpha=0.8, eps=0.0)),
    "rmsprop_momentum": (lambda: RMSprop(0.01, momentum=0.7, epsilon=0.0),
                         lambda p: torch.optim.RMSprop(p, lr=0.01, alpha=0.9, momentum=0.7, eps=0.0)),
    "rmsprop_centered": (lambda: RMSprop(0.01, momentum=0.5, centered=True, epsilon=0.0),
                         lambda p: torch.optim.RMSprop(p, lr=0.01, alpha=0.9, momentum=0.5, centered=True,
                                                       eps=0.0)),
    # eps=0: Keras's epsilon is torch's times sqrt(1 - beta_2^t)
    "adam": (lambda: Adam(0.01, beta_1=0.8, beta_2=0.9, epsilon=0.0),
             lambda p: torch.optim.Adam(p, lr=0.01, betas=(0.8, 0.9), eps=0.0)),
    "adam_amsgrad": (lambda: Adam(0.01, epsilon=0.0, amsgrad=True),
                     lambda p: torch.optim.Adam(p, lr=0.01, eps=0.0, amsgrad=True)),
    # both decay w <- w * (1 - lr * wd) before the Adam step
    "adamw": (lambda: AdamW(0.01, weight_decay=0.1, epsilon=0.0),
              lambda p: torch.optim.AdamW(p, lr=0.01, weight_decay=0.1, eps=0.0)),
    "adagrad": (lambda: Adagrad(0.1, initial_accumulator_value=0.5, epsilon=0.0),
                lambda p: torch.optim.Adagrad(p, lr=0.1, initial_accumulator_value=0.5, eps=0.0)),
    # Adadelta: same formula in both, eps inside both roots, lr scales the step (torch's default lr is 1.0)
    "adadelta": (lambda: Adadelta(0.5, rho=0.9, epsilon=1e-6),
                 lambda p: torch.optim.Adadelta(p, lr=0.5, rho=0.9, eps=1e-6)),
    "adadelta_defaults": (lambda: Adadelta(), lambda p: torch.optim.Adadelta(p, lr=0.001, rho=0.95, eps=1e-7)),
}


@needs_torch
@pytest.mark.parametrize("case", sorted(TORCH_CASES))
def test_against_torch(case):
    ours, ref = TORCH_CASES[case]
    grads = grad_sequence()
    assert_histories_close(run_ours(ours(), grads), run_torch(ref, grads))


# ----- naive float64 references, line by line from Keras's update_step -------------------------
def keras_adam(params, grads_seq, lr=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7, amsgrad=False):
    w = {k: v.astype(np.float64) for k, v in params.items()}
    m = {k: np.zeros_like(v) for k, v in w.items()}
    v = {k: np.zeros_like(x) for k, x in w.items()}
    vhat = {k: np.zeros_like(x) for k, x in w.items()}
    out = []
    for t, grads in enumerate(grads_seq, start=1):
        for k in w:
            g = grads[k].astype(np.float64)
            alpha = lr * math.sqrt(1 - beta_2 ** t) / (1 - beta_1 ** t)
            m[k] = m[k] + (g - m[k]) * (1 - beta_1)
            v[k] = v[k] + (g * g - v[k]) * (1 - beta_2)
            vhat[k] = np.maximum(vhat[k], v[k])
            w[k] = w[k] - m[k] * alpha / (np.sqrt(vhat[k] if amsgrad else v[k]) + epsilon)
        out.append({k: x.copy() for k, x in w.items()})
    return out


def keras_rmsprop(params, grads_seq, lr=0.001, rho=0.9, momentum=0.0, epsilon=1e-7, centered=False):
    w = {k: v.astype(np.float64) for k, v in params.items()}
    vel = {k: np.zeros_like(x) for k, x in w.items()}
    mom = {k: np.zeros_like(x) for k, x in w.items()}
    avg = {k: np.zeros_like(x) for k, x in w.items()}
    out = []
    for grads in grads_seq:
        for k in w:
            g = grads[k].astype(np.float64)
            vel[k] = rho * vel[k] + (1 - rho) * g * g
            if centered:
                avg[k] = rho * avg[k] + (1 - rho) * g
                denominator = vel[k] - avg[k] ** 2 + epsilon
            else:
                denominator = vel[k] + epsilon
            increment = lr * g / np.sqrt(denominator)
            if momentum > 0:
                mom[k] = momentum * mom[k] + increment
                w[k] = w[k] - mom[k]
            else:
                w[k] = w[k] - increment
        out.append({k: x.copy() for k, x in w.items()})
    return out


def keras_adagrad(params, grads_seq, lr=0.001, initial_accumulator_value=0.1, epsilon=1e-7):
    w = {k: v.astype(np.float64) for k, v in params.items()}
    acc = {k: np.full_like(x, initial_accumulator_value) for k, x in w.items()}
    out = []
    for grads in grads_seq:
        for k in w:
            g = grads[k].astype(np.float64)
            acc[k] = acc[k] + g * g
            w[k] = w[k] - lr * g / np.sqrt(acc[k] + epsilon)
        out.append({k: x.copy() for k, x in w.items()})
    return out


def small_grads():
    # grads ~1e-4 make epsilon (1e-7 .. 1e-3 here) matter: a misplaced epsilon would show
    return [{k: g * np.float32(1e-4) for k, g in step.items()} for step in grad_sequence()]


@pytest.mark.parametrize("kwargs", [{}, {"epsilon": 1e-3}, {"amsgrad": True, "epsilon": 1e-4, "beta_2": 0.9}])
def test_adam_keras_epsilon(kwargs):
    grads = small_grads()
    ours = run_ours(Adam(0.01, **kwargs), grads)
    assert_histories_close(ours, keras_adam(initial_params(), grads, lr=0.01, **kwargs))


@pytest.mark.parametrize("kwargs", [{}, {"epsilon": 1e-7, "momentum": 0.5, "centered": True},
                                    {"epsilon": 1e-8, "rho": 0.5}])
def test_rmsprop_keras_epsilon(kwargs):
    grads = small_grads()
    ours = run_ours(RMSprop(0.01, **kwargs), grads)
    assert_histories_close(ours, keras_rmsprop(initial_params(), grads, lr=0.01, **kwargs))


def test_adagrad_keras_epsilon():
    grads = small_grads()
    kwargs = {"initial_accumulator_value": 1e-8, "epsilon": 1e-7}
    ours = run_ours(Adagrad(0.01, **kwargs), grads)
    assert_histories_close(ours, keras_adagrad(initial_params(), grads, lr=0.01, **kwargs))


@needs_torch
def test_adam_epsilon_differs_from_torch():
    """Keras's epsilon is not torch's: with a large epsilon the two must disagree (guards the comparison)."""
    grads = small_grads()
    ours = run_ours(Adam(0.01, epsilon=1e-3), grads)
    ref = run_torch(lambda p: torch.optim.Adam(p, lr=0.01, eps=1e-3), grads)
    with pytest.raises(AssertionError):
        assert_histories_close(ours, ref)


@pytest.mark.parametrize("make", [lambda: SGD(0.1, momentum=0.9, nesterov=True),
                                  lambda: RMSprop(momentum=0.5, centered=True), lambda: Adam(amsgrad=True),
                                  lambda: AdamW(), lambda: Adagrad(), lambda: Adadelta()])
def test_float32_in_place(make):
    """Arrays keep their identity and float32 dtype; slots are float32 too (no float64 creeps in)."""
    opt = make()
    params = initial_params()
    ids = {k: id(w) for k, w in params.items()}
    for grads in grad_sequence():
        opt.apply(params, grads)
    assert {k: id(w) for k, w in params.items()} == ids
    assert all(w.dtype == np.float32 for w in params.values())
    assert all(a.dtype == np.float32 for a in opt.get_state().values() if a.ndim)
    assert opt.iterations == STEPS
