"""Activations: float64 gradient checks, PyTorch reference values and gradients."""
import numpy as np
import pytest

from cnnlab.ops import activations
from tests.helpers import assert_close, check_backward, needs_torch, rand, torch

ELEMENTWISE = [n for n in activations.NAMES if n != "softmax"]


def away_from_zero(shape, seed=0):
    """Continuous values with |x| >= 0.1, so a central difference never straddles a kink."""
    x = rand(shape, seed)
    return x + np.where(x >= 0, 0.1, -0.1).astype(x.dtype)


@pytest.mark.parametrize("name", ELEMENTWISE)
def test_gradient(name):
    check_backward(activations.forward, activations.backward, {"x": away_from_zero((3, 4, 5))},
                   wrt=("x",), name=name)


@pytest.mark.parametrize("name,alpha", [("leaky_relu", 0.05), ("elu", 0.5)])
def test_gradient_with_alpha(name, alpha):
    check_backward(activations.forward, activations.backward, {"x": away_from_zero((4, 6))},
                   wrt=("x",), name=name, alpha=alpha)


def test_softmax_gradient():
    check_backward(activations.forward, activations.backward, {"x": rand((3, 5))}, wrt=("x",), name="softmax")


@pytest.mark.parametrize("name", activations.NAMES)
def test_keeps_float32(name):
    y, cache = activations.forward(rand((2, 3)), name)
    assert y.dtype == np.float32
    assert activations.backward(np.ones_like(y), cache).dtype == np.float32


def test_keras_defaults():
    x = np.array([-2.0, 3.0], np.float32)
    assert_close(activations.forward(x, "leaky_relu")[0], [-0.4, 3.0])  # negative_slope 0.2
    assert_close(activations.forward(x, "leaky_relu", alpha=0.1)[0], [-0.2, 3.0])
    assert_close(activations.forward(x, "elu")[0], [np.expm1(-2.0), 3.0])
    assert_close(activations.forward(x, "selu")[0], [1.0507009873554805 * 1.6732632423543772 * np.expm1(-2.0),
                                                      1.0507009873554805 * 3.0])


def test_stable_for_large_inputs():
    x = np.array([[-1000.0, 0.0, 1000.0]], np.float32)
    with np.errstate(over="raise", invalid="raise", divide="raise"):  # underflow to 0 is fine
        assert_close(activations.forward(x, "sigmoid")[0], [[0.0, 0.5, 1.0]])
        assert_close(activations.forward(x, "softmax")[0], [[0.0, 0.0, 1.0]])
        assert_close(activations.forward(x, "elu")[0], [[-1.0, 0.0, 1000.0]])


def test_softmax_rows_sum_to_one_on_last_axis():
    y, _ = activations.forward(rand((2, 3, 7), scale=10), "softmax")
    assert_close(y.sum(axis=-1), np.ones((2, 3)))


def test_derivative():
    x = away_from_zero((50,), 3).astype(np.float64)
    for name in ELEMENTWISE:
        eps = 1e-6
        num = (activations.forward(x + eps, name)[0] - activations.forward(x - eps, name)[0]) / (2 * eps)
        assert_close(activations.derivative(x, name), num, rtol=1e-6, atol=1e-8, name=name)
    with pytest.raises(ValueError, match="softmax"):
        activations.derivative(x, "softmax")


def test_unknown_name():
    with pytest.raises(ValueError, match=r"rellu.*did you mean 'relu'.*Known: .*sigmoid"):
        activations.forward(rand((2,)), "rellu")


def test_relu_cache_is_small():
    x = rand((100,))
    _, cache = activations.forward(x, "relu")
    arrays = [c for c in cache if isinstance(c, np.ndarray)]
    assert sum(a.nbytes for a in arrays) <= x.nbytes


@needs_torch
@pytest.mark.parametrize("name,alpha", [
    ("relu", None), ("leaky_relu", None), ("leaky_relu", 0.3), ("elu", None), ("elu", 0.7), ("selu", None),
    ("sigmoid", None), ("tanh", None), ("softmax", None), ("linear", None)])
def test_matches_torch(name, alpha):
    F = torch.nn.functional
    x, dy = rand((4, 3, 3, 6), 0, scale=3), rand((4, 3, 3, 6), 1)
    a = {"leaky_relu": 0.2, "elu": 1.0}.get(name) if alpha is None else alpha
    ref = {"relu": F.relu, "leaky_relu": lambda t: F.leaky_relu(t, a), "elu": lambda t: F.elu(t, a),
           "selu": F.selu, "sigmoid": torch.sigmoid, "tanh": torch.tanh,
           "softmax": lambda t: F.softmax(t, dim=-1), "linear": lambda t: t}[name]
    y, cache = activations.forward(x, name, alpha)
    dx = activations.backward(dy, cache)
    tx = torch.tensor(x, requires_grad=True)
    ty = ref(tx)
    ty.backward(torch.tensor(dy))
    assert_close(y, ty.detach().numpy(), rtol=1e-5, name="y")
    assert_close(dx, tx.grad.numpy(), rtol=1e-5, name="dx")
