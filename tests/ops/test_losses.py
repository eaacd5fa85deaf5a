"""Losses: float64 gradient checks, PyTorch references, naive loops, label validation."""
import numpy as np
import pytest

from cnnlab.ops import losses
from tests.helpers import assert_close, check_backward, needs_torch, rand, torch

N, K = 4, 5
LABELS = np.array([0, 3, 4, 1])


def soft_labels(seed=5):
    p = np.abs(rand((N, K), seed)) + 0.1
    return p / p.sum(axis=1, keepdims=True)


def onehot(y, k=K):
    return np.eye(k, dtype=np.float32)[y]


@pytest.mark.parametrize("labels", [LABELS, onehot(LABELS), soft_labels()], ids=["sparse", "onehot", "soft"])
def test_softmax_cross_entropy_gradient(labels):
    check_backward(losses.softmax_cross_entropy_forward, losses.softmax_cross_entropy_backward,
                   {"logits": rand((N, K), 0, scale=2)}, wrt=("logits",), labels=labels)


def test_softmax_cross_entropy_sparse_equals_onehot_and_is_stable():
    z = rand((N, K), 0, scale=2)
    a, ca = losses.softmax_cross_entropy_forward(z, LABELS)
    b, cb = losses.softmax_cross_entropy_forward(z, onehot(LABELS))
    assert a.dtype == np.float32 and np.isclose(a, b, rtol=1e-6)
    assert_close(losses.softmax_cross_entropy_backward(1.0, ca), losses.softmax_cross_entropy_backward(1.0, cb))
    big = np.array([[1000.0, 0.0, -1000.0]], np.float32)
    loss, cache = losses.softmax_cross_entropy_forward(big, np.array([2]))
    assert np.isclose(loss, 2000.0)
    assert np.all(np.isfinite(losses.softmax_cross_entropy_backward(1.0, cache)))


@pytest.mark.parametrize("bad", [5, -1])
def test_softmax_cross_entropy_bad_label(bad):
    with pytest.raises(ValueError, match=rf"label {bad}\b.*K=5"):
        losses.softmax_cross_entropy_forward(rand((N, K)), np.array([0, bad, 1, 2]))
    with pytest.raises(ValueError, match="shape"):
        losses.softmax_cross_entropy_forward(rand((N, K)), np.zeros((N, K + 1)))


def test_log_softmax_and_softmax():
    z = rand((3, 7), 0, scale=5).astype(np.float64)
    ref = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    assert_close(losses.log_softmax(z), ref, rtol=1e-12)
    assert_close(losses.softmax(z), np.exp(ref), rtol=1e-12)


@pytest.mark.parametrize("labels", [LABELS, soft_labels()], ids=["sparse", "soft"])
def test_categorical_crossentropy_gradient(labels):
    probs = np.abs(rand((N, K), 1)) + 0.05  # not normalised: exercises Keras's renormalisation
    check_backward(losses.categorical_crossentropy_forward, losses.categorical_crossentropy_backward,
                   {"probs": probs}, wrt=("probs",), labels=labels)


def test_categorical_crossentropy_keras_clip():
    probs = np.array([[0.0, 1.0]], np.float32)
    loss, cache = losses.categorical_crossentropy_forward(probs, np.array([[1.0, 0.0]], np.float32))
    assert np.isclose(loss, -np.log(1e-7), rtol=1e-5)
    assert np.all(np.isfinite(losses.categorical_crossentropy_backward(1.0, cache)))


def test_categorical_after_softmax_equals_fused():
    from cnnlab.ops import activations
    z = rand((N, K), 0)
    p, ca = activations.forward(z, "softmax")
    loss, cl = losses.categorical_crossentropy_forward(p, LABELS)
    fused, cf = losses.softmax_cross_entropy_forward(z, LABELS)
    assert np.isclose(loss, fused, rtol=1e-5)
    dz = activations.backward(losses.categorical_crossentropy_backward(1.0, cl), ca)
    assert_close(dz, losses.softmax_cross_entropy_backward(1.0, cf), rtol=1e-4, atol=1e-6)


