"""Inverted dropout: gradient, statistics, inference identity, reproducibility."""
import numpy as np
import pytest

from cnnlab.ops import dropout
from tests.helpers import assert_close, check_backward, rand


def test_gradient_with_fixed_rng():
    rate = 0.4

    def forward(x):  # a fresh generator per call: the same mask every time
        return dropout.forward(x, rate, np.random.default_rng(7))

    dx = check_backward(forward, dropout.backward, {"x": rand((5, 6))}, wrt=("x",))[0]
    y, (mask, scale) = forward(np.ones((5, 6)))
    assert scale == pytest.approx(1 / (1 - rate))
    # d y / d x is the mask scaled by 1/(1-rate): check with dy = 1.
    assert_close(dropout.backward(np.ones((5, 6)), (mask, scale)), mask / (1 - rate))
    assert_close(y, mask / (1 - rate))


def test_statistics():
    rate = 0.3
    x = np.ones((400, 500), np.float32)
    y, _ = dropout.forward(x, rate, np.random.default_rng(0))
    assert y.dtype == np.float32
    assert abs(np.mean(y == 0) - rate) < 0.005  # 200k draws: std ~0.001
    assert abs(y.mean() - 1.0) < 0.01  # expectation preserved
    assert set(np.unique(y)) <= {0.0, np.float32(1 / (1 - rate))}


def test_identity_at_inference_and_rate_zero():
    x = rand((3, 4))
    for y, cache in (dropout.forward(x, 0.5, np.random.default_rng(0), training=False),
                     dropout.forward(x, 0.0, np.random.default_rng(0))):
        assert_close(y, x, rtol=0, atol=0)
        dy = rand((3, 4), 1)
        assert_close(dropout.backward(dy, cache), dy, rtol=0, atol=0)


def test_same_seed_same_mask():
    x = rand((10, 10))
    y1, _ = dropout.forward(x, 0.5, np.random.default_rng(42))
    y2, _ = dropout.forward(x, 0.5, np.random.default_rng(42))
    y3, _ = dropout.forward(x, 0.5, np.random.default_rng(43))
    assert np.array_equal(y1, y2)
    assert not np.array_equal(y1, y3)


@pytest.mark.parametrize("rate", [-0.1, 1.0, 1.5])
def test_bad_rate(rate):
    with pytest.raises(ValueError, match="rate"):
        dropout.forward(rand((2, 2)), rate, np.random.default_rng(0))
