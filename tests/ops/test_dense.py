"""Dense, flatten and reshape: float64 gradient checks and PyTorch's F.linear."""
import numpy as np
import pytest

from cnnlab.ops import dense
from tests.helpers import assert_close, check_backward, needs_torch, rand, torch


@pytest.mark.parametrize("bias", [True, False])
def test_dense_gradients(bias):
    inputs = {"x": rand((4, 5), 0), "W": rand((5, 3), 1)}
    if bias:
        inputs["b"] = rand((3,), 2)
        check_backward(dense.forward, dense.backward, inputs, wrt=("x", "W", "b"))
    else:
        dx, dW, db = check_backward(dense.forward, dense.backward, inputs, wrt=("x", "W"))
        assert db is None


def test_dense_forward_value_and_dtype():
    x, W, b = rand((2, 3), 0), rand((3, 4), 1), rand((4,), 2)
    y, _ = dense.forward(x, W, b)
    assert y.dtype == np.float32
    assert_close(y, x.astype(np.float64) @ W + b, rtol=1e-5)


def test_dense_need_dx_false():
    x, W = rand((2, 3), 0), rand((3, 4), 1)
    _, cache = dense.forward(x, W)
    dx, dW, db = dense.backward(np.ones((2, 4), np.float32), cache, need_dx=False)
    assert dx is None and db is None and dW.shape == (3, 4)


def test_dense_shape_mismatch_shows_both_shapes():
    with pytest.raises(ValueError, match=r"\(2, 3\).*\(4, 5\)"):
        dense.forward(rand((2, 3)), rand((4, 5)))
    with pytest.raises(ValueError, match="bias"):
        dense.forward(rand((2, 3)), rand((3, 5)), rand((4,)))


def test_flatten_gradient_and_order():
    x = rand((2, 3, 4, 5), 0)
    check_backward(dense.flatten_forward, dense.flatten_backward, {"x": x}, wrt=("x",))
    y, _ = dense.flatten_forward(x)
    assert y.shape == (2, 60)
    # Keras order: channels vary fastest, then width, then height.
    assert y[1, 0 * 20 + 1 * 5 + 2] == x[1, 0, 1, 2]
    assert y[1, 2 * 20 + 3 * 5 + 4] == x[1, 2, 3, 4]


def test_reshape_gradient_and_errors():
    x = rand((2, 12), 0)
    check_backward(dense.reshape_forward, dense.reshape_backward, {"x": x}, wrt=("x",), target_shape=(3, -1))
    y, cache = dense.reshape_forward(x, (2, 2, 3))
    assert y.shape == (2, 2, 2, 3)
    assert dense.reshape_backward(y, cache).shape == (2, 12)
    with pytest.raises(ValueError, match=r"\(2, 12\).*\(5, -1\)|\(5, -1\).*\(2, 12\)"):
        dense.reshape_forward(x, (5, -1))


@needs_torch
def test_dense_matches_torch():
    x, W, b = rand((6, 7), 0), rand((7, 3), 1), rand((3,), 2)
    dy = rand((6, 3), 3)
    y, cache = dense.forward(x, W, b)
    dx, dW, db = dense.backward(dy, cache)
    tx, tW, tb = (torch.tensor(a, requires_grad=True) for a in (x, W.T.copy(), b))
    ty = torch.nn.functional.linear(tx, tW, tb)
    ty.backward(torch.tensor(dy))
    assert_close(y, ty.detach().numpy(), name="y")
    assert_close(dx, tx.grad.numpy(), name="dx")
    assert_close(dW, tW.grad.numpy().T, name="dW")
    assert_close(db, tb.grad.numpy(), name="db")
