"""Regularizers: Keras penalties, gradients by central differences, get/serialize."""
import numpy as np
import pytest

from cnnlab import regularizers
from tests.helpers import assert_close, numerical_grad, rand


def away_from_zero(shape):
    W = rand(shape, 0).astype(np.float64)
    return W + np.where(W >= 0, 0.1, -0.1)  # L1's kink


@pytest.mark.parametrize("reg", [regularizers.L1(0.03), regularizers.L2(0.05), regularizers.L1L2(0.02, 0.07)])
def test_gradient(reg):
    W = away_from_zero((4, 3))
    assert_close(reg.gradient(W), numerical_grad(lambda: reg(W), W), rtol=1e-6, atol=1e-8)


def test_keras_values_and_defaults():
    W = np.array([[1.0, -2.0], [0.5, 0.0]], np.float32)
    assert regularizers.L2()(W) == pytest.approx(0.01 * 5.25)  # l2 * sum(W**2), no 1/2
    assert regularizers.L1()(W) == pytest.approx(0.01 * 3.5)
    assert regularizers.L1L2(0.1, 0.2)(W) == pytest.approx(0.1 * 3.5 + 0.2 * 5.25)
    assert regularizers.L1L2().get_config() == {"l1": 0.0, "l2": 0.0}
    assert isinstance(regularizers.L2()(W), float)
    assert regularizers.L2(0.5).gradient(W).dtype == np.float32
    assert_close(regularizers.L2(0.5).gradient(W), W)


def test_get():
    assert regularizers.get(None) is None
    r = regularizers.L2(0.3)
    assert regularizers.get(r) is r
    assert regularizers.get("l2").get_config() == {"l2": 0.01}
    assert regularizers.get("l1").get_config() == {"l1": 0.01}
    assert regularizers.get("l1_l2").get_config() == {"l1": 0.01, "l2": 0.01}  # Keras's string defaults
    r = regularizers.get({"class_name": "L1L2", "config": {"l1": 0.1, "l2": 0.2}})
    assert isinstance(r, regularizers.L1L2) and r.get_config() == {"l1": 0.1, "l2": 0.2}
    with pytest.raises(ValueError, match="did you mean 'l2'"):
        regularizers.get("l3")
    with pytest.raises(ValueError, match="L2"):
        regularizers.get({"class_name": "L3", "config": {}})
    with pytest.raises(ValueError):
        regularizers.get(42)
    with pytest.raises(ValueError, match="l2"):
        regularizers.L2(-1.0)


@pytest.mark.parametrize("reg", [regularizers.L1(0.03), regularizers.L2(0.05), regularizers.L1L2(0.02, 0.07)])
def test_serialize_round_trip(reg):
    d = regularizers.serialize(reg)
    assert d == {"class_name": type(reg).__name__, "config": reg.get_config()}
    back = regularizers.get(d)
    assert type(back) is type(reg) and back.get_config() == reg.get_config()
    assert regularizers.serialize(None) is None