def hinge_naive(s, y, margin=1.0):
    total = 0.0
    for i in range(s.shape[0]):
        for j in range(s.shape[1]):
            if j != y[i]:
                total += max(0.0, s[i, j] - s[i, y[i]] + margin)
    return total / s.shape[0]


def test_hinge_gradient_and_naive():
    s = rand((N, K), 2)
    # keep every margin at least 0.05 away from its kink
    m = s - s[np.arange(N), LABELS][:, None] + 1.0
    s = s + np.where(np.abs(m) < 0.05, 0.1, 0.0).astype(np.float32) * (np.arange(K) != LABELS[:, None])
    loss, _ = losses.hinge_forward(s, LABELS)
    assert np.isclose(loss, hinge_naive(s.astype(np.float64), LABELS), rtol=1e-6)
    check_backward(losses.hinge_forward, losses.hinge_backward, {"scores": s}, wrt=("scores",), labels=LABELS)
    loss2, _ = losses.hinge_forward(s, LABELS, margin=0.5)
    assert np.isclose(loss2, hinge_naive(s.astype(np.float64), LABELS, 0.5), rtol=1e-6)
    assert np.isclose(losses.hinge_forward(s, onehot(LABELS))[0], loss)


def test_mse_gradient_and_value():
    a, b = rand((3, 4), 0), rand((3, 4), 1)
    check_backward(losses.mse_forward, losses.mse_backward, {"y_pred": a}, wrt=("y_pred",), y_true=b)
    assert np.isclose(losses.mse_forward(a, b)[0], np.mean((a.astype(np.float64) - b) ** 2), rtol=1e-6)
    with pytest.raises(ValueError, match=r"\(3, 4\).*\(4, 3\)"):
        losses.mse_forward(a, b.T)


@needs_torch
@pytest.mark.parametrize("kind", ["sparse", "soft"])
def test_cross_entropy_matches_torch(kind):
    z = rand((8, 10), 0, scale=3)
    labels = np.array([0, 9, 3, 3, 5, 1, 2, 7]) if kind == "sparse" else \
        (lambda p: p / p.sum(axis=1, keepdims=True))(np.abs(rand((8, 10), 1)) + 0.1)
    loss, cache = losses.softmax_cross_entropy_forward(z, labels)
    dz = losses.softmax_cross_entropy_backward(np.float32(1.0), cache)
    tz = torch.tensor(z, requires_grad=True)
    tl = torch.tensor(labels)
    tloss = torch.nn.functional.cross_entropy(tz, tl)
    tloss.backward()
    assert_close(loss, tloss.item(), rtol=1e-5, name="loss")
    assert_close(dz, tz.grad.numpy(), rtol=1e-5, name="dlogits")


@needs_torch
def test_hinge_matches_torch():
    s, y = rand((6, 7), 0), np.array([0, 6, 2, 2, 4, 1])
    loss, cache = losses.hinge_forward(s, y)
    ds = losses.hinge_backward(1.0, cache)
    ts = torch.tensor(s, requires_grad=True)
    # torch divides each sample's sum by the number of classes: scale it back by K.
    tloss = torch.nn.functional.multi_margin_loss(ts, torch.tensor(y)) * s.shape[1]
    tloss.backward()
    assert_close(loss, tloss.item(), rtol=1e-5, name="loss")
    assert_close(ds, ts.grad.numpy(), rtol=1e-5, name="dscores")


@needs_torch
def test_mse_matches_torch():
    a, b = rand((5, 3), 0), rand((5, 3), 1)
    loss, cache = losses.mse_forward(a, b)
    da = losses.mse_backward(1.0, cache)
    ta = torch.tensor(a, requires_grad=True)
    tloss = torch.nn.functional.mse_loss(ta, torch.tensor(b))
    tloss.backward()
    assert_close(loss, tloss.item(), rtol=1e-5, name="loss")
    assert_close(da, ta.grad.numpy(), rtol=1e-5, name="dy_pred")
